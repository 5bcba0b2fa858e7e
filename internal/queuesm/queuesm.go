package queuesm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/queue"
)

// PruneBatch is the most expired ids one write forgets.
const PruneBatch = 64

// Config is what a Machine needs besides its buckets. Every replica of a
// replicated store must use the same Config, or their states diverge.
type Config struct {
	// Retention is how long the id of an acknowledged or purged message
	// is remembered, so that an Enqueue of it is a duplicate. 0 means
	// queue.DefaultRetention.
	Retention time.Duration

	// OnWake, if set, is called at the end of each successful write, once
	// for every actor the write gave something to deliver or release (an
	// enqueue, a release, a retry, a replay, a reminder set, the next
	// ordered message made due by an ack or a dead letter), with the
	// actor's earliest actionable instant (Wake) after the write. It is
	// called from the goroutine applying the write, before the backend
	// commits: a backend collects the calls and notifies after its commit.
	// It must not use the machine.
	OnWake func(actor string, at int64)
}

// Machine applies the queue commands to its buckets. Each write method is
// one command: a rule violation comes back as rule, wrapping one of the
// queue package's sentinels, and changes nothing; err is a storage failure
// or a corrupt record, fatal to the state machine. now is the command's
// stamped clock (UnixNano).
//
// A Machine is used by one goroutine at a time, like its buckets.
type Machine struct {
	b         Buckets
	retention uint64 // nanoseconds
	onWake    func(actor string, at int64)

	// The actors the command in progress changed, in the order it first
	// changed them, and whether it gave each something (OnWake).
	touched []string
	gave    map[string]bool
}

// New returns a machine over b.
func New(b Buckets, c Config) *Machine {
	r := c.Retention
	if r <= 0 {
		r = queue.DefaultRetention
	}
	return &Machine{b: b, retention: uint64(r), onWake: c.OnWake, gave: map[string]bool{}}
}

// --- the commands ---

// Enqueue accepts msg at now (Store.Enqueue): a known id answers its first
// acceptance with Duplicate set and stores nothing; otherwise the message
// gets the next Seq, AcceptedAt now, Attempts 0, no LastError and NextAt
// max(DeliverAt, now), and is scheduled when DeliverAt is after now.
func (m *Machine) Enqueue(now int64, msg queue.Message) (acc queue.Accepted, rule, err error) {
	if rule := queue.CheckMessage(msg); rule != nil {
		return queue.Accepted{}, rule, nil
	}
	m.begin()
	acc, err = m.enqueue(now, msg)
	if err != nil {
		return queue.Accepted{}, nil, err
	}
	return acc, nil, m.finish(now)
}

// CheckOutbox applies the rules of a KindMessageSend entry whose
// IdempotencyKey is id and Payload encoded, before the append that
// carries it writes anything: the payload must decode
// (queue.UnmarshalMessage), be a valid message (queue.CheckMessage) and
// carry id as its ID. The rule wraps queue.ErrInvalid; a journal backend
// reports it wrapped in journal.ErrInvalid.
func (m *Machine) CheckOutbox(id string, encoded []byte) (rule error) {
	_, rule = DecodeOutbox(id, encoded)
	return rule
}

// DecodeOutbox decodes the message of a KindMessageSend entry and applies
// CheckOutbox's rules to it, for the backends whose queue rules run in the
// server (a script, a function) and need the message's fields.
func DecodeOutbox(id string, encoded []byte) (queue.Message, error) {
	msg, err := queue.UnmarshalMessage(encoded)
	if err != nil {
		return queue.Message{}, fmt.Errorf("%w: outbox entry %q: %w", queue.ErrInvalid, id, err)
	}
	if err := queue.CheckMessage(msg); err != nil {
		return queue.Message{}, fmt.Errorf("outbox entry %q: %w", id, err)
	}
	if msg.ID != id {
		return queue.Message{}, fmt.Errorf("%w: outbox entry %q carries message %q", queue.ErrInvalid, id, msg.ID)
	}
	return msg, nil
}

// EnqueueOutbox enqueues the message of a KindMessageSend entry (encoded
// by queue.MarshalMessage) as Enqueue does, a duplicate being skipped. It
// is one command, applied after the journal entries are stored; the
// backend has checked the entry with CheckOutbox, so a payload that does
// not pass fails as a fatal error.
func (m *Machine) EnqueueOutbox(now int64, encoded []byte) (queue.Accepted, error) {
	msg, err := queue.UnmarshalMessage(encoded)
	if err == nil {
		err = queue.CheckMessage(msg)
	}
	if err != nil {
		return queue.Accepted{}, fmt.Errorf("queuesm: outbox message not checked by CheckOutbox: %w", err)
	}
	m.begin()
	acc, err := m.enqueue(now, msg)
	if err != nil {
		return queue.Accepted{}, err
	}
	return acc, m.finish(now)
}

