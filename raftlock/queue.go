package raftlock

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// The message queues (queue.Store): a third state machine, internal/queuesm,
// on buckets of its own in fsm.db. Every write is one opQueue command,
// replicated and group-committed like a journal append; an append's
// KindMessageAck and KindMessageSend entries are applied to the queues in
// the same command as the entries are stored (see applyAppend). Reads run
// on this node's replica. After a batch is applied, every replica tells
// the function given to Notify about the actors it gave something to
// deliver.

// Queues is the Store's queue.Store face (a type of its own: the Store's
// lock.Coordinator and its Raft Stats already use the names Release and
// Stats). It shares the Store's state machine, so an append to the Store
// acknowledges the messages of these queues.
type Queues struct{ s *Store }

// Queues returns the message queues replicated with this Store's journals.
func (s *Store) Queues() Queues { return Queues{s} }

var (
	_ queue.Store    = Queues{}
	_ queue.Notifier = Queues{}
)

// Close closes the Store (see Store.Close).
func (q Queues) Close() error { return q.s.Close() }

// qop names a queue write.
type qop uint8

const (
	qEnqueue qop = iota + 1
	qRelease
	qRetry
	qDeadLetter
	qReplay
	qPurge
	qSetReminder
	qDeleteReminder
	qHandoff // a Groups relay: messages another group has accepted leave this one
)

// errBadQueueArg is wrapped by every decoding failure of a queue command's
// argument.
var errBadQueueArg = fmt.Errorf("%w: malformed queue command", queue.ErrInvalid)

// appendTime encodes t as a presence byte and UnixNano.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return appendVarint(b, queue.UnixNano(t))
}

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func readTime(d *kv.Decoder) time.Time {
	if d.Byte() == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.Varint()).UTC()
}

func encodeFailure(f queue.Failure) []byte {
	b := kv.AppendString(nil, f.Actor)
	b = kv.AppendString(b, f.ID)
	b = appendUvarint(b, uint64(f.Attempts))
	b = kv.AppendString(b, f.Reason)
	b = appendTime(b, f.At)
	return appendTime(b, f.RetryAt)
}

func decodeFailure(rec []byte) (queue.Failure, error) {
	d := kv.Decoder{B: rec, Wraps: errBadQueueArg}
	f := queue.Failure{Actor: d.String(), ID: d.String()}
	f.Attempts = uint32(d.Uvarint())
	f.Reason = d.String()
	f.At = readTime(&d)
	f.RetryAt = readTime(&d)
	return f, d.Finish()
}

func encodeFilter(f queue.Filter, now time.Time) []byte {
	b := kv.AppendString(nil, f.Type)
	b = kv.AppendString(b, f.Actor)
	ids := make([][]byte, len(f.IDs))
	for i, id := range f.IDs {
		ids[i] = []byte(id)
	}
	b = kv.AppendList(b, ids)
	b = appendTime(b, f.Before)
	b = appendVarint(b, int64(f.Limit)) // negative too: the state machine refuses it
	return appendTime(b, now)
}

func decodeFilter(rec []byte) (queue.Filter, time.Time, error) {
	d := kv.Decoder{B: rec, Wraps: errBadQueueArg}
	f := queue.Filter{Type: d.String(), Actor: d.String()}
	for _, id := range d.List() {
		f.IDs = append(f.IDs, string(id))
	}
	f.Before = readTime(&d)
	limit := d.Varint()
	if int64(int(limit)) != limit {
		d.Fail("limit overflows")
	}
	f.Limit = int(limit)
	now := readTime(&d)
	return f, now, d.Finish()
}

func encodeActorArg(actor, name string, now time.Time) []byte {
	b := kv.AppendString(nil, actor)
	b = kv.AppendString(b, name)
	return appendTime(b, now)
}

