package redisjournal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// The queue (queue.Store) on the same server as the journal. Its keys all
// start with <prefix>q: and are, with I an 8-byte instant (tb), S an
// 8-byte Seq (sb), A an actor key and T an actor type, all bytes as given:
//
//	q:i:<id>     hash per message id: st (p pending, s scheduled, d dead,
//	             g gone), a (actor), seq, fseq and acc (first acceptance),
//	             at (DeliverAt, DeadAt or gone-at), next (NextAt), att
//	             (attempts, decimal), err (LastError), ord ("1" if
//	             ordered), body (queue.MarshalMessage of what the sender
//	             set, with AcceptedAt; the stamped fields live beside it)
//	q:due:<A>    zset by lex: I(NextAt) S id, the messages Due may return
//	             (every unordered pending one and the ordered head)
//	q:ord:<A>    zset by lex: S id, the pending ordered messages
//	q:sch:<A>    zset by lex: I(DeliverAt) S id, the scheduled messages
//	q:rem:<A>    hash: name -> I(DueAt) queue.MarshalReminder
//	q:tim:<A>    zset by lex: I(DueAt) name
//	q:wake, q:wk zset by lex I(wake) A, and hash A -> I(wake): each
//	             actor's earliest actionable instant (Ready)
//	q:dead       zset by lex: I(DeadAt) S id
//	q:gone       zset by lex: I(gone-at) id, pruned 64 at a time
//	q:ty:<T>     hash of counters p, s, d, r (Stats); q:types the types
//	q:old:<T>    zset by lex: I(AcceptedAt) S id of the pending messages
//	q:seq        the last Seq given, 8 bytes
//
// Every zset has all scores 0 and is read with ZRANGE BYLEX, so every
// operation is a few O(log n) steps per message it moves. The scripts
// touch keys they compute, not keys declared in KEYS: the queue needs a
// standalone server (or one Redis Cluster shard), not a cluster.

type notifyFunc func(actor string, at time.Time)

var (
	_ queue.Store    = (*Journal)(nil)
	_ queue.Notifier = (*Journal)(nil)
)

// tb is ns as 8 bytes that sort bytewise in time order.
func tb(ns int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ns)^(1<<63))
	return string(b[:])
}

// rt reads an instant written by tb.
func rt(s string) (int64, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("%w: redisjournal: instant of %d bytes", queue.ErrCorrupt, len(s))
	}
	return int64(binary.BigEndian.Uint64([]byte(s)) ^ (1 << 63)), nil
}

// sb is seq as 8 bytes big-endian.
func sb(seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return string(b[:])
}

func rseq(s string) (uint64, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("%w: redisjournal: seq of %d bytes", queue.ErrCorrupt, len(s))
	}
	return binary.BigEndian.Uint64([]byte(s)), nil
}

// upTo is the ZRANGE BYLEX upper bound of the members whose leading
// instant is not after ns.
func upTo(ns int64) string {
	if ns == math.MaxInt64 {
		return "+"
	}
	return "(" + tb(ns+1)
}