func (m *Machine) enqueue(now int64, msg queue.Message) (queue.Accepted, error) {
	rec, found, err := m.lookup(msg.ID)
	if err != nil {
		return queue.Accepted{}, err
	}
	if found && !m.expired(rec, now) {
		return queue.Accepted{ID: msg.ID, Seq: rec.firstSeq, AcceptedAt: utc(rec.acceptedAt), Duplicate: true}, nil
	}
	if found { // gone and expired, not yet pruned: forget it now
		if err := m.b.Gone.Delete(join(timeBytes(rec.at), []byte(msg.ID))); err != nil {
			return queue.Accepted{}, err
		}
	}
	seq, err := m.nextSeq()
	if err != nil {
		return queue.Accepted{}, err
	}
	deliverAt := int64(math.MinInt64)
	if !msg.DeliverAt.IsZero() {
		deliverAt = queue.UnixNano(msg.DeliverAt)
	}
	msg.Seq, msg.AcceptedAt, msg.Attempts, msg.LastError = seq, utc(now), 0, ""
	msg.NextAt = utc(max(deliverAt, now))
	if deliverAt > now {
		err = m.schedule(msg, seq)
	} else {
		err = m.addPending(msg, seq)
	}
	return queue.Accepted{ID: msg.ID, Seq: seq, AcceptedAt: msg.AcceptedAt}, err
}

// CheckDirect applies the rules of a KindMessageDirect entry of an append
// to actor (the turn that applied a message accepted by that append),
// whose IdempotencyKey is id, before the append writes anything: id must
// be a valid message id and actor a valid actor (else the rule wraps
// queue.ErrInvalid; a journal backend reports it wrapped in
// journal.ErrInvalid); the id must not be known (queue.ErrKnownID); no
// ordered message of actor may be pending (queue.ErrNotHead), whatever
// the mode of the message applied: a message applied on acceptance
// overtakes every pending one, which only an unordered queue allows, and
// an actor's queue holds ordered messages only in fifo mode. A journal
// backend reports those two wrapped in journal.ErrAck.
func (m *Machine) CheckDirect(now int64, actor, id string) (invalid, rule, err error) {
	if invalid := CheckDirectIDs(actor, []string{id}); invalid != nil {
		return invalid, nil, nil
	}
	rec, found, err := m.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if found && !m.expired(rec, now) {
		return nil, fmt.Errorf("%w: direct message %q to %q", queue.ErrKnownID, id, actor), nil
	}
	if k, _ := m.b.Ordered.PrefixCursor(actorKey(actor)).First(); k != nil {
		return nil, fmt.Errorf("%w: direct message %q to %q: ordered message seq %d is pending", queue.ErrNotHead, id, actor, lastSeq(k)), nil
	}
	return nil, nil, nil
}

// Direct records the message id of a KindMessageDirect entry of an append
// to actor, which CheckDirect passed in the same command: the id is
// remembered from now on as an acknowledged message's (Seq 0: it never had
// a place in a queue), so that Enqueue of the same id is a duplicate while
// the store remembers it. It is one command, applied with the journal
// entries of the append. It forgets expired ids (PruneBatch of them) for
// one direct message in directPruneEvery, chosen by its id so that every
// replica makes the same choice: enough to forget faster than direct
// messages add ids, without a seek per message.
func (m *Machine) Direct(now int64, actor, id string) error {
	m.begin()
	rec, found, err := m.lookup(id)
	if err != nil {
		return err
	}
	if found {
		if !m.expired(rec, now) {
			return fmt.Errorf("queuesm: direct message %q not checked by CheckDirect: its id is known", id)
		}
		// Gone and expired, not yet pruned.
		if err := m.b.Gone.Delete(join(timeBytes(rec.at), []byte(id))); err != nil {
			return err
		}
	}
	rec = idRec{actor: actor, acceptedAt: now}
	if err := m.forget(id, rec, now); err != nil {
		return err
	}
	return m.end(now, crc32.ChecksumIEEE([]byte(id))%directPruneEvery == 0)
}

// CheckDirectIDs applies the rules of an append's KindMessageDirect
// entries, whose IdempotencyKeys are ids, that need no stored data: one
// entry at most (a turn applies one message), a valid message id and a
// valid actor. The rule wraps queue.ErrInvalid; a journal backend reports
// it wrapped in journal.ErrInvalid.
func CheckDirectIDs(actor string, ids []string) error {
	if len(ids) > 1 {
		return fmt.Errorf("%w: %d direct message entries in one append to %q; a turn applies one message", queue.ErrInvalid, len(ids), actor)
	}
	for _, id := range ids {
		if err := queue.CheckID(id); err != nil {
			return fmt.Errorf("direct message: %w", err)
		}
		if err := queue.CheckActor(actor); err != nil {
			return fmt.Errorf("direct message %q: %w", id, err)
		}
	}
	return nil
}

// directPruneEvery: one direct message in this many prunes (see Direct).
// A prune forgets up to PruneBatch ids, so ids are forgotten PruneBatch /
// directPruneEvery times as fast as direct messages add them.
const directPruneEvery = 8

