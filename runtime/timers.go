package runtime

import (
	"context"
	"time"
)

// Timers (Context.SetTimer) are in memory, like Orleans' grain timers: a
// timer's function runs as a turn of its actor (one turn at a time with
// the actor's calls; its State changes committed as one journal entry,
// method "timer:<name>", before the next turn), after its due time and
// then every period. A timer belongs to the activation that set it: it
// stops when the actor is deactivated (idle, evicted, handed off, shut
// down), and it never keeps the actor active by itself: its turns do not
// count as use for the idle timeout. A timer that fires while the actor is
// busy waits for the running turn, like a call. A timer function's error
// is logged; a panic deactivates the actor as a method's does. Durable
// reminders, which survive deactivation, are a different thing.

// actorTimer is one timer of an activation; guarded by the mailbox.
type actorTimer struct {
	t      *time.Timer
	period time.Duration
	fn     func(Context) error
}

func (c *turnCtx) SetTimer(name string, due, period time.Duration, fn func(ctx Context) error) {
	a := c.act
	if a.timers == nil {
		a.timers = make(map[string]*actorTimer)
	}
	if old := a.timers[name]; old != nil {
		old.t.Stop()
	}
	at := &actorTimer{period: period, fn: fn}
	a.timers[name] = at
	r := a.pool.r
	at.t = time.AfterFunc(max(due, 0), func() { r.fireTimer(a, name, at) })
}

func (c *turnCtx) CancelTimer(name string) {
	a := c.act
	if old := a.timers[name]; old != nil {
		old.t.Stop()
		delete(a.timers, name)
	}
}

// stopTimers stops every timer of a (mailbox held, a deactivating).
func (a *activation) stopTimers() {
	for name, at := range a.timers {
		at.t.Stop()
		delete(a.timers, name)
	}
}

// fireTimer runs timer at of a as a turn, unless it was cancelled,
// replaced, or a was deactivated meanwhile, and sets it again if periodic.
func (r *Runtime) fireTimer(a *activation, name string, at *actorTimer) {
	if r.closing.Load() {
		return
	}
	a.sem <- struct{}{} // the mailbox, after the running turn; timers do not count toward maxQueue
	if a.dead || a.timers[name] != at || r.closing.Load() {
		a.release()
		return
	}
	if a.dropped.Load() {
		a.dead = true
		a.stopTimers()
		a.release()
		return
	}
	if !r.session.Valid() || r.session.Session() != a.session {
		r.deactivateHeld(a, DeactivationLapsed, false)
		return
	}
	ctx := WithCorrelationID(context.Background(), NewCorrelationID())
	method := "timer:" + name
	_, held, err := r.turn(ctx, a, method, nil, func(tc *turnCtx) (any, error) { return nil, at.fn(tc) })
	if err != nil {
		r.log.Warn("actor timer failed", "actor", a.key, "timer", name, "err", err)
	}
	if !held {
		return // the turn deactivated the actor (panic, failed append)
	}
	if at.period > 0 && a.timers[name] == at {
		at.t.Reset(at.period)
	} else if a.timers[name] == at {
		delete(a.timers, name)
	}
	a.release()
}
