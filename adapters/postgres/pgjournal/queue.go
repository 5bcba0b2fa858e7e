package pgjournal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// The queue (queue.Store) in the same schema as the journal: the tables
// and functions of schema version 2 (adapters/postgres, schema_queue.go).
// Every write is one call of a function, sent by the committers with the
// journal's mutations (group commit); every read is one statement.

var (
	_ queue.Store    = (*Journal)(nil)
	_ queue.Notifier = (*Journal)(nil)
)

// queueStatements are the queue's SQL, in its schema.
type queueStatements struct {
	appendQueue, enqueue, fail, release, replay, purge, setReminder, deleteReminder string
	due, timers, releasable, ready, listDead, reminders, stats                      string
}

func newQueueStatements(schema string) queueStatements {
	x := func(sql string) string { return postgres.Expand(sql, schema) }
	const msg = "body, seq, attempts, last_error, next_at"
	return queueStatements{
		appendQueue: x(`SELECT o_ok, o_tail, o_token, o_snap_seq, o_code, o_code_id, o_wake_actors, o_wake_ats
			FROM {s}.journal_append_queue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`),
		enqueue:        x("SELECT o_seq, o_accepted_at, o_dup, o_wake FROM {s}.queue_enqueue($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
		fail:           x("SELECT o_status, o_attempts, o_wake FROM {s}.queue_fail($1, $2, $3, $4, $5, $6, $7)"),
		release:        x("SELECT o_status, o_n, o_wake FROM {s}.queue_release($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
		replay:         x("SELECT o_n, o_wake_actors, o_wake_ats FROM {s}.queue_replay($1, $2, $3, $4, $5, $6)"),
		purge:          x("SELECT {s}.queue_purge($1, $2, $3, $4, $5, $6, $7)"),
		setReminder:    x("SELECT {s}.queue_set_reminder($1, $2, $3, $4, $5, $6)"),
		deleteReminder: x("SELECT {s}.queue_delete_reminder($1, $2, $3)"),
		due: x(`SELECT ` + msg + ` FROM (
			(SELECT ` + msg + ` FROM {s}.queue_messages WHERE actor = $1 AND state = 'p' AND NOT ordered AND next_at <= $2
				ORDER BY next_at, seq LIMIT $3)
			UNION ALL
			(SELECT ` + msg + ` FROM {s}.queue_messages WHERE actor = $1 AND state = 'p' AND ordered ORDER BY seq LIMIT 1)
		) m WHERE next_at <= $2 ORDER BY next_at, seq LIMIT $3`),
		timers: x("SELECT name, rec FROM {s}.queue_reminders WHERE actor = $1 AND due_at <= $2 ORDER BY due_at, name"),
		releasable: x(`SELECT EXISTS (SELECT 1 FROM {s}.queue_reminders WHERE actor = $1 AND due_at <= $2)
			OR EXISTS (SELECT 1 FROM {s}.queue_messages WHERE actor = $1 AND state = 's' AND next_at <= $2)`),
		ready:     x("SELECT actor, at FROM {s}.queue_wake WHERE at <= $1 ORDER BY at, actor LIMIT $2"),
		listDead:  x("SELECT " + msg + ", at FROM {s}.queue_dead($1, $2, $3, $4, $5)"),
		reminders: x("SELECT rec FROM {s}.queue_reminders WHERE actor = $1 ORDER BY name"),
		stats: x(`WITH m AS (
				SELECT type, count(*) FILTER (WHERE state = 'p') AS p, count(*) FILTER (WHERE state = 's') AS s,
					count(*) FILTER (WHERE state = 'd') AS d, min(accepted_at) FILTER (WHERE state = 'p') AS oldest
				FROM {s}.queue_messages WHERE state IN ('p', 's', 'd') GROUP BY type),
			r AS (SELECT type, count(*) AS n FROM {s}.queue_reminders GROUP BY type)
			SELECT type, coalesce(m.p, 0), coalesce(m.s, 0), coalesce(m.d, 0), coalesce(r.n, 0), m.oldest
			FROM m FULL JOIN r USING (type) ORDER BY type`),
	}
}

func utc(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// typeOf is an actor's type: its key up to the first '/'.
func typeOf(actor string) string {
	if i := strings.IndexByte(actor, '/'); i >= 0 {
		return actor[:i]
	}
	return actor
}

// cutoff is the instant at or before which an id that left the store is
// forgotten at now: nil when none can be yet.
func (j *Journal) cutoff(now int64) *int64 {
	c, borrow := bits.Sub64(uint64(now)^(1<<63), uint64(j.retention), 0)
	if borrow != 0 {
		return nil
	}
	v := int64(c ^ (1 << 63))
	return &v
}

// body is the record of msg as the queue stores it: what the sender set,
// with AcceptedAt.
func body(msg queue.Message, now int64) []byte {
	return queue.MarshalMessage(queue.Message{ID: msg.ID, Actor: msg.Actor, Method: msg.Method, Payload: msg.Payload,
		Headers: msg.Headers, CorrelationID: msg.CorrelationID, TraceParent: msg.TraceParent, Ordered: msg.Ordered,
		DeliverAt: msg.DeliverAt, AcceptedAt: utc(now)})
}

// placement is where an accepted message goes: scheduled or not, and its
// NextAt.
func placement(msg queue.Message, now int64) (sched bool, next int64) {
	deliverAt := int64(math.MinInt64)
	if !msg.DeliverAt.IsZero() {
		deliverAt = queue.UnixNano(msg.DeliverAt)
	}
	return deliverAt > now, max(deliverAt, now)
}

// Notify implements queue.Notifier: fn is called on a goroutine of its
// own after each write of this Journal that left an actor something to
// deliver or release, with the actor's earliest such instant, and after
// such writes of other Journals on the same server and schema, which this
// one hears of by LISTEN (see wake.go). Those are hints that can be lost:
// whoever delivers must also scan the store now and then (Ready).
func (j *Journal) Notify(fn func(actor string, at time.Time)) {
	j.notify.Store(&fn)
	j.listenWakes()
}

// wakes notifies the wakes a write reported.
func (j *Journal) wakes(actors [][]byte, ats []int64) {
	if len(actors) == 0 || len(actors) != len(ats) {
		return
	}
	for i, a := range actors {
		j.waker.out.Add(string(a), utc(ats[i]))
	}
	fn := j.notify.Load()
	if fn == nil {
		return
	}
	go func() {
		for i, a := range actors {
			(*fn)(string(a), utc(ats[i]))
		}
	}()
}

func (j *Journal) wake(actor string, at *int64) {
	if at != nil {
		j.wakes([][]byte{[]byte(actor)}, []int64{*at})
	}
}

// qerr maps the journal's ErrClosed to queue.ErrClosed.
func qerr(err error) error {
	if errors.Is(err, journal.ErrClosed) {
		return fmt.Errorf("%w: %w", queue.ErrClosed, err)
	}
	return err
}

// write sends a queue write through the committers; dest receive its
// row.
func (j *Journal) write(ctx context.Context, actor, sql string, args []any, dest ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{op: opQueue, actor: actor, sql: sql, args: args, dest: dest, answer: func() error { return nil }}
	return qerr(j.do(ctx, r))
}

// read runs a queue read on the caller's goroutine.
func (j *Journal) read(ctx context.Context, what string, f func(ctx context.Context, conn *pgxpool.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("%w: postgres queue at %s", queue.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	j.mu.Unlock()
	defer j.readers.Done()
	if err := j.query(ctx, f); err != nil {
		var c *corrupt
		if errors.As(err, &c) {
			return c.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pgjournal: %s at %s: %w", what, j.addr, ctx.Err())
		}
		return fmt.Errorf("%w: %s at %s: %w", ErrUnavailable, what, j.addr, err)
	}
	return nil
}

// Enqueue implements queue.Store.
func (j *Journal) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	if err := queue.CheckMessage(msg); err != nil {
		return queue.Accepted{}, err
	}
	now := time.Now().UnixNano()
	sched, next := placement(msg, now)
	var (
		seq, acc int64
		dup      bool
		wake     *int64
	)
	err := j.write(ctx, msg.Actor, j.qsql.enqueue, []any{now, j.cutoff(now), []byte(msg.ID), []byte(msg.Actor), []byte(typeOf(msg.Actor)),
		body(msg, now), msg.Ordered, sched, next}, &seq, &acc, &dup, &wake)
	if err != nil {
		return queue.Accepted{}, err
	}
	j.wake(msg.Actor, wake)
	return queue.Accepted{ID: msg.ID, Seq: uint64(seq), AcceptedAt: utc(acc), Duplicate: dup}, nil
}

// scanMessage reads a message's row: body, seq, attempts, last error,
// next.
func scanMessage(body []byte, seq, attempts int64, lastError []byte, next int64) (queue.Message, error) {
	m, err := queue.UnmarshalMessage(body)
	if err != nil {
		return queue.Message{}, &corrupt{fmt.Errorf("pgjournal: message record: %w", err)}
	}
	m.Seq, m.Attempts, m.LastError, m.NextAt = uint64(seq), uint32(attempts), string(lastError), utc(next)
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
	var out []queue.Message
	err := j.read(ctx, fmt.Sprintf("due of %q", actor), func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.qsql.due, []byte(actor), queue.UnixNano(now), max)
		if err != nil {
			return err
		}
		var (
			b, le          []byte
			seq, att, next int64
		)
		_, err = pgx.ForEachRow(rows, []any{&b, &seq, &att, &le, &next}, func() error {
			m, err := scanMessage(b, seq, att, le, next)
			out = append(out, m)
			return err
		})
		return err
	})
	return out, err
}

// Ready implements queue.Store.
func (j *Journal) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	if max <= 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, nil
	}
	var out []queue.Ready
	err := j.read(ctx, "ready", func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.qsql.ready, queue.UnixNano(until), max)
		if err != nil {
			return err
		}
		var (
			a  []byte
			at int64
		)
		_, err = pgx.ForEachRow(rows, []any{&a, &at}, func() error {
			out = append(out, queue.Ready{Actor: string(a), At: utc(at)})
			return nil
		})
		return err
	})
	return out, err
}