func utc(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func (j *Journal) qprefix() string { return j.prefix + "q:" }

// clock is the store's clock at a write: now, the cutoff (an id gone at
// or before it is forgotten; "" when none can be) and the prune bound.
func (j *Journal) clock() (now int64, cutoff, bound string) {
	now = time.Now().UnixNano()
	return now, j.cutoff(now), j.pruneBound(now)
}

func (j *Journal) cutoff(now int64) string {
	c, borrow := bits.Sub64(uint64(now)^(1<<63), uint64(j.retention), 0)
	if borrow != 0 {
		return ""
	}
	return tb(int64(c ^ (1 << 63)))
}

func (j *Journal) pruneBound(now int64) string {
	c := j.cutoff(now)
	if c == "" {
		return ""
	}
	ns, _ := rt(c)
	return upTo(ns)
}

// Notify implements queue.Notifier: fn is called on a goroutine of its
// own after each write of this Journal that gave an actor something to
// deliver, and for the writes of other Journals on the same server (other
// nodes) that did, as published hints (wake.go): one may be lost, so
// whoever delivers must also scan the store now and then (Ready).
func (j *Journal) Notify(fn func(actor string, at time.Time)) {
	f := notifyFunc(fn)
	j.notify.Store(&f)
	j.subscribeWakes()
}

func (j *Journal) notifyWakes(w []string) {
	if len(w) < 2 {
		return
	}
	type note struct {
		actor string
		at    time.Time
	}
	var notes []note
	for i := 0; i+1 < len(w); i += 2 {
		if ns, err := rt(w[i+1]); err == nil {
			notes = append(notes, note{w[i], utc(ns)})
			j.wake.out.Add(w[i], utc(ns))
		}
	}
	fn := j.notify.Load()
	if fn == nil {
		return
	}
	go func() {
		for _, n := range notes {
			(*fn)(n.actor, n.at)
		}
	}()
}

// qerr maps the journal's ErrClosed to queue.ErrClosed.
func qerr(err error) error {
	if errors.Is(err, journal.ErrClosed) {
		return fmt.Errorf("%w: %w", queue.ErrClosed, err)
	}
	return err
}

// write runs a queue write script through the committers and returns its
// status and results.
func (j *Journal) write(ctx context.Context, actor string, s *script, args ...any) (string, []any, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	r := &request{op: opQueue, actor: actor, script: s, keys: []string{}, args: append([]any{j.qprefix()}, args...)}
	if err := j.do(ctx, r); err != nil {
		return "", nil, qerr(err)
	}
	v, ok := r.reply.([]any)
	if !ok || len(v) != 3 {
		return "", nil, fmt.Errorf("%w: redisjournal: %s %q at %s: unexpected reply %v", ErrUnknownOutcome, r.op, actor, j.addr, r.reply)
	}
	st, _ := v[0].(string)
	res, _ := v[1].([]any)
	if w, ok := v[2].([]any); ok && st == "ok" {
		ws := make([]string, 0, len(w))
		for _, x := range w {
			s, _ := x.(string)
			ws = append(ws, s)
		}
		j.notifyWakes(ws)
	}
	return st, res, nil
}

// enterQueueRead admits a queue read unless the store is closed, and
// registers it with j.readers (the caller must call j.readers.Done).
func (j *Journal) enterQueueRead() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("%w: redis queue at %s", queue.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	return nil
}

// read runs a queue read script on the caller's goroutine.
func (j *Journal) read(ctx context.Context, what string, s *script, args ...any) ([]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := j.enterQueueRead(); err != nil {
		return nil, err
	}
	defer j.readers.Done()
	v, err := s.Run(ctx, j.client, []string{}, append([]any{j.qprefix()}, args...)...).Result()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("redisjournal: %s at %s: %w", what, j.addr, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s at %s: %w", ErrUnavailable, what, j.addr, err)
	}
	out, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: redisjournal: %s at %s: reply %T", queue.ErrCorrupt, what, j.addr, v)
	}
	return out, nil
}

func str(v any) string { s, _ := v.(string); return s }

// body is the record of msg as the queue stores it: what the sender set,
// with AcceptedAt.
func body(msg queue.Message, now int64) string {
	return string(queue.MarshalMessage(queue.Message{ID: msg.ID, Actor: msg.Actor, Method: msg.Method, Payload: msg.Payload,
		Headers: msg.Headers, CorrelationID: msg.CorrelationID, TraceParent: msg.TraceParent, Ordered: msg.Ordered,
		DeliverAt: msg.DeliverAt, AcceptedAt: utc(now)}))
}

// sendArgs are the script arguments that enqueue msg at now: id, actor,
// record, ordered, scheduled, tb(NextAt).
func sendArgs(msg queue.Message, now int64) []any {
	deliverAt := int64(math.MinInt64)
	if !msg.DeliverAt.IsZero() {
		deliverAt = queue.UnixNano(msg.DeliverAt)
	}
	ord, sched := "", ""
	if msg.Ordered {
		ord = "1"
	}
	if deliverAt > now {
		sched = "1"
	}
	return []any{msg.ID, msg.Actor, body(msg, now), ord, sched, tb(max(deliverAt, now))}
}

