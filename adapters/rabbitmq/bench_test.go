package rabbitmq_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/adapters/rabbitmq"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
)

// BenchmarkPublish measures confirmed publishes into a quorum queue: the
// adapter's Publish, and for comparison a bare amqp091 publish with a
// confirm on one channel (the floor the adapter adds to), serial and with
// 16 publishers. It reports msgs/s and the p50/p99 latency of one publish.
//
//	go test -run '^$' -bench Publish -benchtime 2000x ./adapters/rabbitmq
func BenchmarkPublish(b *testing.B) {
	srv := rabbitmqtest.Shared(b)
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("adapter/publishers=%d", par), func(b *testing.B) {
			br := open(b, srv, rabbitmqtest.Name(), nil)
			var n atomic.Int64
			run(b, par, func() error {
				id := fmt.Sprint("m", n.Add(1))
				_, err := br.Publish(context.Background(), msg(id, "counter/bench", false))
				return err
			})
		})
		for _, headers := range []bool{false, true} {
			name := "bare-amqp091"
			if headers {
				name += "+loom-headers"
			}
			b.Run(fmt.Sprintf("%s/publishers=%d", name, par), func(b *testing.B) {
				c, err := amqp.Dial(srv.URL())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				ch, err := c.Channel()
				if err != nil {
					b.Fatal(err)
				}
				q := rabbitmqtest.Name()
				if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
					b.Fatal(err)
				}
				if err := ch.Confirm(false); err != nil {
					b.Fatal(err)
				}
				pub := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: msg("x", "counter/bench", false).Payload}
				if headers {
					pub = rabbitmq.Encode(msg("x", "counter/bench", false))
				}
				run(b, par, func() error {
					dc, err := ch.PublishWithDeferredConfirm("", q, true, false, pub)
					if err != nil {
						return err
					}
					if !dc.Wait() {
						return fmt.Errorf("nack")
					}
					return nil
				})
			})
		}
	}
}

// run calls op b.N times from par goroutines and reports msgs/s, p50 and
// p99.
func run(b *testing.B, par int, op func() error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range par {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(lat[(len(lat)-1)*50/100].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100].Microseconds()), "p99-µs")
}