// CheckAcks applies the rules of the KindMessageAck entries of one append
// to actor, acknowledging ids in that order, before the append writes
// anything: each id must be pending in actor's queue and acknowledged once
// (else the rule wraps queue.ErrNotFound), and an ordered one must have no
// ordered message of actor with a lower Seq still pending once the ids
// before it are acknowledged (else queue.ErrNotHead). A journal backend
// reports the rule wrapped in journal.ErrAck.
func (m *Machine) CheckAcks(actor string, ids []string) (rule, err error) {
	if rule := queue.CheckActor(actor); rule != nil {
		return rule, nil
	}
	a := actorKey(actor)
	acked := make(map[string]bool, len(ids))
	ackedSeqs := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if acked[id] {
			return fmt.Errorf("%w: message %q is acknowledged twice in one append to %q", queue.ErrNotFound, id, actor), nil
		}
		acked[id] = true
		rec, found, err := m.lookup(id)
		if err != nil {
			return nil, err
		}
		if !found || rec.state != statePending || rec.actor != actor {
			return fmt.Errorf("%w: message %q is not pending in the queue of %q", queue.ErrNotFound, id, actor), nil
		}
		ackedSeqs[rec.seq] = true
		if m.b.Ordered.Get(seqKey(a, rec.seq)) == nil {
			continue // unordered
		}
		c := m.b.Ordered.PrefixCursor(a)
		for k, _ := c.First(); k != nil && lastSeq(k) < rec.seq; k, _ = c.Next() {
			if !ackedSeqs[lastSeq(k)] {
				return fmt.Errorf("%w: ordered message %q (seq %d) of %q acknowledged before seq %d", queue.ErrNotHead, id, rec.seq, actor, lastSeq(k)), nil
			}
		}
	}
	return nil, nil
}

// Ack acknowledges ids in actor's queue, in that order: each leaves the
// queue and its id is remembered as gone at now. It is one command,
// applied with the journal entries of the append that carries the acks;
// the backend has checked them with CheckAcks, so a violation fails as a
// fatal error.
func (m *Machine) Ack(now int64, actor string, ids []string) error {
	rule, err := m.CheckAcks(actor, ids)
	if err != nil {
		return err
	}
	if rule != nil {
		return fmt.Errorf("queuesm: acks not checked by CheckAcks: %w", rule)
	}
	m.begin()
	for _, id := range ids {
		rec, _, err := m.lookup(id)
		if err != nil {
			return err
		}
		msg, err := m.pending(actor, rec.seq)
		if err != nil {
			return err
		}
		if err := m.removePending(msg); err != nil {
			return err
		}
		if err := m.forget(msg.ID, rec, now); err != nil {
			return err
		}
	}
	return m.finish(now)
}

// Handoff takes ids out of actor's queue because another store has
// accepted them (a backend that keeps an actor's queue in one store
// relays there the messages an outbox left in another): each id pending
// or scheduled in actor's queue leaves it, in any order, and is
// remembered as gone at now; any other id is skipped, so a handoff sent
// twice takes nothing the second time. It returns how many left. The rule
// wraps queue.ErrInvalid for an invalid actor or id.
func (m *Machine) Handoff(now int64, actor string, ids []string) (n int, rule, err error) {
	if rule := queue.CheckActor(actor); rule != nil {
		return 0, rule, nil
	}
	for _, id := range ids {
		if id == "" || len(id) > queue.MaxIDLen {
			return 0, fmt.Errorf("%w: message id of %d bytes", queue.ErrInvalid, len(id)), nil
		}
	}
	m.begin()
	for _, id := range ids {
		rec, found, err := m.lookup(id)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case !found || rec.actor != actor:
			continue
		case rec.state == statePending:
			msg, err := m.pending(actor, rec.seq)
			if err != nil {
				return 0, nil, err
			}
			if err := m.removePending(msg); err != nil {
				return 0, nil, err
			}
		case rec.state == stateScheduled:
			if err := m.b.Scheduled.Delete(timeSeqKey(actorKey(actor), rec.at, rec.seq)); err != nil {
				return 0, nil, err
			}
			m.touch(actor, false)
			if err := m.count(actor, func(c *counters) { c.scheduled-- }); err != nil {
				return 0, nil, err
			}
		default:
			continue
		}
		if err := m.forget(id, rec, now); err != nil {
			return 0, nil, err
		}
		n++
	}
	return n, nil, m.finish(now)
}

// Retry records a failed delivery of a pending message (Store.Retry):
// Attempts f.Attempts+1, LastError f.Reason, NextAt f.RetryAt (now if
// RetryAt is zero). The rule wraps queue.ErrInvalid for bad arguments,
// ErrNotFound if the message is not pending in f.Actor's queue, ErrStale
// if its Attempts is not f.Attempts.
func (m *Machine) Retry(now int64, f queue.Failure) (rule, err error) {
	msg, rule, err := m.failed(f)
	if rule != nil || err != nil {
		return rule, err
	}
	m.begin()
	a := actorKey(msg.Actor)
	next := now
	if !f.RetryAt.IsZero() {
		next = queue.UnixNano(f.RetryAt)
	}
	inDue := true
	if msg.Ordered {
		inDue, err = m.isHead(a, msg.Seq)
		if err != nil {
			return nil, err
		}
		if err := m.b.Ordered.Put(seqKey(a, msg.Seq), timeBytes(next)); err != nil {
			return nil, err
		}
	}
	if inDue {
		if err := m.b.Due.Delete(timeSeqKey(a, queue.UnixNano(msg.NextAt), msg.Seq)); err != nil {
			return nil, err
		}
		if err := m.b.Due.Put(timeSeqKey(a, next, msg.Seq), nil); err != nil {
			return nil, err
		}
	}
	msg.Attempts, msg.LastError, msg.NextAt = bump(f.Attempts), f.Reason, utc(next)
	if err := m.b.Pending.Put(seqKey(a, msg.Seq), queue.MarshalMessage(msg)); err != nil {
		return nil, err
	}
	m.touch(msg.Actor, true)
	return nil, m.finish(now)
}

