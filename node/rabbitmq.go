package node

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/loom-mesh/loom/adapters/rabbitmq"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// openBroker connects to messaging.rabbitmq and declares Loom's queues
// there.
func (n *Node) openBroker(ctx context.Context) (broker, error) {
	rc := n.cfg.Messaging.RabbitMQ
	amqpURL := rc.AMQPURL()
	o := rabbitmq.Options{
		URL:           amqpURL,
		Prefix:        rc.Prefix,
		FIFOQueues:    rc.FIFOQueues,
		Prefetch:      rc.Prefetch,
		DeliveryLimit: rc.DeliveryLimit,
		Policy:        n.brokerPolicy,
		Classify:      brokerClass,
		Logger:        n.log.With("component", "rabbitmq"),
	}
	if rc.TLS || strings.HasPrefix(amqpURL, "amqps://") {
		tc, err := backendTLS("messaging.rabbitmq", rc.TLSCA, "")
		if err != nil {
			return nil, err
		}
		o.TLS = tc
	}
	b, err := rabbitmq.Open(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("node: messaging.rabbitmq: %w", err)
	}
	return rabbitBroker{b}, nil
}

// brokerPolicy is an actor type's retry policy, from messaging's
// configuration.
func (n *Node) brokerPolicy(actorType string) rabbitmq.Policy {
	p := n.cfg.Messaging.For(actorType)
	return rabbitmq.Policy{
		Ordered:        p.QueueMode != config.QueueModeStandard,
		MaxRetries:     p.MaxRetries,
		InitialBackoff: p.InitialBackoff,
		MaxBackoff:     p.MaxBackoff,
		Jitter:         p.Jitter,
	}
}

// brokerClass reads a delivery's error as the journal's dispatcher does
// (messaging.Classify): an id the journal already applied is done.
func brokerClass(err error) rabbitmq.Class {
	switch messaging.Classify(err) {
	case messaging.Settled:
		return rabbitmq.Done
	case messaging.Permanent:
		return rabbitmq.Permanent
	case messaging.Failed:
		return rabbitmq.Failed
	}
	return rabbitmq.Unavailable
}

// rabbitBroker is a rabbitmq.Broker as the node's broker.
type rabbitBroker struct{ *rabbitmq.Broker }

func (b rabbitBroker) Consume(h func(ctx context.Context, m queue.Message) error) error {
	return b.Broker.Consume(h)
}

// Publish maps the adapter's errors to the runtime's: nothing sent is
// unavailable (the sender may try again), an unconfirmed publish is of
// unknown outcome (a retry under the same id is safe: the journal applies
// an id once).
func (b rabbitBroker) Publish(ctx context.Context, m queue.Message) (queue.Accepted, error) {
	acc, err := b.Broker.Publish(ctx, m)
	switch {
	case err == nil:
		return acc, nil
	case errors.Is(err, rabbitmq.ErrUnconfirmed):
		return acc, fmt.Errorf("%w: %w", errclass.ErrUnknownOutcome, err)
	case errors.Is(err, rabbitmq.ErrUnavailable), errors.Is(err, rabbitmq.ErrClosed):
		return acc, fmt.Errorf("%w: %w", runtime.ErrUnavailable, err)
	}
	return acc, err
}

func (b rabbitBroker) Stats(ctx context.Context) (BrokerStats, error) {
	st, err := b.Broker.Stats(ctx)
	if err != nil {
		return BrokerStats{}, err
	}
	return BrokerStats{Ready: st.Ready, Delayed: st.Delayed, Dead: st.Dead, InFlight: st.InFlight}, nil
}

// rabbitSource is the broker as the observability package reads it; nil
// without a RabbitMQ broker.
func (n *Node) rabbitSource() *observability.RabbitMQSource {
	b, ok := n.broker.(rabbitBroker)
	if !ok {
		return nil
	}
	addr := "rabbitmq"
	if u, err := url.Parse(n.cfg.Messaging.RabbitMQ.AMQPURL()); err == nil {
		addr = u.Host // never the credentials
	}
	return &observability.RabbitMQSource{
		Addr: addr,
		Stats: func() observability.RabbitMQStats {
			st := b.MeterStats()
			out := observability.RabbitMQStats{
				Publishes: st.Publishes, Acks: st.Acks, Nacks: st.Nacks, Gets: st.Gets,
				ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies,
				Retries: st.Retries, DeadLettered: st.DeadLettered,
				Dials: st.Dials, DialErrors: st.DialErrors, Reconnects: st.Reconnects,
				Answered: st.Answered, LatencySum: st.LatencySum, P50: st.P50, P99: st.P99,
			}
			for _, bk := range st.Buckets {
				out.Buckets = append(out.Buckets, observability.LatencyBucket{UpperBound: bk.UpperBound, Count: bk.Count})
			}
			return out
		},
		Queues: func() (observability.RabbitMQQueues, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := b.Stats(ctx)
			return observability.RabbitMQQueues{Ready: st.Ready, Delayed: st.Delayed, Dead: st.Dead}, err
		},
		Ping: func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			err := b.Ping(ctx)
			return time.Since(start), err
		},
	}
}
