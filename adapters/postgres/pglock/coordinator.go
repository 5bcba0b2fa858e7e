package pglock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/lock"
)

var _ lock.Coordinator = (*Coordinator)(nil)

// Sentinel errors of pglock, besides those of the lock contract. Every
// error from PostgreSQL or from the way to it wraps one of them and the
// cause (so errors.Is(err, context.Canceled) works too), and says which
// operation failed on which server. Test with errors.Is.
var (
	// ErrUnavailable: the operation was not carried out: no connection
	// could be had (refused, timed out, the login refused, the pool
	// closed), or the server answered with an error, after which it
	// rolled the transaction back (a read-only standby, too many
	// connections, disk full, a missing table, ...). Nothing changed;
	// retry. It wraps lock.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("pglock: postgres unavailable: %w", lock.ErrUnavailable)
	// ErrUnknownOutcome: the operation may have been carried out: it was,
	// or may have been, sent, and no answer came (a connection lost, a
	// timeout, the context ended), or the server ended the session while
	// it ran. Acquire and Renew may be retried as they are (a re-Acquire
	// by the holder returns its token); a retried CreateSession may leave
	// a session nobody renews, which lapses after its TTL; a retried
	// Release may answer ErrNotHeld because the first one freed the lock.
	// It wraps lock.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("pglock: outcome unknown: %w", lock.ErrUnknownOutcome)
)

// Options configure a Coordinator.
type Options struct {
	// Postgres says how to reach the server, and which schema holds the
	// coordinator's tables (see postgres.Options.Schema): clusters with
	// different schemas share a database without seeing each other.
	Postgres postgres.Options
	// Meter, when not nil, counts the coordinator's traffic (see
	// PostgresStats); several pools may share one, and it then counts
	// them all. nil: the coordinator makes its own.
	Meter *postgres.Meter
}

// Validate reports every problem with o, or nil. It fills in nothing.
func (o Options) Validate() error { return o.Postgres.Validate() }

// sweepBudget is the most lock rows one CreateSession, Renew or
// DestroySession deletes on behalf of lapsed and destroyed sessions.
const sweepBudget = 1000

// serverClock is the coordinator's clock in production: the database's
// now(), the start of the statement's transaction, on the server.
const serverClock = "now()"

// Coordinator is a lock.Coordinator kept in PostgreSQL. See the package
// doc. It is safe for concurrent use; its only state is the pool and the
// closed flag, guarded by one RWMutex that every operation holds (shared)
// for its duration, so Close waits for operations in flight.
type Coordinator struct {
	pool    *pgxpool.Pool
	meter   *postgres.Meter
	addr    string // for error messages
	schema  string
	timeout time.Duration
	sql     statements

	mu     sync.RWMutex
	closed bool
	close  sync.Once
}

// statements are the coordinator's SQL, with its schema and clock.
type statements struct {
	create, renew, destroy, acquire, release, holder, endOwner string
}

func newStatements(schema, clock string) statements {
	x := func(sql string) string { return postgres.Expand(strings.ReplaceAll(sql, "{now}", clock), schema) }
	return statements{
		create:  x("SELECT {s}.lock_create($1, $2, $3, {now}, $4)"),
		renew:   x("SELECT {s}.lock_renew($1, {now}, $2)"),
		destroy: x("SELECT {s}.lock_destroy($1, {now}, $2)"),
		acquire: x("SELECT o_status, o_token, o_holder FROM {s}.lock_acquire($1, $2, {now})"),
		release: x(`DELETE FROM {s}.locks WHERE key = $2 AND session_id = $1
			AND EXISTS (SELECT 1 FROM {s}.lock_sessions WHERE id = $1 AND expires_at > {now})`),
		holder: x(`SELECT l.session_id, l.token, s.owner FROM {s}.locks l
			JOIN {s}.lock_sessions s ON s.id = l.session_id
			WHERE l.key = $1 AND s.expires_at > {now}`),
		endOwner: x(`UPDATE {s}.lock_sessions SET expires_at = '-infinity'
			WHERE owner = $1 AND id <> $2 AND expires_at > {now}`),
	}
}

// New returns a coordinator on the server o names, after bringing its
// schema to postgres.SchemaVersion (postgres.Migrate, bounded by ctx
// alone: a migration may take longer than one round trip). It fails with an
// error wrapping ErrUnavailable (naming the server) if the server cannot
// be reached or refuses, postgres.ErrSchemaTooNew if the schema is newer
// than this code, and postgres.ErrOptions for invalid options.
func New(ctx context.Context, o Options) (*Coordinator, error) {
	return newCoordinator(ctx, o, serverClock)
}