func decodeActorArg(rec []byte) (actor, name string, now time.Time, err error) {
	d := kv.Decoder{B: rec, Wraps: errBadQueueArg}
	actor, name = d.String(), d.String()
	now = readTime(&d)
	return actor, name, now, d.Finish()
}

// execQueue applies one queue command. Rule violations are returned as
// rule (they wrap the queue package's sentinels); err is fatal.
func (ac *applyCtx) execQueue(c command) (r result, rule, err error) {
	arg := c.records[0]
	q := ac.queues()
	switch c.qop {
	case qEnqueue:
		msg, derr := queue.UnmarshalMessage(arg)
		if derr != nil {
			return r, fmt.Errorf("%w: %w", queue.ErrInvalid, derr), nil
		}
		var acc queue.Accepted
		acc, rule, err = q.Enqueue(ac.now, msg)
		r.value, r.text = acc.Seq, strconv.FormatInt(queue.UnixNano(acc.AcceptedAt), 10)
		if acc.Duplicate {
			r.owner = "duplicate"
		}
	case qRelease:
		actor, _, now, derr := decodeActorArg(arg)
		if derr != nil {
			return r, derr, nil
		}
		var n int
		n, rule, err = q.Release(queue.UnixNano(now), actor)
		r.value = uint64(n)
	case qRetry, qDeadLetter:
		f, derr := decodeFailure(arg)
		if derr != nil {
			return r, derr, nil
		}
		if c.qop == qRetry {
			rule, err = q.Retry(ac.now, f)
		} else {
			rule, err = q.DeadLetter(ac.now, f)
		}
	case qReplay, qPurge:
		f, now, derr := decodeFilter(arg)
		if derr != nil {
			return r, derr, nil
		}
		var n int
		if c.qop == qReplay {
			n, rule, err = q.Replay(queue.UnixNano(now), f)
		} else {
			n, rule, err = q.Purge(ac.now, f)
		}
		r.value = uint64(n)
	case qSetReminder:
		rem, derr := queue.UnmarshalReminder(arg)
		if derr != nil {
			return r, fmt.Errorf("%w: %w", queue.ErrInvalid, derr), nil
		}
		rule, err = q.SetReminder(ac.now, rem)
	case qDeleteReminder:
		actor, name, _, derr := decodeActorArg(arg)
		if derr != nil {
			return r, derr, nil
		}
		rule, err = q.DeleteReminder(ac.now, actor, name)
	case qHandoff:
		d := kv.Decoder{B: arg, Wraps: errBadQueueArg}
		actor := d.String()
		var ids []string
		for _, id := range d.List() {
			ids = append(ids, string(id))
		}
		if derr := d.Finish(); derr != nil {
			return r, derr, nil
		}
		var n int
		n, rule, err = q.Handoff(ac.now, actor, ids)
		r.value = uint64(n)
	default:
		rule = fmt.Errorf("%w: unknown queue write %d", errBadQueueArg, c.qop)
	}
	return r, rule, err
}

// messageEntry reports whether rec, a journal.MarshalEntry record, is a
// KindMessageAck, KindMessageDirect or KindMessageSend entry, reading its kind where the
// record has it (the version byte, the uvarint seq, then the kind) without
// decoding the rest: an append without message entries pays a few byte
// reads per entry for the queue rules, and decodes nothing. A record this
// cannot read (too short, another version) is decoded in full, which
// judges it.
func messageEntry(rec []byte) bool {
	if len(rec) < 3 || rec[0] != journal.EncodingVersion {
		return true
	}
	i := 1
	for i < len(rec) && rec[i]&0x80 != 0 {
		i++
	}
	if i+1 >= len(rec) {
		return true
	}
	return journal.Kind(rec[i+1]).Message()
}

