package redislock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/lock"
)

var _ lock.Coordinator = (*Coordinator)(nil)

// Sentinel errors of redislock, besides those of the lock contract. Every
// error from Redis or from the way to it wraps one of them and the cause
// (so errors.Is(err, context.DeadlineExceeded) works too), and says which
// operation failed on which server. Test with errors.Is.
var (
	// ErrUnavailable: the operation was not carried out: no connection
	// could be made (refused, dial timeout, no free connection in the
	// pool), or the server refused it before running it (LOADING,
	// READONLY, a wrong password, MISCONF, OOM, BUSY, ...). Nothing
	// changed; retry. It wraps lock.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("redislock: redis unavailable: %w", lock.ErrUnavailable)
	// ErrUnknownOutcome: the operation may have been carried out: it was,
	// or may have been, sent, and no answer came (a timeout, a connection
	// lost, the context ended), or the script failed part-way. Acquire and
	// Renew may be retried as they are (a re-Acquire by the holder returns
	// its token); a retried CreateSession may leave a session nobody
	// renews, which lapses after its TTL; a retried Release may answer
	// ErrNotHeld because the first one freed the lock. It wraps
	// lock.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("redislock: outcome unknown: %w", lock.ErrUnknownOutcome)
)

// Options configure a Coordinator.
type Options struct {
	// Redis says how to reach the server. Its KeyPrefix (default "loom:")
	// names the cluster: the coordinator keeps every key under
	// KeyPrefix + "lock:", so clusters with different prefixes share a
	// server without seeing each other. go-redis's own retries are turned
	// off (see the package doc).
	Redis redis.Options
	// Meter, when not nil, counts the coordinator's traffic (see RedisStats);
	// several clients may share one, and it then counts them all. nil:
	// the coordinator makes its own.
	Meter *redis.Meter
}

// Validate reports every problem with o, or nil. It fills in nothing.
func (o Options) Validate() error {
	_, err := o.Redis.ClientOptions()
	return err
}

// sweepBudget is the most lock keys one CreateSession, Renew or
// DestroySession deletes on behalf of lapsed and destroyed sessions: about
// a millisecond of the server's time.
const sweepBudget = 1000

// Coordinator is a lock.Coordinator kept in Redis. See the package doc.
// It is safe for concurrent use; its only state is the client and the
// closed flag, guarded by one RWMutex that every operation holds (shared)
// for its duration, so Close waits for operations in flight.
type Coordinator struct {
	client  *goredis.Client
	meter   *redis.Meter
	addr    string // for error messages
	base    string // KeyPrefix + "lock:"
	scripts scripts

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup // commands under way, some perhaps abandoned by their callers
	close    sync.Once      // closes the client
	closeErr error
}

// New returns a coordinator on the server o names. It does not connect
// until first used.
func New(o Options) (*Coordinator, error) {
	return newCoordinator(o, serverClock)
}

// newCoordinator builds a coordinator whose scripts read the time with
// clock, a Lua definition of now_ms().
func newCoordinator(o Options, clock string) (*Coordinator, error) {
	co, err := o.Redis.ClientOptions()
	if err != nil {
		return nil, fmt.Errorf("redislock: %w", err)
	}
	// One attempt per operation: after a retry the last error would say
	// nothing of what the earlier attempts did, and ErrUnavailable must
	// mean that nothing was done.
	co.MaxRetries = -1
	// Let a context's deadline bound the command's reads and writes too.
	co.ContextTimeoutEnabled = true
	meter := o.Meter
	if meter == nil {
		meter = new(redis.Meter)
	}
	client := goredis.NewClient(co)
	client.AddHook(meter)
	return &Coordinator{
		client:  client,
		meter:   meter,
		addr:    co.Addr,
		base:    o.Redis.Prefix() + "lock:",
		scripts: newScripts(clock),
	}, nil
}

func (c *Coordinator) sessionKey(s lock.SessionID) string { return c.base + "s:" + string(s) }
func (c *Coordinator) sessionLocks(s lock.SessionID) string {
	return c.base + "sl:" + string(s)
}
func (c *Coordinator) lockKey(key string) string  { return c.base + "l:" + key }
func (c *Coordinator) tokenKey(key string) string { return c.base + "t:" + key }

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

// run runs script s as operation o and returns its reply.
func (c *Coordinator) run(ctx context.Context, o op, s *goredis.Script, keys []string, args ...any) (any, error) {
	return c.send(ctx, o, c.failed, func(ctx context.Context) (any, error) {
		return s.Run(ctx, c.client, keys, append([]any{c.base}, args...)...).Result()
	})
}