// newCoordinator builds a coordinator whose statements read the time
// with clock, an SQL expression of type timestamptz.
func newCoordinator(ctx context.Context, o Options, clock string) (*Coordinator, error) {
	meter := o.Meter
	if meter == nil {
		meter = new(postgres.Meter)
	}
	pool, err := postgres.NewPool(o.Postgres, meter)
	if err != nil {
		return nil, fmt.Errorf("pglock: %w", err)
	}
	c := &Coordinator{
		pool:    pool,
		meter:   meter,
		addr:    o.Postgres.Addr(),
		timeout: o.Postgres.Timeout(),
		schema:  o.Postgres.SchemaName(),
		sql:     newStatements(o.Postgres.SchemaName(), clock),
	}
	if _, err := postgres.Migrate(ctx, pool, o.Postgres.SchemaName()); err != nil {
		pool.Close()
		if errors.Is(err, postgres.ErrSchemaTooNew) || errors.Is(err, postgres.ErrOptions) {
			return nil, fmt.Errorf("pglock: postgres at %s: %w", c.addr, err)
		}
		return nil, fmt.Errorf("%w: postgres at %s: %w", ErrUnavailable, c.addr, err)
	}
	return c, nil
}

// op names an operation in error messages.
type op struct {
	name    string
	session lock.SessionID
	key     string
	owner   string
}

func (o op) String() string {
	var b strings.Builder
	b.WriteString(o.name)
	if o.key != "" {
		fmt.Fprintf(&b, " %q", o.key)
	}
	if o.owner != "" {
		fmt.Fprintf(&b, " for %q", o.owner)
	}
	if o.session != "" {
		if o.key != "" {
			b.WriteString(" by")
		}
		fmt.Fprintf(&b, " session %s", o.session)
	}
	return b.String()
}

// mode says how an operation's failures are told apart.
type mode int

const (
	write mode = iota // NotApplied: ErrUnavailable, else ErrUnknownOutcome
	read              // no effect either way: ErrUnavailable
)

// run runs f on a pooled connection as operation o, within the
// coordinator's QueryTimeout, and wraps its failure.
func (c *Coordinator) run(ctx context.Context, o op, m mode, f func(ctx context.Context, conn *pgxpool.Conn) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return fmt.Errorf("pglock: %s: %w", o, lock.ErrClosed)
	}
	if ctx.Err() != nil { // not sent
		return fmt.Errorf("pglock: %s: %w", o, ctxErr(ctx))
	}
	ctx2, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.pool.Acquire(ctx2)
	if err != nil { // nothing sent
		return fmt.Errorf("%w: %s: postgres at %s: %w", ErrUnavailable, o, c.addr, withCtx(ctx, err))
	}
	defer conn.Release()
	err = f(ctx2, conn)
	if err == nil {
		return nil
	}
	if m == read || postgres.NotApplied(err) {
		return fmt.Errorf("%w: %s: postgres at %s: %w", ErrUnavailable, o, c.addr, withCtx(ctx, err))
	}
	return fmt.Errorf("%w: %s: postgres at %s: %w", ErrUnknownOutcome, o, c.addr, withCtx(ctx, err))
}

// withCtx is err, with the caller's context's error and cause added when
// the context ended (pgx reports a cancellation without its cause).
func withCtx(ctx context.Context, err error) error {
	if ctx.Err() == nil || errors.Is(err, context.Cause(ctx)) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, ctxErr(ctx))
}

// ctxErr is ctx's error, with its cause when that says more.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// Ping sends the server a statement that does nothing and returns how
// long the answer took. Any failure, the caller's context ending while it
// waited included, wraps ErrUnavailable; after Close it is lock.ErrClosed,
// and a context already done returns its error. The round trip is counted
// in PostgresStats like any other.
func (c *Coordinator) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	err := c.run(ctx, op{name: "ping"}, read, func(ctx context.Context, conn *pgxpool.Conn) error {
		_, err := conn.Exec(ctx, "SELECT 1")
		return err
	})
	return time.Since(start), err
}

// PostgresStats returns what the coordinator's Meter (Options.Meter, or
// its own) has counted: with a shared Meter, the traffic of every pool
// using it.
func (c *Coordinator) PostgresStats() postgres.Stats { return c.meter.Snapshot() }

