// Command charge is a node that runs one task, "charge", which charges an
// order through a payment service (a stand-in here that charges any
// order with something to charge). It serves until it gets SIGINT or
// SIGTERM, then shuts down:
//
//	go run ./examples/charge    # HTTP on 127.0.0.1:7420
//	curl -s -XPOST localhost:7420/v1/tasks/charge -d '{"ID":"o-1","Amount":42}'
//
// The node's configuration is the file $LOOM_CONFIG_PATH names, else the
// defaults (HTTP on 127.0.0.1:7420, data in ./loom-data).
package main

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/task"
)

// Order is what the charge task charges. Over HTTP it is the request's
// JSON body: {"ID":"o-1","Amount":42}.
type Order struct {
	ID     string
	Amount int
}

// Receipt is what a charge returns.
type Receipt struct {
	Order   string
	Charged int
}

// Charge charges an order: a task, with its timing, retries and
// concurrency limit.
var Charge = task.New("charge", func(ctx context.Context, o Order) (Receipt, error) {
	// ctx carries the caller's deadline, correlation id and trace context
	return payments.Charge(ctx, o)
},
	task.Timeout(5*time.Second), // the whole run, retries included; really stops waiting
	task.Retries(3),             // up to 4 attempts
	task.WithBackoff(task.Backoff{Initial: 100 * time.Millisecond}), // ×2 per retry, ±20% jitter, ≤ 10 s
	task.RetryIf(isTransient), // default: every error but a panic; task.Permanent(err) never
	task.MaxConcurrent(16),    // attempts running at once, process-wide
)

// isTransient tells which failures are worth another attempt: the
// payment service being busy.
func isTransient(err error) bool { return errors.Is(err, errBusy) }

// errBusy is the payment service's answer when it cannot take a charge
// now; trying again later may succeed.
var errBusy = errors.New("payment service busy")

// payments is the payment service's client.
var payments = &paymentService{}

// paymentService stands in for a payment provider's client.
type paymentService struct {
	// busy is how many of the next charges are answered errBusy (0
	// unless a test sets it).
	busy atomic.Int32
}

// Charge charges the order. An order with nothing to charge can never
// succeed: that error is task.Permanent, never retried.
func (p *paymentService) Charge(ctx context.Context, o Order) (Receipt, error) {
	if o.Amount <= 0 {
		return Receipt{}, task.Permanent(errors.New("nothing to charge"))
	}
	for {
		busy := p.busy.Load()
		if busy <= 0 {
			break
		}
		if p.busy.CompareAndSwap(busy, busy-1) {
			return Receipt{}, errBusy
		}
	}
	if err := ctx.Err(); err != nil {
		return Receipt{}, err
	}
	return Receipt{Order: o.ID, Charged: o.Amount}, nil
}

func main() {
	cfg, err := config.Load(config.Path("")) // the file $LOOM_CONFIG_PATH names, else the defaults
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.New(node.Options{Config: cfg, Tasks: []task.Definition{Charge}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		log.Fatal(err)
	}

	<-ctx.Done() // serve until SIGINT or SIGTERM
	stop()       // a second signal ends the process at once
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Node.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
}
