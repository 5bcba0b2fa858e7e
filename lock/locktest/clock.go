package locktest

import (
	"context"
	"slices"
	"sync"
	"time"
)

// FakeClock is a manual clock for tests: time stands still until Advance.
// Its Now and AfterFunc plug into inmem.CoordinatorOptions and
// lock.KeeperConfig. It is safe for concurrent use.
//
// Callbacks registered with AfterFunc run synchronously inside Advance, in
// due order, without the clock's lock held, with Now reading their due time.
// They must not call Advance. A callback due at or before the current time
// when registered runs on the next Advance (even Advance(0)), never inside
// AfterFunc, so it is safe to register while holding a lock the callback
// takes.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever timers change
}

type fakeTimer struct {
	due time.Time
	seq uint64 // orders timers due at the same instant by registration
	f   func()
}

// NewFakeClock returns a clock that reads start. A zero start means
// 2026-01-01 00:00:00 UTC.
func NewFakeClock(start time.Time) *FakeClock {
	if start.IsZero() {
		start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &FakeClock{now: start, changed: make(chan struct{})}
}

// Now reads the clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f once the clock has advanced by d. The returned stop
// function cancels the call and reports whether it did (false if f already
// ran or is running, or was stopped before).
func (c *FakeClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{due: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	c.notifyLocked()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		c.notifyLocked()
		return true
	}
}

func (c *FakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves the clock forward by d, running every callback that falls
// due on the way, in order, each seeing Now at its due time. A callback that
// registers another one due within the advance also runs. The clock never
// goes back, even when Advance is called concurrently (say, from a test
// double standing for a slow request).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(max(d, 0))
	for {
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.due.After(target) && (next == nil || t.due.Before(next.due) ||
				(t.due.Equal(next.due) && t.seq < next.seq)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t == next })
		if next.due.After(c.now) {
			c.now = next.due
		}
		c.notifyLocked()
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	if target.After(c.now) { // another Advance, from a callback, may have gone further
		c.now = target
	}
	c.mu.Unlock()
}

// Pending is the number of callbacks waiting to fall due.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitPending blocks until at least n callbacks are pending, so a test can
// advance only once the code under test has armed its timers. It returns
// ctx's error if ctx ends first.
func (c *FakeClock) WaitPending(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		ok, changed := len(c.timers) >= n, c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