// DeadLetter moves a pending message to the dead letters
// (Store.DeadLetter), with Attempts f.Attempts+1, LastError f.Reason and
// DeadAt f.At (now if At is zero); the next ordered message, if it was the
// head, becomes due. Rules as for Retry.
func (m *Machine) DeadLetter(now int64, f queue.Failure) (rule, err error) {
	msg, rule, err := m.failed(f)
	if rule != nil || err != nil {
		return rule, err
	}
	m.begin()
	if err := m.removePending(msg); err != nil {
		return nil, err
	}
	deadAt := now
	if !f.At.IsZero() {
		deadAt = queue.UnixNano(f.At)
	}
	msg.Attempts, msg.LastError = bump(f.Attempts), f.Reason
	if err := m.b.Dead.Put(deadKey(deadAt, msg.Seq), queue.MarshalDeadLetter(queue.DeadLetter{Message: msg, DeadAt: utc(deadAt)})); err != nil {
		return nil, err
	}
	rec, _, err := m.lookup(msg.ID)
	if err != nil {
		return nil, err
	}
	rec.state, rec.at = stateDead, deadAt
	if err := m.b.IDs.Put([]byte(msg.ID), rec.marshal()); err != nil {
		return nil, err
	}
	if err := m.count(msg.Actor, func(c *counters) { c.dead++ }); err != nil {
		return nil, err
	}
	return nil, m.finish(now)
}

// failed applies the rules shared by Retry and DeadLetter and returns the
// pending message.
func (m *Machine) failed(f queue.Failure) (queue.Message, error, error) {
	if rule := queue.CheckFailure(f); rule != nil {
		return queue.Message{}, rule, nil
	}
	rec, found, err := m.lookup(f.ID)
	if err != nil {
		return queue.Message{}, nil, err
	}
	if !found || rec.state != statePending || rec.actor != f.Actor {
		return queue.Message{}, fmt.Errorf("%w: message %q is not pending in the queue of %q", queue.ErrNotFound, f.ID, f.Actor), nil
	}
	msg, err := m.pending(f.Actor, rec.seq)
	if err != nil {
		return queue.Message{}, nil, err
	}
	if msg.Attempts != f.Attempts {
		return queue.Message{}, fmt.Errorf("%w: message %q has %d attempts, the failure reports %d", queue.ErrStale, f.ID, msg.Attempts, f.Attempts), nil
	}
	return msg, nil, nil
}

// bump is attempts+1, kept at the largest uint32.
func bump(attempts uint32) uint32 {
	if attempts == math.MaxUint32 {
		return attempts
	}
	return attempts + 1
}

// Release moves actor's scheduled messages due by now into its queue, in
// (DeliverAt, Seq) order, each with a new Seq; then fires its reminders due
// by now, in (DueAt, name) order (Store.Release). A fired message whose id
// is known is skipped. A reminder whose next firing would be past the
// representable instants is deleted. It returns how many messages entered
// the queue.
func (m *Machine) Release(now int64, actor string) (n int, rule, err error) {
	if rule := queue.CheckActor(actor); rule != nil {
		return 0, rule, nil
	}
	m.begin()
	a := actorKey(actor)
	var keys, vals [][]byte
	c := m.b.Scheduled.PrefixCursor(a)
	for k, v := c.First(); k != nil && readTime(k[len(a):]) <= now; k, v = c.Next() {
		k, v = cloneKV(k, v)
		keys, vals = append(keys, k), append(vals, v)
	}
	for i, k := range keys {
		msg, err := queue.UnmarshalMessage(vals[i])
		if err != nil {
			return 0, nil, err
		}
		if err := m.b.Scheduled.Delete(k); err != nil {
			return 0, nil, err
		}
		rec, _, err := m.lookup(msg.ID)
		if err != nil {
			return 0, nil, err
		}
		if msg.Seq, err = m.nextSeq(); err != nil {
			return 0, nil, err
		}
		if err := m.count(actor, func(c *counters) { c.scheduled-- }); err != nil {
			return 0, nil, err
		}
		if err := m.addPending(msg, rec.firstSeq); err != nil {
			return 0, nil, err
		}
		n++
	}
	keys = keys[:0]
	c = m.b.Timers.PrefixCursor(a)
	for k, _ := c.First(); k != nil && readTime(k[len(a):]) <= now; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		fired, err := m.fire(now, actor, a, k)
		if err != nil {
			return 0, nil, err
		}
		n += fired
	}
	m.touch(actor, n > 0)
	return n, nil, m.finishNoPrune(now)
}