func bump(a uint32) uint32 {
	if a == math.MaxUint32 {
		return a
	}
	return a + 1
}

// failure records a failed delivery: Retry (at: RetryAt) or DeadLetter
// (at: At), now if at is zero.
func (j *Journal) failure(ctx context.Context, dead bool, f queue.Failure, at time.Time) error {
	if err := queue.CheckFailure(f); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	t := now
	if !at.IsZero() {
		t = queue.UnixNano(at)
	}
	var (
		status string
		have   *int64
		wake   *int64
	)
	err := j.write(ctx, f.Actor, j.qsql.fail, []any{dead, j.cutoff(now), []byte(f.Actor), []byte(f.ID), int64(f.Attempts), []byte(f.Reason), t},
		&status, &have, &wake)
	if err != nil {
		return err
	}
	switch status {
	case "ok":
		j.wake(f.Actor, wake)
		return nil
	case "nf":
		return fmt.Errorf("%w: message %q is not pending in the queue of %q", queue.ErrNotFound, f.ID, f.Actor)
	case "stale":
		var n int64
		if have != nil {
			n = *have
		}
		return fmt.Errorf("%w: message %q has %d attempts, the failure reports %d", queue.ErrStale, f.ID, n, f.Attempts)
	}
	return fmt.Errorf("%w: pgjournal: failure of %q at %s: unexpected status %q", ErrUnknownOutcome, f.ID, j.addr, status)
}

