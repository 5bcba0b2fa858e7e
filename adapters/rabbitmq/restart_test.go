package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/rabbitmq"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
	"github.com/loom-mesh/loom/queue"
)

// TestBrokerKillRestart kills the broker (SIGKILL) under a load of
// publishes and deliveries and restarts it on its data: every publish
// that returned accepted is delivered, the publishes during the outage
// fail with ErrUnavailable or ErrUnconfirmed, and the consumers resume.
func TestBrokerKillRestart(t *testing.T) {
	srv := rabbitmqtest.Start(t)
	b := open(t, srv, "r", nil)
	var delivered sync.Map
	if err := b.Consume(func(ctx context.Context, m queue.Message) error {
		delivered.Store(m.ID, true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A quorum queue killed in its first seconds loses what it confirmed
	// (a defect of this broker: see rabbitmqtest.ElectQuorumLeaders).
	time.Sleep(5 * time.Second)

	var (
		mu        sync.Mutex
		confirmed []string
		failed    atomic.Int64
		down      atomic.Bool
		downFails atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := b.Publish(ctx, msg(id, fmt.Sprintf("counter/%d", i%5), i%2 == 0))
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					confirmed = append(confirmed, id)
					mu.Unlock()
				case errors.Is(err, rabbitmq.ErrUnavailable), errors.Is(err, rabbitmq.ErrUnconfirmed):
					failed.Add(1)
					if down.Load() {
						downFails.Add(1)
					}
					time.Sleep(20 * time.Millisecond)
				default:
					t.Errorf("publish %s: unexpected error %v", id, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	down.Store(true)
	srv.Kill()
	time.Sleep(500 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	waitFor(t, 30*time.Second, "the reconnection", func() bool {
		return b.MeterStats().Reconnects >= 1 && b.Ping(context.Background()) == nil
	})
	mu.Lock()
	before := len(confirmed)
	mu.Unlock()
	waitFor(t, 30*time.Second, "publishes confirmed after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed) > before+20
	})
	close(stop)
	wg.Wait()
	if downFails.Load() == 0 {
		t.Errorf("no publish failed while the broker was down (%d failures in all)", failed.Load())
	}
	mu.Lock()
	ids := append([]string(nil), confirmed...)
	mu.Unlock()
	waitFor(t, 60*time.Second, "every confirmed message delivered", func() bool {
		for _, id := range ids {
			if _, ok := delivered.Load(id); !ok {
				return false
			}
		}
		return true
	})
	t.Logf("%d confirmed, all delivered; %d publishes failed (%d while down); meter %+v",
		len(ids), failed.Load(), downFails.Load(), summary(b.MeterStats()))
}

func summary(m rabbitmq.MeterStats) string {
	return fmt.Sprintf("publishes=%d acks=%d connErrors=%d errorReplies=%d dials=%d dialErrors=%d reconnects=%d p50=%v p99=%v",
		m.Publishes, m.Acks, m.ConnErrors, m.ErrorReplies, m.Dials, m.DialErrors, m.Reconnects, m.P50, m.P99)
}