// fire fires the reminder whose Timers key is k and moves it to its next
// firing, or deletes it; it returns how many messages entered the queue.
func (m *Machine) fire(now int64, actor string, a, k []byte) (int, error) {
	name := k[len(a)+8:]
	rk := join(a, name)
	v := m.b.Reminders.Get(rk)
	if v == nil {
		return 0, fmt.Errorf("%w: timer %x has no reminder", queue.ErrCorrupt, k)
	}
	r, err := queue.UnmarshalReminder(v)
	if err != nil {
		return 0, err
	}
	due := readTime(k[len(a):])
	n := 0
	acc, err := m.enqueue(now, queue.Message{ID: queue.ReminderID(actor, r.Name, due), Actor: actor, Method: r.Method, Payload: r.Payload, Ordered: r.Ordered})
	if err != nil {
		return 0, err
	}
	if !acc.Duplicate {
		n = 1
	}
	if err := m.b.Timers.Delete(k); err != nil {
		return 0, err
	}
	next, ok := nextFiring(due, int64(r.Period), now)
	if !ok {
		if err := m.b.Reminders.Delete(rk); err != nil {
			return 0, err
		}
		return n, m.count(actor, func(c *counters) { c.reminders-- })
	}
	r.DueAt = utc(next)
	if err := m.b.Reminders.Put(rk, queue.MarshalReminder(r)); err != nil {
		return 0, err
	}
	return n, m.b.Timers.Put(join(a, timeBytes(next), name), nil)
}

// nextFiring is the first instant due + k*period (k >= 1) after now, for
// due <= now; ok is false for a period of 0 or when that instant is past
// the representable ones.
func nextFiring(due, period, now int64) (int64, bool) {
	if period <= 0 {
		return 0, false
	}
	k := (uint64(now)-uint64(due))/uint64(period) + 1 // exact: now >= due
	hi, step := bits.Mul64(k, uint64(period))
	room := uint64(math.MaxInt64) - uint64(due) // exact: due <= MaxInt64
	if hi != 0 || step > room {
		return 0, false
	}
	return int64(uint64(due) + step), true
}

// Replay moves the dead letters f selects back into their actors' queues
// (Store.Replay), each with a new Seq, Attempts 0, NextAt now and no
// LastError, oldest DeadAt first, and returns how many.
func (m *Machine) Replay(now int64, f queue.Filter) (n int, rule, err error) {
	if rule := checkFilter(f); rule != nil {
		return 0, rule, nil
	}
	m.begin()
	keys, dead, err := m.selectDead(f)
	if err != nil {
		return 0, nil, err
	}
	for i, d := range dead {
		if err := m.b.Dead.Delete(keys[i]); err != nil {
			return 0, nil, err
		}
		rec, _, err := m.lookup(d.ID)
		if err != nil {
			return 0, nil, err
		}
		msg := d.Message
		if msg.Seq, err = m.nextSeq(); err != nil {
			return 0, nil, err
		}
		msg.Attempts, msg.NextAt, msg.LastError = 0, utc(now), ""
		if err := m.count(msg.Actor, func(c *counters) { c.dead-- }); err != nil {
			return 0, nil, err
		}
		if err := m.addPending(msg, rec.firstSeq); err != nil {
			return 0, nil, err
		}
	}
	return len(dead), nil, m.finishNoPrune(now)
}

// Purge deletes the dead letters f selects (Store.Purge), remembering
// their ids as gone at now, and returns how many.
func (m *Machine) Purge(now int64, f queue.Filter) (n int, rule, err error) {
	if rule := checkFilter(f); rule != nil {
		return 0, rule, nil
	}
	m.begin()
	keys, dead, err := m.selectDead(f)
	if err != nil {
		return 0, nil, err
	}
	for i, d := range dead {
		if err := m.b.Dead.Delete(keys[i]); err != nil {
			return 0, nil, err
		}
		rec, _, err := m.lookup(d.ID)
		if err != nil {
			return 0, nil, err
		}
		if err := m.count(d.Actor, func(c *counters) { c.dead-- }); err != nil {
			return 0, nil, err
		}
		if err := m.forget(d.ID, rec, now); err != nil {
			return 0, nil, err
		}
	}
	return len(dead), nil, m.finish(now)
}

// SetReminder stores r (queue.CheckReminder's rules), replacing actor's
// reminder of the same name.
func (m *Machine) SetReminder(now int64, r queue.Reminder) (rule, err error) {
	if rule := queue.CheckReminder(r); rule != nil {
		return rule, nil
	}
	m.begin()
	a := actorKey(r.Actor)
	rk := join(a, []byte(r.Name))
	if v := m.b.Reminders.Get(rk); v != nil {
		old, err := queue.UnmarshalReminder(v)
		if err != nil {
			return nil, err
		}
		if err := m.b.Timers.Delete(join(a, timeBytes(queue.UnixNano(old.DueAt)), []byte(r.Name))); err != nil {
			return nil, err
		}
	} else if err := m.count(r.Actor, func(c *counters) { c.reminders++ }); err != nil {
		return nil, err
	}
	due := queue.UnixNano(r.DueAt)
	r.DueAt = utc(due)
	if err := m.b.Reminders.Put(rk, queue.MarshalReminder(r)); err != nil {
		return nil, err
	}
	if err := m.b.Timers.Put(join(a, timeBytes(due), []byte(r.Name)), nil); err != nil {
		return nil, err
	}
	m.touch(r.Actor, true)
	return nil, m.finish(now)
}