// Retry implements queue.Store.
func (j *Journal) Retry(ctx context.Context, f queue.Failure) error {
	return j.failure(ctx, false, f, f.RetryAt)
}

// DeadLetter implements queue.Store.
func (j *Journal) DeadLetter(ctx context.Context, f queue.Failure) error {
	return j.failure(ctx, true, f, f.At)
}

// filterArgs are a filter's arguments: type, actor, before, limit, ids
// (nil for each field not set).
func filterArgs(f queue.Filter) ([]any, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", queue.ErrInvalid, f.Limit)
	}
	if !queue.TimeRepresentable(f.Before) {
		return nil, fmt.Errorf("%w: filter time %v outside the storable range", queue.ErrInvalid, f.Before)
	}
	args := []any{nil, nil, nil, f.Limit, nil}
	if f.Type != "" {
		args[0] = []byte(f.Type)
	}
	if f.Actor != "" {
		args[1] = []byte(f.Actor)
	}
	if !f.Before.IsZero() {
		args[2] = queue.UnixNano(f.Before)
	}
	if len(f.IDs) > 0 {
		ids := make([][]byte, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = []byte(id)
		}
		args[4] = ids
	}
	return args, nil
}

// ListDead implements queue.Store.
func (j *Journal) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	args, err := filterArgs(f)
	if err != nil {
		return nil, err
	}
	var out []queue.DeadLetter
	err = j.read(ctx, "list dead letters", func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.qsql.listDead, args...)
		if err != nil {
			return err
		}
		var (
			b, le                  []byte
			seq, att, next, deadAt int64
		)
		_, err = pgx.ForEachRow(rows, []any{&b, &seq, &att, &le, &next, &deadAt}, func() error {
			m, err := scanMessage(b, seq, att, le, next)
			out = append(out, queue.DeadLetter{Message: m, DeadAt: utc(deadAt)})
			return err
		})
		return err
	})
	return out, err
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
	var (
		n      int32
		actors [][]byte
		ats    []int64
	)
	if err := j.write(ctx, f.Actor, j.qsql.replay, append([]any{queue.UnixNano(now)}, args...), &n, &actors, &ats); err != nil {
		return 0, err
	}
	j.wakes(actors, ats)
	return int(n), nil
}

