package builtin_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

// Send a durable one-way message to a counter, named (so that sending it
// again is harmless) and delayed by a minute: the node accepts it once it
// is stored, and delivers it as a turn of the counter when it is due.
func ExampleCounterAdd_send() {
	dir, err := os.MkdirTemp("", "loom-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.Node.DataDir = dir
	cfg.Node.HTTPPort = 0 // any free port
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	defer n.Shutdown(ctx)

	acc, err := builtin.CounterAdd.Send(ctx, n, "c1", builtin.CounterDelta{Delta: 1},
		runtime.WithMessageID("order-17"), runtime.WithDelay(time.Minute))
	fmt.Println(acc.ID, acc.Duplicate, err)

	// The same id again: accepted once, the answer is the first acceptance.
	again, err := builtin.CounterAdd.Send(ctx, n, "c1", builtin.CounterDelta{Delta: 1},
		runtime.WithMessageID("order-17"))
	fmt.Println(again.ID, again.Duplicate, again.AcceptedAt.Equal(acc.AcceptedAt), err)

	// Not delivered yet: it is due in a minute.
	v, err := builtin.CounterGet.Call(ctx, n, "c1")
	fmt.Println(v.Value, err)
	// Output:
	// order-17 false <nil>
	// order-17 true true <nil>
	// 0 <nil>
}