// applyAppend is the append command: the journal's rules, then those of
// the message entries it carries (queuesm's CheckAppend: the sends, the
// direct messages, the acks), then the writes of both, entries first,
// then the message entries (ApplyAppend). Nothing is written unless
// every rule passed, so an ack commits with the entries of its turn or not
// at all, on every replica. An append without message entries, or one in
// a batch written before the queues (ac.queueRules false), is the journal
// machine's alone.
func (ac *applyCtx) applyAppend(c command) (tail uint64, rule, err error) {
	first := -1
	if ac.queueRules {
		for i, rec := range c.records {
			if messageEntry(rec) {
				first = i
				break
			}
		}
	}
	if first < 0 {
		return ac.journals.Append(ac.now, c.key, c.token, c.seq, c.records)
	}
	if rule, err := ac.journals.CheckAppend(ac.now, c.key, c.token, c.seq, len(c.records)); rule != nil || err != nil {
		return 0, rule, err
	}
	var msgs queuesm.AppendMessages
	for _, rec := range c.records[first:] {
		if !messageEntry(rec) {
			continue
		}
		e, derr := journal.UnmarshalEntry(rec)
		if derr != nil {
			return 0, fmt.Errorf("%w: append to %q: %w", journal.ErrInvalid, c.key, derr), nil
		}
		switch e.Kind {
		case journal.KindMessageAck:
			msgs.Acks = append(msgs.Acks, e.IdempotencyKey)
		case journal.KindMessageDirect:
			msgs.Directs = append(msgs.Directs, e.IdempotencyKey)
		case journal.KindMessageSend:
			msgs.Sends = append(msgs.Sends, queuesm.Msg{ID: e.IdempotencyKey, Encoded: e.Payload})
		}
	}
	invalid, rule, err := ac.queues().CheckAppend(ac.now, c.key, &msgs)
	switch {
	case err != nil:
		return 0, nil, err
	case invalid != nil:
		return 0, fmt.Errorf("%w: append to %q: %w", journal.ErrInvalid, c.key, invalid), nil
	case rule != nil:
		return 0, fmt.Errorf("%w: append to %q: %w", journal.ErrAck, c.key, rule), nil
	}
	if tail, rule, err = ac.journals.Append(ac.now, c.key, c.token, c.seq, c.records); rule != nil || err != nil {
		return 0, rule, err // a rule cannot come after CheckAppend, and nothing is written yet
	}
	if err := ac.queues().ApplyAppend(ac.now, c.key, &msgs); err != nil {
		return 0, nil, err
	}
	return tail, nil, nil
}

// write runs a queue command through the committer.
func (q Queues) write(ctx context.Context, w qop, arg []byte) (result, error) {
	res, err := q.s.exec(ctx, command{op: opQueue, qop: w, records: [][]byte{arg}})
	if err != nil {
		return result{}, err
	}
	return res, res.err()
}

// Enqueue implements queue.Store: the message is accepted once a quorum
// committed it, stamped with the leader's clock.
func (q Queues) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	if err := queue.CheckMessage(msg); err != nil {
		return queue.Accepted{}, err
	}
	res, err := q.write(ctx, qEnqueue, queue.MarshalMessage(msg))
	if err != nil {
		return queue.Accepted{}, err
	}
	at, _ := strconv.ParseInt(res.text, 10, 64)
	return queue.Accepted{ID: msg.ID, Seq: res.value, AcceptedAt: time.Unix(0, at).UTC(), Duplicate: res.owner == "duplicate"}, nil
}

// Due implements queue.Store on this node's replica.
func (q Queues) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	var out []queue.Message
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Due(actor, queue.UnixNano(now), max)
		return err
	})
	return out, err
}

// Release implements queue.Store. It proposes nothing when this node's
// replica shows nothing of actor's to release at now.
func (q Queues) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := queue.CheckActor(actor); err != nil {
		return 0, err
	}
	var due bool
	if err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		due, err = m.Releasable(actor, queue.UnixNano(now))
		return err
	}); err != nil || !due {
		return 0, err
	}
	res, err := q.write(ctx, qRelease, encodeActorArg(actor, "", now))
	return int(res.value), err
}

