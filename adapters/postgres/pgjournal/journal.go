package pgjournal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// Sentinel errors, besides the journal package's. Both are wrapped with %w,
// together with the underlying error; test with errors.Is. Each wraps the
// journal contract's sentinel of the same name, so a caller that knows
// only the contract tests journal.ErrUnavailable and
// journal.ErrUnknownOutcome.
var (
	// ErrUnavailable: PostgreSQL could not be reached (no connection could
	// be had, the login was refused) or answered the operation with an
	// error, after which it rolled the transaction back (read-only
	// standby, disk full, too many connections, a deadlock, ...). The
	// operation had no effect; it may be retried. It wraps
	// journal.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("pgjournal: postgres unavailable, operation not applied: %w", journal.ErrUnavailable)
	// ErrUnknownOutcome: the operation was sent and no answer came back
	// (the connection broke or timed out, the caller stopped waiting), or
	// the server ended the session while it ran. It may or may not have
	// taken effect: Tail (or Read) tells. It is never reported as
	// ErrFenced, ErrConflict or another refusal. It wraps
	// journal.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("pgjournal: sent to postgres, outcome unknown: %w", journal.ErrUnknownOutcome)
)

// Options configure Open. Start from DefaultOptions and set Postgres; Open
// never fills in defaults silently (Validate says what is wrong).
type Options struct {
	// Postgres names the server, its credentials and the schema the
	// journal's tables live in (postgres.Options.Schema, default "loom").
	// Its QueryTimeout bounds each batch's round trip.
	Postgres postgres.Options

	// MaxBatch is the most mutations (appends, snapshots, truncations)
	// sent in one batch, which is one transaction. Default 256: large
	// enough that a batch is bounded by the number of callers, small
	// enough that one transaction's row locks are held for a few
	// milliseconds.
	MaxBatch int

	// Committers is the most batches in flight at once, each on its own
	// connection, sent by its own committer goroutine. Default 2, so that
	// PostgreSQL can run (and fsync) one batch while the answers to the
	// previous one travel back and the next is assembled. The pool
	// (Postgres.PoolSize) needs room for them and for concurrent reads.
	Committers int

	// QueueRetention is how long the queue (queue.Store) remembers the id
	// of an acknowledged or purged message. 0 means
	// queue.DefaultRetention; negative is invalid.
	QueueRetention time.Duration

	// Meter, when not nil, counts the journal's traffic (see
	// PostgresStats); several pools may share one, and it then counts
	// them all. nil: Open makes one for the journal.
	Meter *postgres.Meter
}

// DefaultOptions returns the options described on each field, with an
// empty Postgres (which Validate refuses: set at least Host and User).
func DefaultOptions() Options {
	return Options{MaxBatch: 256, Committers: 2}
}

// Validate reports every invalid field, joined, each wrapping
// journal.ErrInvalid (and, for Postgres, postgres.ErrOptions).
func (o Options) Validate() error {
	var errs []error
	if err := o.Postgres.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: pgjournal: %w", journal.ErrInvalid, err))
	}
	if o.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("%w: pgjournal: MaxBatch %d, want at least 1", journal.ErrInvalid, o.MaxBatch))
	}
	if o.Committers < 1 {
		errs = append(errs, fmt.Errorf("%w: pgjournal: Committers %d, want at least 1", journal.ErrInvalid, o.Committers))
	}
	if o.QueueRetention < 0 {
		errs = append(errs, fmt.Errorf("%w: pgjournal: QueueRetention %v is negative", journal.ErrInvalid, o.QueueRetention))
	}
	if o.Postgres.PoolSize != 0 && o.Committers >= 1 && o.Postgres.PoolSize <= o.Committers {
		errs = append(errs, fmt.Errorf("%w: pgjournal: a pool of %d connections leaves none for reads beside %d committers", journal.ErrInvalid, o.Postgres.PoolSize, o.Committers))
	}
	return errors.Join(errs...)
}

// Journal is a journal.Journal on a PostgreSQL server; see the package
// documentation for its layout and guarantees.
//
// Goroutines: Open starts Options.Committers committer goroutines, stopped
// and waited for by Close. Append, SaveSnapshot and Truncate encode their
// records on the caller's goroutine, queue a request and wait; a committer
// takes everything queued and sends it as one batch. Read, Tail and
// LoadSnapshot run on the caller's goroutine. mu guards the queue, the
// request states and closed.
type Journal struct {
	pool     *pgxpool.Pool
	meter    *postgres.Meter
	addr     string // for errors
	timeout  time.Duration
	maxBatch int
	sql      statements
	qsql     queueStatements

	retention time.Duration                                    // queue: how long gone ids are remembered
	notify    atomic.Pointer[func(actor string, at time.Time)] // queue.Notifier
	waker     *waker                                           // wakes to and from other Journals

	mu      sync.Mutex
	cond    *sync.Cond // on mu: the queue became non-empty, or closed was set
	closed  bool
	queue   []*request
	readers sync.WaitGroup // in-flight reads; Add under mu while !closed

	committers sync.WaitGroup
	closeOnce  sync.Once
}

