package redisjournal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"sync"
	"time"
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

// wakeBuffer is how many wakes wait for the publisher before more are
// dropped (hints only).
const wakeBuffer = 4096

// wakeNote is one published batch of wakes: the publishing Journal's id
// (a Journal ignores its own) and (actor, instant in Unix ns) pairs.
type wakeNote struct {
	Origin string     `json:"o"`
	Wakes  []wakeItem `json:"w"`
}

type wakeItem struct {
	Actor string `json:"a"`
	At    int64  `json:"t"`
}

// waker publishes this Journal's wakes and delivers other Journals'.
type waker struct {
	id      string
	pending chan wakeItem
	stop    chan struct{}
	wg      sync.WaitGroup

	subOnce sync.Once
	cancel  context.CancelFunc // ends the subscription; nil until Notify
	mu      sync.Mutex         // guards cancel against Close
	closed  bool
}

func (j *Journal) wakeChannel() string { return j.prefix + "q:wake" }

// startWaker starts the publisher; Open calls it.
func (j *Journal) startWaker() {
	j.wake = &waker{id: rand.Text(), pending: make(chan wakeItem, wakeBuffer), stop: make(chan struct{})}
	j.wake.wg.Add(1)
	go j.publishLoop()
}

// publishWake queues a wake for the other nodes; dropped if the buffer is
// full.
func (j *Journal) publishWake(actor string, ns int64) {
	select {
	case j.wake.pending <- wakeItem{actor, ns}:
	default:
	}
}

// publishLoop publishes what is queued, everything waiting in one message.
func (j *Journal) publishLoop() {
	w := j.wake
	defer w.wg.Done()
	for {
		var batch []wakeItem
		select {
		case <-w.stop:
			return
		case it := <-w.pending:
			batch = append(batch, it)
		}
	drain:
		for len(batch) < 512 {
			select {
			case it := <-w.pending:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		b, err := json.Marshal(wakeNote{Origin: w.id, Wakes: batch})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = j.client.Publish(ctx, j.wakeChannel(), b).Err() // a hint: the scan covers a lost one
		cancel()
	}
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
					var note wakeNote
					if json.Unmarshal([]byte(m.Payload), &note) != nil || note.Origin == w.id {
						continue
					}
					fn := j.notify.Load()
					if fn == nil {
						continue
					}
					for _, it := range note.Wakes {
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
	close(w.stop)
	w.wg.Wait()
}