// Enqueue implements queue.Store.
func (j *Journal) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	if err := queue.CheckMessage(msg); err != nil {
		return queue.Accepted{}, err
	}
	now, cutoff, bound := j.clock()
	args := append(sendArgs(msg, now), tb(now), cutoff, bound)
	_, res, err := j.write(ctx, msg.Actor, enqueueScript, args...)
	if err != nil {
		return queue.Accepted{}, err
	}
	if len(res) != 3 {
		return queue.Accepted{}, fmt.Errorf("%w: redisjournal: enqueue reply %v", queue.ErrCorrupt, res)
	}
	seq, err := rseq(str(res[0]))
	if err != nil {
		return queue.Accepted{}, err
	}
	acc, err := rt(str(res[1]))
	if err != nil {
		return queue.Accepted{}, err
	}
	return queue.Accepted{ID: msg.ID, Seq: seq, AcceptedAt: utc(acc), Duplicate: str(res[2]) == "1"}, nil
}

// decode rebuilds a message from its record and stamped fields: body,
// seq, attempts, last error, next.
func decode(v any) (queue.Message, error) {
	f, ok := v.([]any)
	if !ok || len(f) < 5 {
		return queue.Message{}, fmt.Errorf("%w: redisjournal: message fields %v", queue.ErrCorrupt, v)
	}
	m, err := queue.UnmarshalMessage([]byte(str(f[0])))
	if err != nil {
		return queue.Message{}, err
	}
	if m.Seq, err = rseq(str(f[1])); err != nil {
		return queue.Message{}, err
	}
	att, err := strconv.ParseUint(str(f[2]), 10, 32)
	if err != nil {
		return queue.Message{}, fmt.Errorf("%w: redisjournal: attempts %q", queue.ErrCorrupt, str(f[2]))
	}
	m.Attempts, m.LastError = uint32(att), str(f[3])
	next, err := rt(str(f[4]))
	if err != nil {
		return queue.Message{}, err
	}
	m.NextAt = utc(next)
	return m, nil
}

// Due implements queue.Store.
func (j *Journal) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	rows, err := j.read(ctx, "due of "+strconv.Quote(actor), dueScript, actor, upTo(queue.UnixNano(now)), max)
	if err != nil {
		return nil, err
	}
	out := make([]queue.Message, 0, len(rows))
	for _, row := range rows {
		m, err := decode(row)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Ready implements queue.Store.
func (j *Journal) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	if err := j.enterQueueRead(); err != nil {
		return nil, err
	}
	defer j.readers.Done()
	ms, err := j.client.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: j.qprefix() + "wake", Start: "-", Stop: upTo(queue.UnixNano(until)),
		ByLex: true, Count: int64(max)}).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: ready at %s: %w", ErrUnavailable, j.addr, err)
	}
	out := make([]queue.Ready, 0, len(ms))
	for _, m := range ms {
		if len(m) < 9 {
			return nil, fmt.Errorf("%w: redisjournal: wake member %q", queue.ErrCorrupt, m)
		}
		at, _ := rt(m[:8])
		out = append(out, queue.Ready{Actor: m[8:], At: utc(at)})
	}
	return out, nil
}

func bump(a uint32) uint32 {
	if a == math.MaxUint32 {
		return a
	}
	return a + 1
}

// failure runs the Retry or DeadLetter script with instant at (RetryAt or
// At, now if zero).
func (j *Journal) failure(ctx context.Context, s *script, f queue.Failure, at time.Time) error {
	if err := queue.CheckFailure(f); err != nil {
		return err
	}
	now, _, bound := j.clock()
	t := now
	if !at.IsZero() {
		t = queue.UnixNano(at)
	}
	st, res, err := j.write(ctx, f.Actor, s, f.Actor, f.ID, strconv.FormatUint(uint64(f.Attempts), 10),
		strconv.FormatUint(uint64(bump(f.Attempts)), 10), f.Reason, tb(t), bound)
	if err != nil {
		return err
	}
	switch st {
	case "ok":
		return nil
	case "nf":
		return fmt.Errorf("%w: message %q is not pending in the queue of %q", queue.ErrNotFound, f.ID, f.Actor)
	case "stale":
		var have string
		if len(res) > 0 {
			have = str(res[0])
		}
		return fmt.Errorf("%w: message %q has %s attempts, the failure reports %d", queue.ErrStale, f.ID, have, f.Attempts)
	}
	return fmt.Errorf("%w: redisjournal: unexpected status %q", ErrUnknownOutcome, st)
}