var _ journal.Journal = (*Journal)(nil)

// statements are the journal's SQL, in its schema.
type statements struct {
	append, snapshot, truncate string
	read, tail, loadSnapshot   string
}

func newStatements(schema string) statements {
	x := func(sql string) string { return postgres.Expand(sql, schema) }
	return statements{
		append:       x("SELECT o_ok, o_tail, o_token, o_snap_seq FROM {s}.journal_append($1, $2, $3, $4)"),
		snapshot:     x("SELECT o_ok, o_tail, o_token, o_snap_seq FROM {s}.journal_snapshot($1, $2, $3, $4)"),
		truncate:     x("SELECT o_ok, o_tail, o_token, o_snap_seq FROM {s}.journal_truncate($1, $2, $3)"),
		read:         x("SELECT seq, rec FROM {s}.journal_entries WHERE actor = $1 AND seq >= $2 ORDER BY seq"),
		tail:         x("SELECT tail, token FROM {s}.journal_heads WHERE actor = $1"),
		loadSnapshot: x("SELECT rec FROM {s}.journal_snapshots WHERE actor = $1"),
	}
}

// Open connects to the server o.Postgres names, brings the schema to
// postgres.SchemaVersion (postgres.Migrate, bounded by ctx alone) and
// starts the committers. It fails with an error wrapping ErrUnavailable
// (naming the server) if the server cannot be reached or refuses, with
// postgres.ErrSchemaTooNew if the schema is newer than this code, and with
// journal.ErrInvalid for invalid options.
func Open(ctx context.Context, o Options) (*Journal, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	meter := o.Meter
	if meter == nil {
		meter = new(postgres.Meter)
	}
	pool, err := postgres.NewPool(o.Postgres, meter)
	if err != nil {
		return nil, fmt.Errorf("%w: pgjournal: %w", journal.ErrInvalid, err)
	}
	j := &Journal{
		pool:     pool,
		meter:    meter,
		addr:     o.Postgres.Addr(),
		timeout:  o.Postgres.Timeout(),
		maxBatch: o.MaxBatch,
		sql:      newStatements(o.Postgres.SchemaName()),
		qsql:     newQueueStatements(o.Postgres.SchemaName()),

		retention: o.QueueRetention,
	}
	if j.retention == 0 {
		j.retention = queue.DefaultRetention
	}
	j.cond = sync.NewCond(&j.mu)
	if _, err := postgres.Migrate(ctx, pool, o.Postgres.SchemaName()); err != nil {
		pool.Close()
		if errors.Is(err, postgres.ErrSchemaTooNew) {
			return nil, fmt.Errorf("pgjournal: postgres at %s: %w", j.addr, err)
		}
		return nil, fmt.Errorf("%w: postgres at %s: %w", ErrUnavailable, j.addr, err)
	}
	j.startWaker(o.Postgres.SchemaName())
	for range o.Committers {
		j.committers.Add(1)
		go j.commitLoop()
	}
	return j, nil
}

// Append implements journal.Journal. The entries are stamped and encoded
// on the caller's goroutine; a committer sends them in its next batch.
func (j *Journal) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	recs := make([][]byte, len(entries))
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		recs[i] = journal.MarshalEntry(e)
	}
	if hasQueueEntries(entries) {
		return j.appendQueue(ctx, actor, token, expectedSeq, entries, recs)
	}
	r := (&request{op: opAppend, actor: actor, token: token, seq: expectedSeq,
		sql: j.sql.append, args: []any{[]byte(actor), token, expectedSeq, recs}}).verdictDest()
	if err := j.do(ctx, r); err != nil {
		return 0, err
	}
	return expectedSeq + uint64(len(entries)), nil
}

// SaveSnapshot implements journal.Journal.
func (j *Journal) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	snap.Token = token
	return j.do(ctx, (&request{op: opSnapshot, actor: actor, token: token, seq: snap.Seq,
		sql: j.sql.snapshot, args: []any{[]byte(actor), token, snap.Seq, journal.MarshalSnapshot(snap)}}).verdictDest())
}

// Truncate implements journal.Journal. A successful Truncate, even one that
// removes nothing, raises the actor's highest token to token.
func (j *Journal) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	return j.do(ctx, (&request{op: opTruncate, actor: actor, token: token, seq: throughSeq,
		sql: j.sql.truncate, args: []any{[]byte(actor), token, throughSeq}}).verdictDest())
}

