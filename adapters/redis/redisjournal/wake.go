package redisjournal

import (
	"context"
	"sync"
	"time"

	"github.com/loom-mesh/loom/internal/wakes"
)

// Wakes across nodes. A write that gives an actor something to deliver
// notifies this Journal's own Notify function at once; the node that
// delivers that actor's messages (its owner) is often another one, with a
// Journal of its own on the same server. So every such write is also
// published, as a hint, on the channel KeyPrefix + "q:wake", and a Journal
// whose Notify was called subscribes to it and passes on the wakes other
// Journals published. A hint may be lost (no subscriber connected at the
// time, the publisher's buffer full, Redis restarting): a dispatcher
// scans the store periodically anyway, so a lost hint delays a delivery by
// at most a scan interval and loses nothing.

// wakePayload bounds one published message of wakes.
const wakePayload = 64 << 10

// waker publishes this Journal's wakes and delivers other Journals'.
type waker struct {
	out *wakes.Outbox
	wg  sync.WaitGroup

	subOnce sync.Once
	cancel  context.CancelFunc // ends the subscription; nil until Notify
	mu      sync.Mutex         // guards cancel against Close
	closed  bool
}

func (j *Journal) wakeChannel() string { return j.prefix + "q:wake" }

// startWaker starts the publisher; Open calls it.
func (j *Journal) startWaker() {
	j.wake = &waker{out: wakes.NewOutbox(wakePayload, func(payload []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = j.client.Publish(ctx, j.wakeChannel(), payload).Err() // a hint: the scan covers a lost one
	})}
}

// subscribeWakes starts, once, passing other Journals' wakes to the
// current notify function (j.notify). It returns once the server has
// confirmed the subscription (or after two seconds without).
func (j *Journal) subscribeWakes() {
	w := j.wake
	w.subOnce.Do(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.closed {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		ps := j.client.Subscribe(ctx, j.wakeChannel())
		// Wait for the server to confirm, so that the wakes of writes
		// made after Notify returns reach fn; briefly, since they are
		// only hints.
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, _ = ps.Receive(rctx)
		rcancel()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			ch := ps.Channel()
			for {
				select {
				case <-ctx.Done():
					_ = ps.Close()
					return
				case m, ok := <-ch:
					if !ok {
						return
					}
					items := wakes.Decode([]byte(m.Payload), w.out.ID())
					fn := j.notify.Load()
					if fn == nil {
						continue
					}
					for _, it := range items {
						(*fn)(it.Actor, utc(it.At))
					}
				}
			}
		}()
	})
}

// stopWaker stops the publisher and the subscription and waits for them;
// Close calls it before closing the client.
func (j *Journal) stopWaker() {
	w := j.wake
	w.mu.Lock()
	w.closed = true
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.out.Close()
}
