package inmem

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/queue"
)

// wrap reports the machine's outcome of a write: the rule violation as it
// is (it wraps a queue sentinel), a fatal error as the backend's.
func wrap(rule, err error) error {
	if err != nil {
		return fmt.Errorf("inmem: %w", err)
	}
	return rule
}

// Enqueue implements queue.Store.
func (j *Journal) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	if err := j.qlock(ctx); err != nil {
		return queue.Accepted{}, err
	}
	defer j.unlock()
	acc, rule, err := j.q.Enqueue(j.now(), msg)
	return acc, wrap(rule, err)
}

// Due implements queue.Store.
func (j *Journal) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	if err := j.qlock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	return j.q.Due(actor, queue.UnixNano(now), max)
}

// Release implements queue.Store.
func (j *Journal) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := j.qlock(ctx); err != nil {
		return 0, err
	}
	defer j.unlock()
	n, rule, err := j.q.Release(queue.UnixNano(now), actor)
	return n, wrap(rule, err)
}

// Ready implements queue.Store.
func (j *Journal) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	if err := j.qlock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	return j.q.Ready(queue.UnixNano(until), max)
}

// Retry implements queue.Store.
func (j *Journal) Retry(ctx context.Context, f queue.Failure) error {
	if err := j.qlock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	return wrap(j.q.Retry(j.now(), f))
}

// DeadLetter implements queue.Store.
func (j *Journal) DeadLetter(ctx context.Context, f queue.Failure) error {
	if err := j.qlock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	return wrap(j.q.DeadLetter(j.now(), f))
}

// ListDead implements queue.Store.
func (j *Journal) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	if err := j.qlock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	return j.q.ListDead(f)
}

// Replay implements queue.Store.
func (j *Journal) Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error) {
	if err := j.qlock(ctx); err != nil {
		return 0, err
	}
	defer j.unlock()
	n, rule, err := j.q.Replay(queue.UnixNano(now), f)
	return n, wrap(rule, err)
}

// Purge implements queue.Store.
func (j *Journal) Purge(ctx context.Context, f queue.Filter) (int, error) {
	if err := j.qlock(ctx); err != nil {
		return 0, err
	}
	defer j.unlock()
	n, rule, err := j.q.Purge(j.now(), f)
	return n, wrap(rule, err)
}

// SetReminder implements queue.Store.
func (j *Journal) SetReminder(ctx context.Context, r queue.Reminder) error {
	if err := j.qlock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	return wrap(j.q.SetReminder(j.now(), r))
}

// DeleteReminder implements queue.Store.
func (j *Journal) DeleteReminder(ctx context.Context, actor, name string) error {
	if err := j.qlock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	return wrap(j.q.DeleteReminder(j.now(), actor, name))
}

// Reminders implements queue.Store.
func (j *Journal) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	if err := j.qlock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	return j.q.Reminders(actor)
}

// Stats implements queue.Store.
func (j *Journal) Stats(ctx context.Context) ([]queue.Stats, error) {
	if err := j.qlock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	return j.q.Stats()
}

// Notify implements queue.Notifier: fn replaces the function set before.
// The first call starts the goroutine that calls it; Close stops it.
func (j *Journal) Notify(fn func(actor string, at time.Time)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	j.fn = fn
	if j.kick == nil {
		j.kick = make(chan struct{}, 1)
		j.wg.Go(j.dispatch)
	}
}

// dispatch delivers the notifications the writes collected, outside mu,
// until Close.
func (j *Journal) dispatch() {
	for {
		select {
		case <-j.done:
			return
		case <-j.kick:
		}
		j.mu.Lock()
		notes, fn := j.notes, j.fn
		j.notes = nil
		j.mu.Unlock()
		for _, n := range notes {
			fn(n.Actor, n.At)
		}
	}
}