// Read implements journal.Journal. It is one statement, so it sees the
// log at one instant (a Truncate cannot cut into the middle of what it
// returns), and it checks each record's checksum, its Seq against its
// row, and its actor.
func (j *Journal) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return nil, err
	}
	defer j.readers.Done()
	if fromSeq > math.MaxInt64 { // no log is that long
		return nil, nil
	}
	var out []journal.Entry
	err := j.query(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, j.sql.read, []byte(actor), int64(fromSeq))
		if err != nil {
			return err
		}
		var (
			seq int64
			rec []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&seq, &rec}, func() error {
			e, err := journal.UnmarshalEntry(rec)
			if err == nil && (e.Seq != uint64(seq) || e.Actor != actor) {
				err = fmt.Errorf("%w: record for %q seq %d stored as %q seq %d", journal.ErrCorrupt, e.Actor, e.Seq, actor, seq)
			}
			if err == nil && len(out) > 0 && e.Seq != out[len(out)-1].Seq+1 {
				err = fmt.Errorf("%w: seq %d follows seq %d", journal.ErrCorrupt, e.Seq, out[len(out)-1].Seq)
			}
			if err != nil {
				return &corrupt{fmt.Errorf("pgjournal: read %q at %s, seq %d: %w", actor, j.addr, seq, err)}
			}
			out = append(out, e)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, j.readErr(ctx, "read", actor, err)
	}
	return out, nil
}

// corrupt carries a decoding failure out of a read untouched.
type corrupt struct{ err error }

func (c *corrupt) Error() string { return c.err.Error() }
func (c *corrupt) Unwrap() error { return c.err }

// Tail implements journal.Journal.
func (j *Journal) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return journal.Tail{}, err
	}
	defer j.readers.Done()
	var t journal.Tail
	err := j.query(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, j.sql.tail, []byte(actor)).Scan(&t.Seq, &t.Token)
		if errors.Is(err, pgx.ErrNoRows) {
			t = journal.Tail{}
			return nil
		}
		return err
	})
	if err != nil {
		return journal.Tail{}, j.readErr(ctx, "tail of", actor, err)
	}
	return t, nil
}

// LoadSnapshot implements journal.Journal.
func (j *Journal) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return journal.Snapshot{}, false, err
	}
	defer j.readers.Done()
	var rec []byte
	err := j.query(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, j.sql.loadSnapshot, []byte(actor)).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			rec = nil
			return nil
		}
		return err
	})
	if err != nil {
		return journal.Snapshot{}, false, j.readErr(ctx, "load snapshot of", actor, err)
	}
	if rec == nil {
		return journal.Snapshot{}, false, nil
	}
	snap, err := journal.UnmarshalSnapshot(rec)
	if err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("pgjournal: load snapshot of %q at %s: %w", actor, j.addr, err)
	}
	return snap, true, nil
}

// query runs a read on a pooled connection, within the QueryTimeout.
func (j *Journal) query(ctx context.Context, f func(ctx context.Context, conn *pgxpool.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	conn, err := j.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return f(ctx, conn)
}

// readErr wraps the failure of a read: a read has no effect, so whatever
// went wrong on the way is ErrUnavailable, unless the caller's context
// ended (its error), or a record is corrupt.
func (j *Journal) readErr(ctx context.Context, op, actor string, err error) error {
	var c *corrupt
	if errors.As(err, &c) {
		return c.err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pgjournal: %s %q at %s: %w", op, actor, j.addr, ctx.Err())
	}
	return fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, op, actor, j.addr, err)
}

// Ping sends the server a statement that does nothing and returns how
// long the answer took. Any failure, the caller's context ending while it
// waited included, wraps ErrUnavailable; after Close it is
// journal.ErrClosed, and a context already done returns its error.
func (j *Journal) Ping(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, fmt.Errorf("%w: postgres journal at %s", journal.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	j.mu.Unlock()
	defer j.readers.Done()
	start := time.Now()
	err := j.query(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		_, err := conn.Exec(ctx, "SELECT 1")
		return err
	})
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%w: ping postgres at %s: %w", ErrUnavailable, j.addr, err)
	}
	return d, nil
}

// PostgresStats returns what the journal's Meter (Options.Meter, or its
// own) has counted: with a shared Meter, the traffic of every pool using
// it.
func (j *Journal) PostgresStats() postgres.Stats { return j.meter.Snapshot() }

// Addr is the address of the PostgreSQL server, host:port, for display.
func (j *Journal) Addr() string { return j.addr }

// enterRead admits a read: ctx, actor and closed checks, then registers it
// with j.readers (the caller must call j.readers.Done).
func (j *Journal) enterRead(ctx context.Context, actor string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("%w: postgres journal at %s", journal.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	return nil
}

// Close implements journal.Journal: it rejects new operations, lets the
// committers send every request already queued and wait for their answers,
// waits for in-flight reads, and closes the pool. Later calls wait for the
// first and return nil.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		j.cond.Broadcast()
		j.committers.Wait()
		j.readers.Wait()
		j.stopWaker()
		j.pool.Close()
	})
	return nil
}