// DeleteReminder removes actor's reminder name; the rule wraps
// queue.ErrNotFound if there is none.
func (m *Machine) DeleteReminder(now int64, actor, name string) (rule, err error) {
	if rule := queue.CheckActor(actor); rule != nil {
		return rule, nil
	}
	a := actorKey(actor)
	rk := join(a, []byte(name))
	v := m.b.Reminders.Get(rk)
	if v == nil {
		return fmt.Errorf("%w: %q has no reminder %q", queue.ErrNotFound, actor, name), nil
	}
	r, err := queue.UnmarshalReminder(v)
	if err != nil {
		return nil, err
	}
	m.begin()
	if err := m.b.Reminders.Delete(rk); err != nil {
		return nil, err
	}
	if err := m.b.Timers.Delete(join(a, timeBytes(queue.UnixNano(r.DueAt)), []byte(name))); err != nil {
		return nil, err
	}
	if err := m.count(actor, func(c *counters) { c.reminders-- }); err != nil {
		return nil, err
	}
	m.touch(actor, false)
	return nil, m.finish(now)
}

// --- the steps commands share ---

// begin starts a command's bookkeeping of the actors it changes.
func (m *Machine) begin() {
	m.touched = m.touched[:0]
	clear(m.gave)
}

// touch notes that the command changed actor, and gave it something to
// deliver or release if gave.
func (m *Machine) touch(actor string, gave bool) {
	g, seen := m.gave[actor]
	if !seen {
		m.touched = append(m.touched, actor)
	}
	m.gave[actor] = g || gave
}

// finish ends a command: it recomputes the wake of every actor the command
// changed, forgets up to PruneBatch expired ids, then calls OnWake.
func (m *Machine) finish(now int64) error { return m.end(now, true) }

// finishNoPrune is finish for the commands whose now is the caller's
// (Release, Replay), not the store's clock: they forget no ids, so that a
// caller whose clock runs ahead cannot make the store forget ids early.
func (m *Machine) finishNoPrune(now int64) error { return m.end(now, false) }

func (m *Machine) end(now int64, prune bool) error {
	for _, actor := range m.touched {
		if err := m.refreshWake(actor); err != nil {
			return err
		}
	}
	if prune {
		if err := m.prune(now); err != nil {
			return err
		}
	}
	if m.onWake == nil {
		return nil
	}
	for _, actor := range m.touched {
		if !m.gave[actor] {
			continue
		}
		at, ok, err := m.Wake(actor)
		if err != nil {
			return err
		}
		if ok {
			m.onWake(actor, at)
		}
	}
	return nil
}

// refreshWake sets actor's wake (Actors, Wake) to the earliest of its
// first due message, first scheduled message and first reminder: three
// seeks.
func (m *Machine) refreshWake(actor string) error {
	a := actorKey(actor)
	wake, ok := int64(0), false
	for _, b := range [...]kv.Bucket{m.b.Due, m.b.Scheduled, m.b.Timers} {
		if k, _ := b.PrefixCursor(a).First(); k != nil {
			if t := readTime(k[len(a):]); !ok || t < wake {
				wake, ok = t, true
			}
		}
	}
	old := m.b.Actors.Get([]byte(actor))
	if old != nil {
		if ok && readTime(old) == wake {
			return nil
		}
		if err := m.b.Wake.Delete(join(old, a)); err != nil {
			return err
		}
	}
	if !ok {
		return m.b.Actors.Delete([]byte(actor))
	}
	if err := m.b.Wake.Put(join(timeBytes(wake), a), nil); err != nil {
		return err
	}
	return m.b.Actors.Put([]byte(actor), timeBytes(wake))
}