// Purge implements queue.Store.
func (j *Journal) Purge(ctx context.Context, f queue.Filter) (int, error) {
	args, err := filterArgs(f)
	if err != nil {
		return 0, err
	}
	now := time.Now().UnixNano()
	var n int32
	if err := j.write(ctx, f.Actor, j.qsql.purge, append([]any{now, j.cutoff(now)}, args...), &n); err != nil {
		return 0, err
	}
	return int(n), nil
}

// SetReminder implements queue.Store.
func (j *Journal) SetReminder(ctx context.Context, r queue.Reminder) error {
	if err := queue.CheckReminder(r); err != nil {
		return err
	}
	due := queue.UnixNano(r.DueAt)
	r.DueAt = utc(due)
	var wake *int64
	if err := j.write(ctx, r.Actor, j.qsql.setReminder, []any{j.cutoff(time.Now().UnixNano()), []byte(r.Actor), []byte(typeOf(r.Actor)),
		[]byte(r.Name), due, queue.MarshalReminder(r)}, &wake); err != nil {
		return err
	}
	j.wake(r.Actor, wake)
	return nil
}

// DeleteReminder implements queue.Store.
func (j *Journal) DeleteReminder(ctx context.Context, actor, name string) error {
	if err := queue.CheckActor(actor); err != nil {
		return err
	}
	var found bool
	if err := j.write(ctx, actor, j.qsql.deleteReminder, []any{j.cutoff(time.Now().UnixNano()), []byte(actor), []byte(name)}, &found); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %q has no reminder %q", queue.ErrNotFound, actor, name)
	}
	return nil
}

// Reminders implements queue.Store.
func (j *Journal) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	if err := queue.CheckActor(actor); err != nil {
		return nil, err
	}
	var out []queue.Reminder
	err := j.read(ctx, fmt.Sprintf("reminders of %q", actor), func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.qsql.reminders, []byte(actor))
		if err != nil {
			return err
		}
		var rec []byte
		_, err = pgx.ForEachRow(rows, []any{&rec}, func() error {
			r, err := queue.UnmarshalReminder(rec)
			if err != nil {
				return &corrupt{fmt.Errorf("pgjournal: reminder of %q: %w", actor, err)}
			}
			out = append(out, r)
			return nil
		})
		return err
	})
	return out, err
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

