package pgjournal

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/internal/wakes"
)

// Wakes across nodes. A write that gives an actor something to deliver
// calls this Journal's own Notify function at once; the node that
// delivers that actor's messages (its owner) is often another one, with a
// Journal of its own on the same server. So every such write is also
// sent, as a hint, with NOTIFY on the channel "loom_wake_" + the schema,
// and a Journal whose Notify was called LISTENs on it, on a connection of
// its own, and passes on the wakes other Journals sent. A hint may be
// lost (the listener reconnecting, the sender's buffer full, the server
// restarting): a dispatcher scans the store periodically anyway, so a lost
// hint delays a delivery by at most a scan interval and loses nothing.

// wakePayload bounds one notification's payload: the server refuses
// payloads of 8000 bytes or more.
const wakePayload = 7900

// waker sends this Journal's wakes and listens for other Journals'.
type waker struct {
	channel string
	out     *wakes.Outbox
	stop    chan struct{}
	wg      sync.WaitGroup

	listenOnce sync.Once
	mu         sync.Mutex // guards closed against a listener starting
	closed     bool
}

// startWaker starts the sender; Open calls it.
func (j *Journal) startWaker(schema string) {
	w := &waker{channel: "loom_wake_" + schema, stop: make(chan struct{})}
	w.out = wakes.NewOutbox(wakePayload, func(payload []byte) {
		// A failure is dropped: a hint.
		ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
		defer cancel()
		_, _ = j.pool.Exec(ctx, "SELECT pg_notify($1, $2)", w.channel, string(payload))
	})
	j.waker = w
}

// listenWakes starts, once, passing other Journals' wakes to the current
// notify function. It returns once the first LISTEN has been answered (or
// failed), so the wakes of writes made after Notify returns reach fn when
// the server is up.
func (j *Journal) listenWakes() {
	w := j.waker
	w.listenOnce.Do(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.closed {
			return
		}
		first := make(chan struct{})
		w.wg.Add(1)
		go j.listenLoop(first)
		<-first
	})
}

// listenLoop holds a connection LISTENing on the wake channel, connecting
// again with backoff when it breaks, until the Journal closes. first is
// closed after the first attempt.
func (j *Journal) listenLoop(first chan struct{}) {
	w := j.waker
	defer w.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-w.stop
		cancel()
	}()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		_ = j.listen(ctx, func() {
			if first != nil {
				close(first)
				first = nil
			}
			backoff = 50 * time.Millisecond
		})
		if first != nil {
			close(first)
			first = nil
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen connects, LISTENs, calls listening, then passes on notifications
// until ctx ends or the connection fails.
func (j *Journal) listen(ctx context.Context, listening func()) error {
	cctx, cancel := context.WithTimeout(ctx, j.timeout)
	conn, err := pgx.ConnectConfig(cctx, j.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(c)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{j.waker.channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		items := wakes.Decode([]byte(n.Payload), j.waker.out.ID())
		fn := j.notify.Load()
		if fn == nil {
			continue
		}
		for _, it := range items {
			(*fn)(it.Actor, utc(it.At))
		}
	}
}

// stopWaker stops the sender and the listener and waits for them; Close
// calls it before closing the pool.
func (j *Journal) stopWaker() {
	w := j.waker
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	w.wg.Wait()
	w.out.Close()
}