// send runs command f as operation o and returns its reply, or its error
// through fail (also when ctx ends first).
//
// go-redis ends a command early at a context's deadline but not at its
// cancellation, and lock.Keeper cancels its requests on its own clock. So
// the command runs in a goroutine, and send returns when it answers or
// when ctx ends, whichever is first; an abandoned command finishes
// (answer, ReadTimeout or a lost connection) on its own, and Close waits
// for it.
func (c *Coordinator) send(ctx context.Context, o op, fail func(op, error) error, f func(context.Context) (any, error)) (any, error) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, fmt.Errorf("redislock: %s: %w", o, lock.ErrClosed)
	}
	if ctx.Err() != nil { // not sent
		c.mu.RUnlock()
		return nil, fmt.Errorf("redislock: %s: %w", o, ctxErr(ctx))
	}
	type reply struct {
		v   any
		err error
	}
	done := make(chan reply, 1)
	c.inflight.Add(1) // under the read lock, so never after Close began to wait
	go func() {
		defer c.inflight.Done()
		v, err := f(ctx)
		done <- reply{v, err}
	}()
	c.mu.RUnlock()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fail(o, r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		return nil, fail(o, ctxErr(ctx))
	}
}

// ctxErr is ctx's error, with its cause when that says more.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// failed wraps an error from go-redis: ErrUnavailable when the operation
// certainly was not carried out (redis.NotApplied), ErrUnknownOutcome
// otherwise.
func (c *Coordinator) failed(o op, err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redislock: %s: %w: %w", o, lock.ErrClosed, err)
	}
	if redis.NotApplied(err) {
		return fmt.Errorf("%w: %s: redis at %s: %w", ErrUnavailable, o, c.addr, err)
	}
	return fmt.Errorf("%w: %s: redis at %s: %w", ErrUnknownOutcome, o, c.addr, err)
}

// Ping sends Redis a PING and returns how long the answer took. Any
// failure, the caller's context ending while it waited included, wraps
// ErrUnavailable (a PING changes nothing); after Close it is
// lock.ErrClosed, and a context already done returns its error. The
// round trip is counted in RedisStats like any other.
func (c *Coordinator) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	_, err := c.send(ctx, op{name: "ping"}, c.pingFailed, func(ctx context.Context) (any, error) {
		return c.client.Ping(ctx).Result()
	})
	return time.Since(start), err
}

func (c *Coordinator) pingFailed(o op, err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redislock: %s: %w: %w", o, lock.ErrClosed, err)
	}
	return fmt.Errorf("%w: %s: redis at %s: %w", ErrUnavailable, o, c.addr, err)
}

// RedisStats returns what the coordinator's Meter (Options.Meter, or its
// own) has counted: with a shared Meter, the traffic of every client using
// it. (Named as the journal's, whose Stats is the queue's.)
func (c *Coordinator) RedisStats() redis.Stats { return c.meter.Snapshot() }

// Addr is the address of the Redis server, host:port, for display.
func (c *Coordinator) Addr() string { return c.addr }

// badReply is the error of a reply the scripts cannot have produced.
func (c *Coordinator) badReply(o op, v any) error {
	return fmt.Errorf("%w: %s: redis at %s: unexpected reply %#v", ErrUnknownOutcome, o, c.addr, v)
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's contract since Go 1.24)
	return hex.EncodeToString(b[:])
}

