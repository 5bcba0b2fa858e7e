package queuesm

import (
	"fmt"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/queue"
)

// The reads change nothing. An error wraps queue.ErrInvalid for bad
// arguments, else it is a corrupt record.

// Due returns up to max messages of actor that may be delivered at now,
// by (NextAt, Seq): its unordered pending messages whose NextAt is not
// after now, and its ordered head if its NextAt is not after now.
func (m *Machine) Due(actor string, now int64, max int) ([]queue.Message, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	a := actorKey(actor)
	var keys [][]byte
	c := m.b.Due.PrefixCursor(a)
	for k, _ := c.First(); k != nil && len(keys) < max && readTime(k[len(a):]) <= now; k, _ = c.Next() {
		keys = append(keys, seqKey(a, lastSeq(k)))
	}
	msgs := make([]queue.Message, 0, len(keys))
	for _, k := range keys {
		v := m.b.Pending.Get(k)
		if v == nil {
			return nil, fmt.Errorf("%w: due message %x is not pending", queue.ErrCorrupt, k)
		}
		msg, err := queue.UnmarshalMessage(v)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// Queued returns up to max of actor's messages that wait in its queue:
// the pending ones, due or not, by Seq (the order they entered the
// queue), then the scheduled ones by (DeliverAt, Seq).
func (m *Machine) Queued(actor string, max int) ([]queue.Message, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	var msgs []queue.Message
	a := actorKey(actor)
	for _, b := range []kv.Bucket{m.b.Pending, m.b.Scheduled} {
		c := b.PrefixCursor(a)
		for k, v := c.First(); k != nil && len(msgs) < max; k, v = c.Next() {
			msg, err := queue.UnmarshalMessage(v)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, msg)
		}
	}
	return msgs, nil
}

// Ready returns up to max actors whose wake (Wake) is not after until,
// earliest first (by actor key among equal instants).
func (m *Machine) Ready(until int64, max int) ([]queue.Ready, error) {
	var out []queue.Ready
	c := m.b.Wake.Cursor()
	for k, _ := c.First(); k != nil && len(out) < max; k, _ = c.Next() {
		if len(k) < 8 {
			return nil, fmt.Errorf("%w: wake key %x", queue.ErrCorrupt, k)
		}
		at := readTime(k)
		if at > until {
			break
		}
		actor, rest, err := parseActorKey(k[8:])
		if err != nil {
			return nil, err
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: wake key %x", queue.ErrCorrupt, k)
		}
		out = append(out, queue.Ready{Actor: actor, At: utc(at)})
	}
	return out, nil
}

// Wake returns actor's earliest actionable instant: the earliest NextAt
// of its due messages (the unordered ones and the ordered head), DeliverAt
// of its scheduled messages and DueAt of its reminders; ok is false if it
// has none of them.
func (m *Machine) Wake(actor string) (at int64, ok bool, err error) {
	v := m.b.Actors.Get([]byte(actor))
	if v == nil {
		return 0, false, nil
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: wake record of %q", queue.ErrCorrupt, actor)
	}
	return readTime(v), true, nil
}

// ListDead returns the dead letters f selects, oldest DeadAt first (by
// Seq among equal instants).
func (m *Machine) ListDead(f queue.Filter) ([]queue.DeadLetter, error) {
	if err := checkFilter(f); err != nil {
		return nil, err
	}
	_, dead, err := m.selectDead(f)
	return dead, err
}

// Reminders returns actor's reminders by name.
func (m *Machine) Reminders(actor string) ([]queue.Reminder, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	var out []queue.Reminder
	c := m.b.Reminders.PrefixCursor(actorKey(actor))
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := queue.UnmarshalReminder(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Stats returns the figures of every type that has any, by type name:
// counters kept by the writes, and a seek for the oldest pending message.
func (m *Machine) Stats() ([]queue.Stats, error) {
	var out []queue.Stats
	c := m.b.Types.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n, err := unmarshalCounters(v)
		if err != nil {
			return nil, err
		}
		s := queue.Stats{Type: string(k), Pending: int(n.pending), Scheduled: int(n.scheduled), Dead: int(n.dead), Reminders: int(n.reminders)}
		t := actorKey(s.Type)
		if ok, _ := m.b.Oldest.PrefixCursor(t).First(); ok != nil {
			s.Oldest = utc(readTime(ok[len(t):]))
		}
		out = append(out, s)
	}
	return out, nil
}

// Releasable reports whether Release(now, actor) would release a scheduled
// message or fire a reminder: a replicated backend asks it before it
// proposes a Release.
func (m *Machine) Releasable(actor string, now int64) (bool, error) {
	if queue.CheckActor(actor) != nil {
		return false, nil
	}
	a := actorKey(actor)
	for _, b := range []kv.Bucket{m.b.Scheduled, m.b.Timers} {
		if k, _ := b.PrefixCursor(a).First(); k != nil && readTime(k[len(a):]) <= now {
			return true, nil
		}
	}
	return false, nil
}