// Release implements queue.Store. It asks first whether anything of the
// actor's is due (and writes nothing when not); then it reads the
// reminders due, computes their firings and next instants, and has a
// committer run the release, which refuses if the reminders due changed
// meanwhile; then it reads again.
func (j *Journal) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := queue.CheckActor(actor); err != nil {
		return 0, err
	}
	if !queue.TimeRepresentable(now) {
		return 0, fmt.Errorf("%w: release at %v outside the storable range", queue.ErrInvalid, now)
	}
	ns := queue.UnixNano(now)
	for attempt := 0; ; attempt++ {
		var (
			releasable bool
			names, old [][]byte
		)
		err := j.read(ctx, fmt.Sprintf("timers of %q", actor), func(ctx context.Context, conn *pgxpool.Conn) error {
			names, old = nil, nil
			if err := conn.QueryRow(ctx, j.qsql.releasable, []byte(actor), ns).Scan(&releasable); err != nil || !releasable {
				return err
			}
			rows, err := conn.Query(ctx, j.qsql.timers, []byte(actor), ns)
			if err != nil {
				return err
			}
			var name, rec []byte
			_, err = pgx.ForEachRow(rows, []any{&name, &rec}, func() error {
				names, old = append(names, name), append(old, rec)
				return nil
			})
			return err
		})
		if err != nil || !releasable {
			return 0, err
		}
		newDue := make([]*int64, len(names))
		newRec := make([][]byte, len(names))
		fireIDs := make([][]byte, len(names))
		fireBodies := make([][]byte, len(names))
		fireOrdered := make([]bool, len(names))
		for i := range names {
			r, err := queue.UnmarshalReminder(old[i])
			if err != nil {
				return 0, fmt.Errorf("pgjournal: reminder of %q: %w", actor, err)
			}
			due := queue.UnixNano(r.DueAt)
			if next, ok := nextFiring(due, int64(r.Period), ns); ok {
				r2 := r
				r2.DueAt = utc(next)
				newDue[i], newRec[i] = &next, queue.MarshalReminder(r2)
			}
			msg := queue.Message{ID: queue.ReminderID(actor, r.Name, due), Actor: actor, Method: r.Method, Payload: r.Payload, Ordered: r.Ordered}
			fireIDs[i], fireBodies[i], fireOrdered[i] = []byte(msg.ID), body(msg, ns), r.Ordered
		}
		var (
			status string
			n      *int32
			wake   *int64
		)
		err = j.write(ctx, actor, j.qsql.release, []any{[]byte(actor), []byte(typeOf(actor)), ns, j.cutoff(ns),
			names, old, newDue, newRec, fireIDs, fireBodies, fireOrdered}, &status, &n, &wake)
		if err != nil {
			return 0, err
		}
		if status == "stale" && attempt < 100 {
			continue
		}
		if status != "ok" || n == nil {
			return 0, fmt.Errorf("%w: pgjournal: release of %q at %s: unexpected status %q", ErrUnknownOutcome, actor, j.addr, status)
		}
		j.wake(actor, wake)
		return int(*n), nil
	}
}

// Stats implements queue.Store. It counts rows: its cost grows with the
// number of messages held.
func (j *Journal) Stats(ctx context.Context) ([]queue.Stats, error) {
	var out []queue.Stats
	err := j.read(ctx, "stats", func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.qsql.stats)
		if err != nil {
			return err
		}
		var (
			typ        []byte
			p, s, d, r int64
			oldest     *int64
		)
		_, err = pgx.ForEachRow(rows, []any{&typ, &p, &s, &d, &r, &oldest}, func() error {
			st := queue.Stats{Type: string(typ), Pending: int(p), Scheduled: int(s), Dead: int(d), Reminders: int(r)}
			if oldest != nil {
				st.Oldest = utc(*oldest)
			}
			out = append(out, st)
			return nil
		})
		return err
	})
	return out, err
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

