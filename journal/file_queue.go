package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/queue"
)

// The FileJournal is also a queue.Store: the queue rules (internal/queuesm)
// run on kv.Bolt buckets of the same file (queuesm.BucketNames), in the
// committer's transactions; see the package documentation.

var (
	_ queue.Store    = (*FileJournal)(nil)
	_ queue.Notifier = (*FileJournal)(nil)
)

// queueWake is a notification of the queue machine: actor has something to
// deliver or release at at (UnixNano).
type queueWake struct {
	actor string
	at    int64
}

// machine is the queue machine on tx's buckets, with onWake told about
// what its writes give actors to deliver (nil for a read).
func (f *FileJournal) machine(tx *bolt.Tx, onWake func(actor string, at int64)) *queuesm.Machine {
	b := queuesm.NewBuckets(func(name string) kv.Bucket { return kv.Bolt(tx.Bucket([]byte(name))) })
	return queuesm.New(b, queuesm.Config{Retention: f.qRetention, OnWake: onWake})
}

// txQueues is the queue machine of the committer's transaction tx, made on
// first use and shared by the batch's requests: each sees the writes of
// those before it. Its notifications go to f.wakes. Committer only.
func (f *FileJournal) txQueues(tx *bolt.Tx) *queuesm.Machine {
	if f.txq == nil {
		f.txq = f.machine(tx, func(actor string, at int64) { f.wakes = append(f.wakes, queueWake{actor, at}) })
	}
	return f.txq
}

// checkMessages applies the queue rules of append r's message entries
// (queuesm.Machine.CheckAppend), after the journal's and before anything
// is written: a reject wraps ErrInvalid or ErrAck. Committer only.
func (f *FileJournal) checkMessages(tx *bolt.Tx, r *request) (reject, fatal error) {
	if r.msgs.Empty() {
		return nil, nil
	}
	r.msgNow = queue.UnixNano(f.now())
	invalid, rule, err := f.txQueues(tx).CheckAppend(r.msgNow, r.actor, &r.msgs)
	switch {
	case err != nil:
		return nil, err
	case invalid != nil:
		return fmt.Errorf("%w: append to %q: %w", ErrInvalid, r.actor, invalid), nil
	case rule != nil:
		return fmt.Errorf("%w: append to %q: %w", ErrAck, r.actor, rule), nil
	}
	return nil, nil
}

// applyMessages applies append r's message entries, after its entries are
// written and checkMessages has passed. Committer only.
func (f *FileJournal) applyMessages(tx *bolt.Tx, r *request) error {
	if r.msgs.Empty() {
		return nil
	}
	return f.txQueues(tx).ApplyAppend(r.msgNow, r.actor, &r.msgs)
}

// write runs a queue write through the committer, as a request of kind op
// (actor names it in errors). A closed journal fails with an error that
// wraps queue.ErrClosed and ErrClosed. fn runs on the committer, and may
// still run after write returned an error (the caller gave up waiting):
// read what fn sets only after a nil error.
func (f *FileJournal) write(ctx context.Context, op opKind, actor string, fn func(m *queuesm.Machine, now int64) (reject, fatal error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := f.do(ctx, &request{op: op, actor: actor, queue: fn})
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w: %w", queue.ErrClosed, err)
	}
	return err
}

// read runs fn on the queue machine in a read-only transaction on the
// caller's goroutine.
func (f *FileJournal) read(ctx context.Context, fn func(m *queuesm.Machine) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("%w: %w: %s", queue.ErrClosed, ErrClosed, f.path)
	}
	f.readers.Add(1)
	f.mu.Unlock()
	defer f.readers.Done()
	return f.db.View(func(tx *bolt.Tx) error { return fn(f.machine(tx, nil)) })
}

// Enqueue implements queue.Store.
func (f *FileJournal) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	var acc queue.Accepted
	err := f.write(ctx, opEnqueue, msg.Actor, func(m *queuesm.Machine, now int64) (rule, err error) {
		acc, rule, err = m.Enqueue(now, msg)
		return rule, err
	})
	if err != nil {
		return queue.Accepted{}, err // acc is the committer's until it answers
	}
	return acc, nil
}

// Due implements queue.Store.
func (f *FileJournal) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	var out []queue.Message
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Due(actor, queue.UnixNano(now), max)
		return err
	})
	return out, err
}