// Retry implements queue.Store.
func (j *Journal) Retry(ctx context.Context, f queue.Failure) error {
	return j.failure(ctx, retryScript, f, f.RetryAt)
}

// DeadLetter implements queue.Store.
func (j *Journal) DeadLetter(ctx context.Context, f queue.Failure) error {
	return j.failure(ctx, deadScript, f, f.At)
}

// filterArgs are a filter's script arguments: type, actor, before, limit,
// then the ids (last).
func filterArgs(f queue.Filter) ([]any, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", queue.ErrInvalid, f.Limit)
	}
	if !queue.TimeRepresentable(f.Before) {
		return nil, fmt.Errorf("%w: filter time %v outside the storable range", queue.ErrInvalid, f.Before)
	}
	before := ""
	if !f.Before.IsZero() {
		before = tb(queue.UnixNano(f.Before))
	}
	return []any{f.Type, f.Actor, before, f.Limit}, nil
}

func idArgs(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// ListDead implements queue.Store.
func (j *Journal) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	args, err := filterArgs(f)
	if err != nil {
		return nil, err
	}
	rows, err := j.read(ctx, "list dead letters", listDeadScript, append(args, idArgs(f.IDs)...)...)
	if err != nil {
		return nil, err
	}
	out := make([]queue.DeadLetter, 0, len(rows))
	for _, row := range rows {
		m, err := decode(row)
		if err != nil {
			return nil, err
		}
		deadAt, err := rt(str(row.([]any)[5]))
		if err != nil {
			return nil, err
		}
		out = append(out, queue.DeadLetter{Message: m, DeadAt: utc(deadAt)})
	}
	return out, nil
}

func (j *Journal) countResult(st string, res []any, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	if st != "ok" || len(res) != 1 {
		return 0, fmt.Errorf("%w: redisjournal: unexpected reply %q %v", ErrUnknownOutcome, st, res)
	}
	n, ok := res[0].(int64)
	if !ok {
		return 0, fmt.Errorf("%w: redisjournal: count %v", ErrUnknownOutcome, res[0])
	}
	return int(n), nil
}

// Replay implements queue.Store.
func (j *Journal) Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error) {
	args, err := filterArgs(f)
	if err != nil {
		return 0, err
	}
	if !queue.TimeRepresentable(now) {
		return 0, fmt.Errorf("%w: replay at %v outside the storable range", queue.ErrInvalid, now)
	}
	args = append(args, tb(queue.UnixNano(now)))
	return j.countResult(j.write(ctx, f.Actor, replayScript, append(args, idArgs(f.IDs)...)...))
}

// Purge implements queue.Store.
func (j *Journal) Purge(ctx context.Context, f queue.Filter) (int, error) {
	args, err := filterArgs(f)
	if err != nil {
		return 0, err
	}
	now, _, bound := j.clock()
	args = append(args, tb(now), bound)
	return j.countResult(j.write(ctx, f.Actor, purgeScript, append(args, idArgs(f.IDs)...)...))
}

// SetReminder implements queue.Store.
func (j *Journal) SetReminder(ctx context.Context, r queue.Reminder) error {
	if err := queue.CheckReminder(r); err != nil {
		return err
	}
	due := queue.UnixNano(r.DueAt)
	r.DueAt = utc(due)
	bound := j.pruneBound(time.Now().UnixNano())
	st, res, err := j.write(ctx, r.Actor, setReminderScript, r.Actor, r.Name, tb(due)+string(queue.MarshalReminder(r)), bound)
	if err != nil {
		return err
	}
	if st != "ok" {
		return fmt.Errorf("%w: redisjournal: unexpected reply %q %v", ErrUnknownOutcome, st, res)
	}
	return nil
}