// Addr is the address of the PostgreSQL server, host:port, for display.
func (c *Coordinator) Addr() string { return c.addr }

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's contract since Go 1.24)
	return hex.EncodeToString(b[:])
}

// ttlMicros is ttl (positive) in whole microseconds, rounded up.
func ttlMicros(ttl time.Duration) int64 {
	us := int64(ttl / time.Microsecond)
	if ttl%time.Microsecond != 0 {
		us++
	}
	return us
}

// CreateSession implements lock.Coordinator. The session's id is
// "<n>-<random>": n from a sequence that is never reset, and 64 random
// bits. The TTL is counted in whole microseconds, rounded up.
func (c *Coordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	o := op{name: "create session", owner: owner}
	if owner == "" {
		return "", fmt.Errorf("pglock: create session: empty owner: %w", lock.ErrInvalid)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("pglock: %s: ttl %v: %w", o, ttl, lock.ErrInvalid)
	}
	var id string
	err := c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, c.sql.create, []byte(owner), ttlMicros(ttl), nonce(), sweepBudget).Scan(&id)
	})
	if err != nil {
		return "", err
	}
	return lock.SessionID(id), nil
}

// Renew implements lock.Coordinator. A session's deadline never moves
// back: a renewal that reaches the server after a later one keeps the
// later one's deadline.
func (c *Coordinator) Renew(ctx context.Context, s lock.SessionID) error {
	o := op{name: "renew", session: s}
	var alive bool
	err := c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, c.sql.renew, string(s), sweepBudget).Scan(&alive)
	})
	if err != nil {
		return err
	}
	if !alive {
		return fmt.Errorf("pglock: %s: %w", o, lock.ErrSessionExpired)
	}
	return nil
}

// DestroySession implements lock.Coordinator.
func (c *Coordinator) DestroySession(ctx context.Context, s lock.SessionID) error {
	o := op{name: "destroy", session: s}
	return c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		_, err := conn.Exec(ctx, c.sql.destroy, string(s), sweepBudget)
		return err
	})
}

// Acquire implements lock.Coordinator.
func (c *Coordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	o := op{name: "acquire", session: s, key: key}
	if key == "" {
		return 0, fmt.Errorf("pglock: acquire: empty key: %w", lock.ErrInvalid)
	}
	var (
		status int
		token  *int64
		holder []byte
	)
	err := c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, c.sql.acquire, string(s), []byte(key)).Scan(&status, &token, &holder)
	})
	if err != nil {
		return 0, err
	}
	switch {
	case status == 0:
		return 0, fmt.Errorf("pglock: %s: %w", o, lock.ErrSessionExpired)
	case status == 1 && token != nil && *token > 0:
		return uint64(*token), nil
	case status == 2 && token != nil && *token > 0 && holder != nil:
		return 0, &lock.HeldError{Key: key, Holder: string(holder), Token: uint64(*token)}
	}
	return 0, fmt.Errorf("%w: %s: postgres at %s: unexpected answer %d, %v, %q", ErrUnknownOutcome, o, c.addr, status, token, holder)
}

// Release implements lock.Coordinator.
func (c *Coordinator) Release(ctx context.Context, s lock.SessionID, key string) error {
	o := op{name: "release", session: s, key: key}
	if key == "" {
		return fmt.Errorf("pglock: release: empty key: %w", lock.ErrInvalid)
	}
	var n int64
	err := c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		tag, err := conn.Exec(ctx, c.sql.release, string(s), []byte(key))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("pglock: %s: %w", o, lock.ErrNotHeld)
	}
	return nil
}

// Holder implements lock.Coordinator. It writes nothing, so any failure
// on the way wraps ErrUnavailable.
func (c *Coordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	o := op{name: "holder", key: key}
	if key == "" {
		return lock.LockInfo{}, false, fmt.Errorf("pglock: holder: empty key: %w", lock.ErrInvalid)
	}
	var (
		sid   string
		token int64
		owner []byte
		found bool
	)
	err := c.run(ctx, o, read, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, c.sql.holder, []byte(key)).Scan(&sid, &token, &owner)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return lock.LockInfo{}, false, err
	}
	return lock.LockInfo{Key: key, Session: lock.SessionID(sid), Owner: string(owner), Token: uint64(token)}, true, nil
}

// Close implements lock.Coordinator: later calls return lock.ErrClosed;
// it waits for the operations under way, then closes the pool. Sessions
// are left to lapse. It may be called more than once, also concurrently;
// every call waits.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.close.Do(c.pool.Close)
	return nil
}