// prune forgets up to PruneBatch ids gone longer than the retention ago,
// the oldest first.
func (m *Machine) prune(now int64) error {
	var keys [][]byte
	c := m.b.Gone.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < PruneBatch && m.expiredAt(readTime(k), now); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := m.b.Gone.Delete(k); err != nil {
			return err
		}
		if err := m.b.IDs.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// expiredAt reports whether an id gone at goneAt is forgotten at now.
func (m *Machine) expiredAt(goneAt, now int64) bool {
	return goneAt <= now && uint64(now)-uint64(goneAt) >= m.retention
}

// expired reports whether rec is gone and forgotten at now, pruned or not.
func (m *Machine) expired(rec idRec, now int64) bool {
	return rec.state == stateGone && m.expiredAt(rec.at, now)
}

// lookup returns the id record of id, found false if there is none.
func (m *Machine) lookup(id string) (idRec, bool, error) {
	v := m.b.IDs.Get([]byte(id))
	if v == nil {
		return idRec{}, false, nil
	}
	rec, err := unmarshalIDRec(v)
	return rec, err == nil, err
}

// nextSeq takes the next Seq.
func (m *Machine) nextSeq() (uint64, error) {
	var last uint64
	if v := m.b.Meta.Get(metaSeq); v != nil {
		d := kv.Decoder{B: v, Wraps: queue.ErrCorrupt}
		last = d.Uvarint()
		if err := d.Finish(); err != nil {
			return 0, fmt.Errorf("seq record: %w", err)
		}
	}
	if last == math.MaxUint64 {
		return 0, fmt.Errorf("queuesm: the message sequence is exhausted")
	}
	return last + 1, m.b.Meta.Put(metaSeq, binary.AppendUvarint(nil, last+1))
}

// pending reads the pending message at seq of actor.
func (m *Machine) pending(actor string, seq uint64) (queue.Message, error) {
	v := m.b.Pending.Get(seqKey(actorKey(actor), seq))
	if v == nil {
		return queue.Message{}, fmt.Errorf("%w: pending message %d of %q is missing", queue.ErrCorrupt, seq, actor)
	}
	return queue.UnmarshalMessage(v)
}

// isHead reports whether seq is the first pending ordered message under a.
func (m *Machine) isHead(a []byte, seq uint64) (bool, error) {
	k, _ := m.b.Ordered.PrefixCursor(a).First()
	if k == nil {
		return false, fmt.Errorf("%w: ordered message %d has no index record", queue.ErrCorrupt, seq)
	}
	return lastSeq(k) == seq, nil
}

// schedule stores msg (stamped, Seq given) as a scheduled message.
func (m *Machine) schedule(msg queue.Message, firstSeq uint64) error {
	a := actorKey(msg.Actor)
	deliverAt := queue.UnixNano(msg.DeliverAt)
	if err := m.b.Scheduled.Put(timeSeqKey(a, deliverAt, msg.Seq), queue.MarshalMessage(msg)); err != nil {
		return err
	}
	rec := idRec{state: stateScheduled, actor: msg.Actor, seq: msg.Seq, at: deliverAt, firstSeq: firstSeq, acceptedAt: queue.UnixNano(msg.AcceptedAt)}
	if err := m.b.IDs.Put([]byte(msg.ID), rec.marshal()); err != nil {
		return err
	}
	m.touch(msg.Actor, true)
	return m.count(msg.Actor, func(c *counters) { c.scheduled++ })
}

// addPending puts msg (stamped, with a Seq above every other) into its
// actor's queue; an ordered one is due only if it is the head.
func (m *Machine) addPending(msg queue.Message, firstSeq uint64) error {
	a := actorKey(msg.Actor)
	next := queue.UnixNano(msg.NextAt)
	due := true
	if msg.Ordered {
		k, _ := m.b.Ordered.PrefixCursor(a).First()
		due = k == nil
		if err := m.b.Ordered.Put(seqKey(a, msg.Seq), timeBytes(next)); err != nil {
			return err
		}
	}
	if due {
		if err := m.b.Due.Put(timeSeqKey(a, next, msg.Seq), nil); err != nil {
			return err
		}
	}
	if err := m.b.Pending.Put(seqKey(a, msg.Seq), queue.MarshalMessage(msg)); err != nil {
		return err
	}
	acceptedAt := queue.UnixNano(msg.AcceptedAt)
	if err := m.b.Oldest.Put(timeSeqKey(actorKey(typeOf(msg.Actor)), acceptedAt, msg.Seq), nil); err != nil {
		return err
	}
	rec := idRec{state: statePending, actor: msg.Actor, seq: msg.Seq, firstSeq: firstSeq, acceptedAt: acceptedAt}
	if err := m.b.IDs.Put([]byte(msg.ID), rec.marshal()); err != nil {
		return err
	}
	m.touch(msg.Actor, true)
	return m.count(msg.Actor, func(c *counters) { c.pending++ })
}

// removePending takes msg out of its actor's queue and its indexes; if it
// was the ordered head, the next ordered message becomes due.
func (m *Machine) removePending(msg queue.Message) error {
	a := actorKey(msg.Actor)
	sk := seqKey(a, msg.Seq)
	inDue := true
	if msg.Ordered {
		c := m.b.Ordered.PrefixCursor(a)
		k, _ := c.First()
		inDue = bytes.Equal(k, sk)
		var nextKey, nextAt []byte
		if inDue {
			nextKey, nextAt = c.Next()
			nextKey, nextAt = cloneKV(nextKey, nextAt)
		}
		if err := m.b.Ordered.Delete(sk); err != nil {
			return err
		}
		if nextKey != nil {
			if err := m.b.Due.Put(timeSeqKey(a, readTime(nextAt), lastSeq(nextKey)), nil); err != nil {
				return err
			}
			m.touch(msg.Actor, true)
		}
	}
	if inDue {
		if err := m.b.Due.Delete(timeSeqKey(a, queue.UnixNano(msg.NextAt), msg.Seq)); err != nil {
			return err
		}
	}
	if err := m.b.Pending.Delete(sk); err != nil {
		return err
	}
	if err := m.b.Oldest.Delete(timeSeqKey(actorKey(typeOf(msg.Actor)), queue.UnixNano(msg.AcceptedAt), msg.Seq)); err != nil {
		return err
	}
	m.touch(msg.Actor, false)
	return m.count(msg.Actor, func(c *counters) { c.pending-- })
}

// forget records that id (whose record is rec) left the store at now.
func (m *Machine) forget(id string, rec idRec, now int64) error {
	rec.state, rec.seq, rec.at = stateGone, 0, now
	if err := m.b.IDs.Put([]byte(id), rec.marshal()); err != nil {
		return err
	}
	return m.b.Gone.Put(join(timeBytes(now), []byte(id)), nil)
}

// count changes the counters of actor's type.
func (m *Machine) count(actor string, change func(*counters)) error {
	typ := []byte(typeOf(actor))
	var c counters
	if v := m.b.Types.Get(typ); v != nil {
		var err error
		if c, err = unmarshalCounters(v); err != nil {
			return err
		}
	}
	change(&c)
	if c.zero() {
		return m.b.Types.Delete(typ)
	}
	return m.b.Types.Put(typ, c.marshal())
}

// checkFilter applies the rules of a dead-letter filter.
func checkFilter(f queue.Filter) error {
	if f.Limit < 0 {
		return fmt.Errorf("%w: negative limit %d", queue.ErrInvalid, f.Limit)
	}
	if !queue.TimeRepresentable(f.Before) {
		return fmt.Errorf("%w: filter time %v outside the storable range", queue.ErrInvalid, f.Before)
	}
	return nil
}

// selectDead returns the keys and records of the dead letters f selects,
// oldest DeadAt first: a cursor walk, or with IDs a lookup of each.
func (m *Machine) selectDead(f queue.Filter) ([][]byte, []queue.DeadLetter, error) {
	var keys [][]byte
	var dead []queue.DeadLetter
	before := int64(math.MaxInt64)
	bounded := !f.Before.IsZero()
	if bounded {
		before = queue.UnixNano(f.Before)
	}
	take := func(k, v []byte) (more bool, err error) {
		if bounded && readTime(k) >= before {
			return false, nil
		}
		d, err := queue.UnmarshalDeadLetter(v)
		if err != nil {
			return false, err
		}
		if (f.Actor == "" || d.Actor == f.Actor) && (f.Type == "" || strings.HasPrefix(d.Actor, f.Type+"/")) {
			keys, dead = append(keys, bytes.Clone(k)), append(dead, d)
		}
		return f.Limit == 0 || len(dead) < f.Limit, nil
	}
	if len(f.IDs) == 0 {
		c := m.b.Dead.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if more, err := take(k, v); err != nil || !more {
				return keys, dead, err
			}
		}
		return keys, dead, nil
	}
	var found [][]byte
	for _, id := range f.IDs {
		rec, ok, err := m.lookup(id)
		if err != nil {
			return nil, nil, err
		}
		if ok && rec.state == stateDead {
			found = append(found, deadKey(rec.at, rec.seq))
		}
	}
	slices.SortFunc(found, bytes.Compare)
	found = slices.CompactFunc(found, bytes.Equal)
	for _, k := range found {
		v := m.b.Dead.Get(k)
		if v == nil {
			return nil, nil, fmt.Errorf("%w: dead letter %x is missing", queue.ErrCorrupt, k)
		}
		if more, err := take(k, v); err != nil || !more {
			return keys, dead, err
		}
	}
	return keys, dead, nil
}

