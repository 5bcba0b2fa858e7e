package runtime

import (
	"errors"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/queue"
)

// Reminders are durable schedules of messages to the actor that registers
// them: unlike timers (SetTimer), they survive deactivation, restarts and
// failover, and a due reminder activates its actor. Each firing is a
// durable message (delivered at least once, applied once, in the type's
// queue mode). A node that was down across several periods fires a missed
// reminder once, not once per missed period.
type Reminders interface {
	// Set registers, or replaces, the reminder called name: method is
	// sent payload first after due, then every period (0: once).
	Set(name, method string, payload []byte, due, period time.Duration) error
	// Delete removes the reminder called name; an error wrapping
	// queue.ErrNotFound if there is none.
	Delete(name string) error
	// List returns the actor's reminders by name.
	List() ([]queue.Reminder, error)
}

// reminders is a turn's Reminders. Changes are durable when they return
// (they do not wait for the turn to commit).
type reminders struct{ tc *turnCtx }

func (c *turnCtx) Reminders() Reminders { return reminders{c} }

func (rm reminders) store() (queue.Store, error) {
	st := rm.tc.act.pool.r.opts.Messages
	if st == nil {
		return nil, ErrMessagingDisabled
	}
	return st, nil
}

func (rm reminders) Set(name, method string, payload []byte, due, period time.Duration) error {
	a := rm.tc.act
	r := a.pool.r
	st, err := rm.store()
	if err != nil {
		return err
	}
	if _, _, err := r.lookup(a.typ.name, method); err != nil {
		return err
	}
	if due < 0 || period < 0 {
		return fmt.Errorf("%w: reminder %q: due %v and period %v must be >= 0", ErrInvalidArgument, name, due, period)
	}
	if h := r.opts.MaxDelay; h > 0 && due > h {
		return fmt.Errorf("%w: reminder %q due in %v", ErrDeliverAtTooFar, name, due)
	}
	ordered := true
	if r.opts.MessageOrdered != nil {
		ordered = r.opts.MessageOrdered(a.typ.name)
	}
	err = st.SetReminder(rm.tc, queue.Reminder{
		Actor: a.key, Name: name, Method: method, Payload: payload, Ordered: ordered,
		DueAt: r.now().Add(due), Period: period,
	})
	if errors.Is(err, queue.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return err
}

func (rm reminders) Delete(name string) error {
	st, err := rm.store()
	if err != nil {
		return err
	}
	return st.DeleteReminder(rm.tc, rm.tc.act.key, name)
}

func (rm reminders) List() ([]queue.Reminder, error) {
	st, err := rm.store()
	if err != nil {
		return nil, err
	}
	return st.Reminders(rm.tc, rm.tc.act.key)
}

// Remind registers, or replaces, the calling actor's reminder called name,
// which sends in to this method after due, then every period (0: once). ctx
// must be a turn of the method's own actor type.
func (m Method[In, Out]) Remind(ctx Context, name string, in In, due, period time.Duration) error {
	if ctx.ActorType() != m.actorType {
		return fmt.Errorf("%w: a %s cannot set a reminder for %s.%s", ErrInvalidArgument, ctx.ActorType(), m.actorType, m.name)
	}
	payload, err := m.in.encode(in)
	if err != nil {
		return fmt.Errorf("%w: encoding argument of %s.%s: %v", ErrBadPayload, m.actorType, m.name, err)
	}
	return ctx.Reminders().Set(name, m.name, payload, due, period)
}

// Remind is Method.Remind for a method without an argument.
func (m Method0[Out]) Remind(ctx Context, name string, due, period time.Duration) error {
	if ctx.ActorType() != m.m.actorType {
		return fmt.Errorf("%w: a %s cannot set a reminder for %s.%s", ErrInvalidArgument, ctx.ActorType(), m.m.actorType, m.m.name)
	}
	return ctx.Reminders().Set(name, m.m.name, nil, due, period)
}