// DeleteReminder implements queue.Store.
func (j *Journal) DeleteReminder(ctx context.Context, actor, name string) error {
	if err := queue.CheckActor(actor); err != nil {
		return err
	}
	st, res, err := j.write(ctx, actor, deleteReminderScript, actor, name, j.pruneBound(time.Now().UnixNano()))
	if err != nil {
		return err
	}
	switch st {
	case "ok":
		return nil
	case "nf":
		return fmt.Errorf("%w: %q has no reminder %q", queue.ErrNotFound, actor, name)
	}
	return fmt.Errorf("%w: redisjournal: unexpected reply %q %v", ErrUnknownOutcome, st, res)
}

// reminder decodes a stored reminder value: tb(DueAt) then the record.
func reminder(v string) (queue.Reminder, error) {
	if len(v) < 8 {
		return queue.Reminder{}, fmt.Errorf("%w: redisjournal: reminder value of %d bytes", queue.ErrCorrupt, len(v))
	}
	return queue.UnmarshalReminder([]byte(v[8:]))
}

// Reminders implements queue.Store.
func (j *Journal) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := j.enterQueueRead(); err != nil {
		return nil, err
	}
	defer j.readers.Done()
	all, err := j.client.HGetAll(ctx, j.qprefix()+"rem:"+actor).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: reminders of %q at %s: %w", ErrUnavailable, actor, j.addr, err)
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]queue.Reminder, 0, len(names))
	for _, n := range names {
		r, err := reminder(all[n])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// nextFiring is queuesm's: the first instant due + k*period (k >= 1) after
// now, for due <= now; ok false for period 0 or past the representable.
func nextFiring(due, period, now int64) (int64, bool) {
	if period <= 0 {
		return 0, false
	}
	k := (uint64(now)-uint64(due))/uint64(period) + 1
	hi, step := bits.Mul64(k, uint64(period))
	room := uint64(math.MaxInt64) - uint64(due)
	if hi != 0 || step > room {
		return 0, false
	}
	return int64(uint64(due) + step), true
}

// Release implements queue.Store. It reads the reminders due, computes
// their firings and next instants, and runs the release script, which
// refuses if the reminders due changed meanwhile; then it reads again.
func (j *Journal) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := queue.CheckActor(actor); err != nil {
		return 0, err
	}
	if !queue.TimeRepresentable(now) {
		return 0, fmt.Errorf("%w: release at %v outside the storable range", queue.ErrInvalid, now)
	}
	ns := queue.UnixNano(now)
	bound := upTo(ns)
	for attempt := 0; ; attempt++ {
		rows, err := j.read(ctx, "timers of "+strconv.Quote(actor), timersScript, actor, bound)
		if err != nil {
			return 0, err
		}
		args := []any{actor, tb(ns), bound, j.cutoff(ns), len(rows) / 2}
		for i := 0; i+1 < len(rows); i += 2 {
			name, old := str(rows[i]), str(rows[i+1])
			r, err := reminder(old)
			if err != nil {
				return 0, err
			}
			due := queue.UnixNano(r.DueAt)
			newVal := ""
			if next, ok := nextFiring(due, int64(r.Period), ns); ok {
				r2 := r
				r2.DueAt = utc(next)
				newVal = tb(next) + string(queue.MarshalReminder(r2))
			}
			msg := queue.Message{ID: queue.ReminderID(actor, r.Name, due), Actor: actor, Method: r.Method, Payload: r.Payload, Ordered: r.Ordered}
			ord := ""
			if r.Ordered {
				ord = "1"
			}
			args = append(args, name, old, newVal, msg.ID, body(msg, ns), ord)
		}
		st, res, err := j.write(ctx, actor, releaseScript, args...)
		if err != nil {
			return 0, err
		}
		if st == "stalerem" && attempt < 100 {
			continue
		}
		return j.countResult(st, res, nil)
	}
}