func utc(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// Msg is a message entry of an append: its id (the entry's
// IdempotencyKey) and the encoded message (its Payload).
type Msg struct {
	ID      string
	Encoded []byte
}

// AppendMessages are the message entries of one journal append to an
// actor: the ids it acknowledges (KindMessageAck), the ids of the messages
// it applies on acceptance (KindMessageDirect: at most one) and the
// messages it sends (KindMessageSend).
type AppendMessages struct {
	Acks    []string
	Directs []string
	Sends   []Msg
}

// Empty reports whether the append carries no message entry.
func (a *AppendMessages) Empty() bool {
	return len(a.Acks) == 0 && len(a.Directs) == 0 && len(a.Sends) == 0
}

// CheckAppend applies the queue rules of an append's message entries to
// actor, in the order every backend uses, before the append writes
// anything: each send must carry a valid message (CheckOutbox), each direct
// message pass CheckDirect, then the acks CheckAcks. invalid (wrapping
// queue.ErrInvalid) is reported by a journal backend wrapped in
// journal.ErrInvalid, rule in journal.ErrAck.
func (m *Machine) CheckAppend(now int64, actor string, a *AppendMessages) (invalid, rule, err error) {
	for _, s := range a.Sends {
		if invalid := m.CheckOutbox(s.ID, s.Encoded); invalid != nil {
			return invalid, nil, nil
		}
	}
	if invalid := CheckDirectIDs(actor, a.Directs); invalid != nil {
		return invalid, nil, nil
	}
	for _, id := range a.Directs {
		if invalid, rule, err := m.CheckDirect(now, actor, id); invalid != nil || rule != nil || err != nil {
			return invalid, rule, err
		}
	}
	if len(a.Acks) > 0 {
		rule, err := m.CheckAcks(actor, a.Acks)
		return nil, rule, err
	}
	return nil, nil, nil
}

// ApplyAppend applies an append's message entries, checked by
// CheckAppend, after its journal entries are written: the acks, the direct
// messages, then the sends.
func (m *Machine) ApplyAppend(now int64, actor string, a *AppendMessages) error {
	if len(a.Acks) > 0 {
		if err := m.Ack(now, actor, a.Acks); err != nil {
			return err
		}
	}
	for _, id := range a.Directs {
		if err := m.Direct(now, actor, id); err != nil {
			return err
		}
	}
	for _, s := range a.Sends {
		if _, err := m.EnqueueOutbox(now, s.Encoded); err != nil {
			return err
		}
	}
	return nil
}