// ackRule is the error of an append whose message entries the function
// refused.
func ackRule(actor, code, id string) error {
	switch code {
	case "nh":
		return fmt.Errorf("%w: %w: an ordered message of %q before %q is pending", journal.ErrAck, queue.ErrNotHead, actor, id)
	case "kid":
		return fmt.Errorf("%w: %w: direct message %q to %q", journal.ErrAck, queue.ErrKnownID, id, actor)
	}
	return fmt.Errorf("%w: %w: message %q is not pending in the queue of %q (or is acknowledged twice)", journal.ErrAck, queue.ErrNotFound, id, actor)
}

// appendQueue is Append for entries that acknowledge, apply or send
// messages. recs are the entries' records.
func (j *Journal) appendQueue(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry, recs [][]byte) (uint64, error) {
	now := time.Now().UnixNano()
	acks := [][]byte{}
	var directIDs []string
	var sendIDs, sendActors, sendTypes, sendBodies [][]byte
	var sendOrdered, sendSched []bool
	var sendNext []int64
	for _, e := range entries {
		switch e.Kind {
		case journal.KindMessageAck:
			acks = append(acks, []byte(e.IdempotencyKey))
		case journal.KindMessageDirect:
			directIDs = append(directIDs, e.IdempotencyKey)
		case journal.KindMessageSend:
			msg, err := queuesm.DecodeOutbox(e.IdempotencyKey, e.Payload)
			if err != nil {
				return 0, fmt.Errorf("%w: %w", journal.ErrInvalid, err)
			}
			sched, next := placement(msg, now)
			sendIDs, sendActors, sendTypes = append(sendIDs, []byte(msg.ID)), append(sendActors, []byte(msg.Actor)), append(sendTypes, []byte(typeOf(msg.Actor)))
			sendBodies, sendOrdered, sendSched, sendNext = append(sendBodies, body(msg, now)), append(sendOrdered, msg.Ordered), append(sendSched, sched), append(sendNext, next)
		}
	}
	if err := queuesm.CheckDirectIDs(actor, directIDs); err != nil {
		return 0, fmt.Errorf("%w: %w", journal.ErrInvalid, err)
	}
	// A direct message is refused while any ordered message of the actor
	// is pending, whatever its mode (queuesm.CheckDirect).
	directs, directOrdered := [][]byte{}, []bool{}
	for _, id := range directIDs {
		directs, directOrdered = append(directs, []byte(id)), append(directOrdered, true)
	}
	var (
		code   *string
		codeID []byte
		actors [][]byte
		ats    []int64
	)
	r := (&request{op: opAppend, actor: actor, token: token, seq: expectedSeq, sql: j.qsql.appendQueue,
		args: []any{[]byte(actor), token, expectedSeq, recs, now, j.cutoff(now), []byte(typeOf(actor)), acks, directs, directOrdered,
			nonNil(sendIDs), nonNil(sendActors), nonNil(sendTypes), nonNil(sendBodies), nonNilBools(sendOrdered), nonNilBools(sendSched), nonNilInts(sendNext)},
	}).verdictDest(&code, &codeID, &actors, &ats)
	r.answer = func() error {
		if !r.v.ok && code != nil {
			return ackRule(actor, *code, string(codeID))
		}
		return j.result(r, r.v)
	}
	if err := j.do(ctx, r); err != nil {
		return 0, err
	}
	j.wakes(actors, ats)
	return expectedSeq + uint64(len(entries)), nil
}

// Empty arrays, not NULL, for the functions' array arguments.
func nonNil(b [][]byte) [][]byte {
	if b == nil {
		return [][]byte{}
	}
	return b
}

func nonNilBools(b []bool) []bool {
	if b == nil {
		return []bool{}
	}
	return b
}

func nonNilInts(b []int64) []int64 {
	if b == nil {
		return []int64{}
	}
	return b
}