// Stats implements queue.Store.
func (j *Journal) Stats(ctx context.Context) ([]queue.Stats, error) {
	rows, err := j.read(ctx, "stats", statsScript)
	if err != nil {
		return nil, err
	}
	out := make([]queue.Stats, 0, len(rows))
	for _, row := range rows {
		f, ok := row.([]any)
		if !ok || len(f) != 6 {
			return nil, fmt.Errorf("%w: redisjournal: stats row %v", queue.ErrCorrupt, row)
		}
		s := queue.Stats{Type: str(f[0])}
		for i, dst := range []*int{&s.Pending, &s.Scheduled, &s.Dead, &s.Reminders} {
			n, err := strconv.Atoi(str(f[i+1]))
			if err != nil {
				return nil, fmt.Errorf("%w: redisjournal: stats counter %q", queue.ErrCorrupt, str(f[i+1]))
			}
			*dst = n
		}
		if o := str(f[5]); o != "" {
			at, err := rt(o)
			if err != nil {
				return nil, err
			}
			s.Oldest = utc(at)
		}
		out = append(out, s)
	}
	return out, nil
}

// --- the journal hook ---

func hasQueueEntries(es []journal.Entry) bool {
	for _, e := range es {
		if e.Kind.Message() {
			return true
		}
	}
	return false
}

// ackRule is the error of an append whose acks the script refused.
func ackRule(actor, code, id string) error {
	switch code {
	case "nh":
		return fmt.Errorf("%w: %w: an ordered message of %q before %q is pending", journal.ErrAck, queue.ErrNotHead, actor, id)
	case "kid":
		return fmt.Errorf("%w: %w: direct message %q to %q", journal.ErrAck, queue.ErrKnownID, id, actor)
	}
	return fmt.Errorf("%w: %w: message %q is not pending in the queue of %q (or is acknowledged twice)", journal.ErrAck, queue.ErrNotFound, id, actor)
}

// appendQueue is Append for entries that acknowledge or send messages.
func (j *Journal) appendQueue(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	var acks []any
	var sends []queue.Message
	var directs []string
	now, cutoff, bound := j.clock()
	for _, e := range entries {
		switch e.Kind {
		case journal.KindMessageAck:
			acks = append(acks, e.IdempotencyKey)
		case journal.KindMessageDirect:
			directs = append(directs, e.IdempotencyKey)
		case journal.KindMessageSend:
			msg, err := queuesm.DecodeOutbox(e.IdempotencyKey, e.Payload)
			if err != nil {
				return 0, fmt.Errorf("%w: %w", journal.ErrInvalid, err)
			}
			sends = append(sends, msg)
		}
	}
	if err := queuesm.CheckDirectIDs(actor, directs); err != nil {
		return 0, fmt.Errorf("%w: %w", journal.ErrInvalid, err)
	}
	tail := expectedSeq + uint64(len(entries))
	args := make([]any, 0, 4+2*len(entries)+6+len(acks)+1+6*len(sends)+1+len(directs))
	args = append(args, strconv.FormatUint(token, 10), strconv.FormatUint(expectedSeq, 10), strconv.FormatUint(tail, 10), len(entries))
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		args = append(args, strconv.FormatUint(e.Seq, 10)+"-0", journal.MarshalEntry(e))
	}
	args = append(args, j.qprefix(), actor, tb(now), cutoff, bound, len(acks))
	args = append(args, acks...)
	args = append(args, len(sends))
	for _, m := range sends {
		args = append(args, sendArgs(m, now)...)
	}
	args = append(args, len(directs))
	for _, id := range directs {
		args = append(args, id)
	}
	r := &request{op: opAppend, actor: actor, token: token, seq: expectedSeq,
		script: appendQueueScript, keys: []string{j.headKey(actor), j.logKey(actor)}, args: args}
	if err := j.do(ctx, r); err != nil {
		return 0, err
	}
	j.notifyWakes(r.wakes)
	return tail, nil
}
