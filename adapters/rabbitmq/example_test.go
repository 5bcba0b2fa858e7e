package rabbitmq_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/loom-mesh/loom/adapters/rabbitmq"
	"github.com/loom-mesh/loom/queue"
)

// errSettled stands for the journal's answer "this message id was
// applied already".
var errSettled = errors.New("already applied")

func Example() {
	ctx := context.Background()
	b, err := rabbitmq.Open(ctx, rabbitmq.Options{
		URL: "amqp://loom:secret@127.0.0.1:5672/",
		Policy: func(actorType string) rabbitmq.Policy {
			return rabbitmq.Policy{MaxRetries: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second, Jitter: 0.2}
		},
		Classify: func(err error) rabbitmq.Class {
			if errors.Is(err, errSettled) {
				return rabbitmq.Done
			}
			return rabbitmq.Failed
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// Deliver: run the message as a turn of its actor, whose journal
	// append records m.ID; the broker's ack follows.
	_ = b.Consume(func(ctx context.Context, m queue.Message) error {
		log.Printf("%s.%s(%s), attempt %d", m.Actor, m.Method, m.Payload, m.Attempts+1)
		return nil
	})

	// Send: accepted once the broker has confirmed it.
	a, err := b.Publish(ctx, queue.Message{ID: "order-42", Actor: "cart/7", Method: "checkout", Ordered: true})
	if err != nil {
		log.Fatal(err) // rabbitmq.ErrUnavailable: not sent; rabbitmq.ErrUnconfirmed: maybe stored
	}
	log.Println("accepted at", a.AcceptedAt)
}