// Release implements queue.Store. It asks in a read-only transaction
// first, and writes (and fsyncs) nothing when nothing of actor's is due at
// now.
func (f *FileJournal) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := queue.CheckActor(actor); err != nil {
		return 0, err
	}
	var due bool
	if err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		due, err = m.Releasable(actor, queue.UnixNano(now))
		return err
	}); err != nil || !due {
		return 0, err
	}
	var n int
	err := f.write(ctx, opRelease, actor, func(m *queuesm.Machine, _ int64) (rule, err error) {
		n, rule, err = m.Release(queue.UnixNano(now), actor)
		return rule, err
	})
	if err != nil {
		return 0, err // n is the committer's until it answers
	}
	return n, nil
}

// Ready implements queue.Store.
func (f *FileJournal) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	var out []queue.Ready
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Ready(queue.UnixNano(until), max)
		return err
	})
	return out, err
}

// Retry implements queue.Store.
func (f *FileJournal) Retry(ctx context.Context, fl queue.Failure) error {
	return f.write(ctx, opRetry, fl.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.Retry(now, fl) })
}

// DeadLetter implements queue.Store.
func (f *FileJournal) DeadLetter(ctx context.Context, fl queue.Failure) error {
	return f.write(ctx, opDeadLetter, fl.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.DeadLetter(now, fl) })
}

// ListDead implements queue.Store.
func (f *FileJournal) ListDead(ctx context.Context, fl queue.Filter) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.ListDead(fl)
		return err
	})
	return out, err
}

// Replay implements queue.Store.
func (f *FileJournal) Replay(ctx context.Context, fl queue.Filter, now time.Time) (int, error) {
	var n int
	err := f.write(ctx, opReplay, fl.Actor, func(m *queuesm.Machine, _ int64) (rule, err error) {
		n, rule, err = m.Replay(queue.UnixNano(now), fl)
		return rule, err
	})
	if err != nil {
		return 0, err // n is the committer's until it answers
	}
	return n, nil
}

// Purge implements queue.Store.
func (f *FileJournal) Purge(ctx context.Context, fl queue.Filter) (int, error) {
	var n int
	err := f.write(ctx, opPurge, fl.Actor, func(m *queuesm.Machine, now int64) (rule, err error) {
		n, rule, err = m.Purge(now, fl)
		return rule, err
	})
	if err != nil {
		return 0, err // n is the committer's until it answers
	}
	return n, nil
}

// SetReminder implements queue.Store.
func (f *FileJournal) SetReminder(ctx context.Context, r queue.Reminder) error {
	return f.write(ctx, opSetReminder, r.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.SetReminder(now, r) })
}

// DeleteReminder implements queue.Store.
func (f *FileJournal) DeleteReminder(ctx context.Context, actor, name string) error {
	return f.write(ctx, opDeleteReminder, actor, func(m *queuesm.Machine, now int64) (error, error) {
		return m.DeleteReminder(now, actor, name)
	})
}

// Reminders implements queue.Store.
func (f *FileJournal) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	var out []queue.Reminder
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Reminders(actor)
		return err
	})
	return out, err
}

// Stats implements queue.Store.
func (f *FileJournal) Stats(ctx context.Context) ([]queue.Stats, error) {
	var out []queue.Stats
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Stats()
		return err
	})
	return out, err
}

// --- notifications ---

// Notify implements queue.Notifier: after each commit, fn is called on the
// committer goroutine, holding no lock, once for every actor the committed
// requests gave something to deliver or release, with the earliest instant
// they gave it (its wake after the request that gave it). The requests are
// answered first, so fn delays the next commit, never the writers of this
// one; by the Notifier contract it must not block. fn replaces the
// function set before; nil stops the calls.
func (f *FileJournal) Notify(fn func(actor string, at time.Time)) {
	if fn == nil {
		f.notify.Store(nil)
		return
	}
	f.notify.Store(&fn)
}

// announce calls the Notify function for the notifications of the
// transaction just committed, one per actor at its earliest instant, in the
// order the actors were first given something. Committer only, after the
// commit and the answers.
func (f *FileJournal) announce() {
	p := f.notify.Load()
	if p == nil || len(f.wakes) == 0 {
		return
	}
	if len(f.wakes) > 1 {
		clear(f.wakeAt)
		n := 0
		for _, w := range f.wakes {
			if i, ok := f.wakeAt[w.actor]; ok {
				f.wakes[i].at = min(f.wakes[i].at, w.at)
				continue
			}
			f.wakeAt[w.actor] = n
			f.wakes[n] = w
			n++
		}
		f.wakes = f.wakes[:n]
	}
	for _, w := range f.wakes {
		(*p)(w.actor, time.Unix(0, w.at).UTC())
	}
}