// ttlMillis is ttl (positive) in whole milliseconds, rounded up.
func ttlMillis(ttl time.Duration) int64 {
	ms := int64(ttl / time.Millisecond)
	if ttl%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// CreateSession implements lock.Coordinator. The session's id is
// "<n>-<random>": n from a counter that is never reset, and 64 random bits
// that keep ids apart even if the counter goes back (see the package doc).
// The TTL is counted in whole milliseconds, rounded up.
func (c *Coordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	o := op{name: "create session", owner: owner}
	if owner == "" {
		return "", fmt.Errorf("redislock: create session: empty owner: %w", lock.ErrInvalid)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("redislock: %s: ttl %v: %w", o, ttl, lock.ErrInvalid)
	}
	v, err := c.run(ctx, o, c.scripts.create, []string{c.base + "seq", c.base + "sessions"},
		owner, ttlMillis(ttl), nonce(), sweepBudget)
	if err != nil {
		return "", err
	}
	id, ok := v.(string)
	if !ok || id == "" {
		return "", c.badReply(o, v)
	}
	return lock.SessionID(id), nil
}

// Renew implements lock.Coordinator.
func (c *Coordinator) Renew(ctx context.Context, s lock.SessionID) error {
	o := op{name: "renew", session: s}
	v, err := c.run(ctx, o, c.scripts.renew, []string{c.sessionKey(s), c.base + "sessions"}, string(s), sweepBudget)
	if err != nil {
		return err
	}
	switch v {
	case int64(1):
		return nil
	case int64(0):
		return fmt.Errorf("redislock: %s: %w", o, lock.ErrSessionExpired)
	}
	return c.badReply(o, v)
}

// DestroySession implements lock.Coordinator.
func (c *Coordinator) DestroySession(ctx context.Context, s lock.SessionID) error {
	o := op{name: "destroy", session: s}
	_, err := c.run(ctx, o, c.scripts.destroy, []string{c.sessionKey(s), c.base + "sessions"}, string(s), sweepBudget)
	return err
}

// Acquire implements lock.Coordinator.
func (c *Coordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	o := op{name: "acquire", session: s, key: key}
	if key == "" {
		return 0, fmt.Errorf("redislock: acquire: empty key: %w", lock.ErrInvalid)
	}
	v, err := c.run(ctx, o, c.scripts.acquire,
		[]string{c.sessionKey(s), c.sessionLocks(s), c.lockKey(key), c.tokenKey(key)}, string(s), key)
	if err != nil {
		return 0, err
	}
	r, _ := v.([]any)
	if len(r) == 0 {
		return 0, c.badReply(o, v)
	}
	switch r[0] {
	case int64(0):
		return 0, fmt.Errorf("redislock: %s: %w", o, lock.ErrSessionExpired)
	case int64(1):
		if tok, ok := token(r, 1); ok && len(r) == 2 {
			return tok, nil
		}
	case int64(2):
		tok, ok := token(r, 1)
		owner, ok2 := elem[string](r, 2)
		if ok && ok2 {
			return 0, &lock.HeldError{Key: key, Holder: owner, Token: tok}
		}
	}
	return 0, c.badReply(o, v)
}

// Release implements lock.Coordinator.
func (c *Coordinator) Release(ctx context.Context, s lock.SessionID, key string) error {
	o := op{name: "release", session: s, key: key}
	if key == "" {
		return fmt.Errorf("redislock: release: empty key: %w", lock.ErrInvalid)
	}
	v, err := c.run(ctx, o, c.scripts.release,
		[]string{c.sessionKey(s), c.sessionLocks(s), c.lockKey(key)}, string(s), key)
	if err != nil {
		return err
	}
	switch v {
	case int64(1):
		return nil
	case int64(0):
		return fmt.Errorf("redislock: %s: %w", o, lock.ErrNotHeld)
	}
	return c.badReply(o, v)
}

// Holder implements lock.Coordinator.
func (c *Coordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	o := op{name: "holder", key: key}
	if key == "" {
		return lock.LockInfo{}, false, fmt.Errorf("redislock: holder: empty key: %w", lock.ErrInvalid)
	}
	v, err := c.run(ctx, o, c.scripts.holder, []string{c.lockKey(key)})
	if err != nil {
		return lock.LockInfo{}, false, err
	}
	r, ok := v.([]any)
	if !ok {
		return lock.LockInfo{}, false, c.badReply(o, v)
	}
	if len(r) == 0 {
		return lock.LockInfo{}, false, nil
	}
	sid, ok1 := elem[string](r, 0)
	tok, ok2 := token(r, 1)
	owner, ok3 := elem[string](r, 2)
	if len(r) != 3 || !ok1 || !ok2 || !ok3 {
		return lock.LockInfo{}, false, c.badReply(o, v)
	}
	return lock.LockInfo{Key: key, Session: lock.SessionID(sid), Owner: owner, Token: tok}, true, nil
}

// Close implements lock.Coordinator: later calls return lock.ErrClosed; it
// waits for the commands under way (including ones whose callers gave up:
// each ends by its answer, the ReadTimeout or a lost connection), then
// closes the client. Sessions are left to lapse. It may be called more
// than once, also concurrently; every call waits.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.inflight.Wait()
	first := false
	c.close.Do(func() {
		first = true
		if err := c.client.Close(); err != nil {
			c.closeErr = fmt.Errorf("redislock: close: %w", err)
		}
	})
	if !first {
		return nil
	}
	return c.closeErr
}

func elem[T any](r []any, i int) (T, bool) {
	var zero T
	if i >= len(r) {
		return zero, false
	}
	v, ok := r[i].(T)
	return v, ok
}

// token reads a token (a positive integer) from r[i].
func token(r []any, i int) (uint64, bool) {
	n, ok := elem[int64](r, i)
	if !ok || n <= 0 {
		return 0, false
	}
	return uint64(n), true
}