// Ready implements queue.Store on this node's replica.
func (q Queues) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	var out []queue.Ready
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Ready(queue.UnixNano(until), max)
		return err
	})
	return out, err
}

// Retry implements queue.Store.
func (q Queues) Retry(ctx context.Context, f queue.Failure) error {
	_, err := q.write(ctx, qRetry, encodeFailure(f))
	return err
}

// DeadLetter implements queue.Store.
func (q Queues) DeadLetter(ctx context.Context, f queue.Failure) error {
	_, err := q.write(ctx, qDeadLetter, encodeFailure(f))
	return err
}

// ListDead implements queue.Store on this node's replica.
func (q Queues) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.ListDead(f)
		return err
	})
	return out, err
}

// Replay implements queue.Store.
func (q Queues) Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error) {
	res, err := q.write(ctx, qReplay, encodeFilter(f, now))
	return int(res.value), err
}

// Purge implements queue.Store.
func (q Queues) Purge(ctx context.Context, f queue.Filter) (int, error) {
	res, err := q.write(ctx, qPurge, encodeFilter(f, time.Time{}))
	return int(res.value), err
}

// SetReminder implements queue.Store.
func (q Queues) SetReminder(ctx context.Context, r queue.Reminder) error {
	if err := queue.CheckReminder(r); err != nil {
		return err
	}
	_, err := q.write(ctx, qSetReminder, queue.MarshalReminder(r))
	return err
}

// DeleteReminder implements queue.Store.
func (q Queues) DeleteReminder(ctx context.Context, actor, name string) error {
	_, err := q.write(ctx, qDeleteReminder, encodeActorArg(actor, name, time.Time{}))
	return err
}

// Reminders implements queue.Store on this node's replica.
func (q Queues) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	var out []queue.Reminder
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Reminders(actor)
		return err
	})
	return out, err
}

// Stats implements queue.Store on this node's replica.
func (q Queues) Stats(ctx context.Context) ([]queue.Stats, error) {
	var out []queue.Stats
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Stats()
		return err
	})
	return out, err
}

// queued returns up to max of actor's messages waiting in its queue
// (queuesm's Queued: pending by Seq, then scheduled), from this node's
// replica.
func (q Queues) queued(ctx context.Context, actor string, max int) ([]queue.Message, error) {
	var out []queue.Message
	err := q.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Queued(actor, max)
		return err
	})
	return out, err
}

// handoff takes ids out of actor's queue, because another group's queues
// have accepted them, and returns how many were still there.
func (q Queues) handoff(ctx context.Context, actor string, ids []string) (int, error) {
	list := make([][]byte, len(ids))
	for i, id := range ids {
		list[i] = []byte(id)
	}
	res, err := q.write(ctx, qHandoff, kv.AppendList(kv.AppendString(nil, actor), list))
	return int(res.value), err
}

// Notify implements queue.Notifier: on every replica, after each applied
// batch, fn is called on the FSM goroutine, holding none of the state
// machine's locks, once for every actor the batch gave something to
// deliver or release (an enqueue, through an append's outbox too, a
// release, a retry, a replay, a reminder set, the next ordered message
// made due by an ack or a dead letter), with the actor's wake after the
// last command of the batch that did. fn must not block: the replica
// applies nothing while it runs. A later Notify replaces fn. A replica
// that restores a snapshot announces nothing: a listener that starts
// late, or whose replica catches up by snapshot, asks Ready.
func (q Queues) Notify(fn func(actor string, at time.Time)) { q.s.fsm.notify.Store(&fn) }

// read runs fn on a read-only queue machine over this node's replica,
// after this node's own latest writes are applied here.
func (q Queues) read(ctx context.Context, fn func(*queuesm.Machine) error) error {
	if err := q.s.enterRead(ctx); err != nil {
		return err
	}
	return q.s.fsm.view(func(l *layers) error {
		return fn(queuesm.New(l.queueBuckets(), queuesm.Config{}))
	})
}
