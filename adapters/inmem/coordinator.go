package inmem

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/lock"
)

var _ lock.Coordinator = (*Coordinator)(nil)

// CoordinatorOptions configure an in-memory Coordinator.
type CoordinatorOptions struct {
	// Now is the coordinator's clock, which alone decides expiry. nil means
	// time.Now. Tests pass a fake clock (locktest.FakeClock.Now).
	Now func() time.Time
}

// Coordinator is an in-memory lock.Coordinator for tests and single-process
// use. All state lives in maps behind one mutex; nothing runs in the
// background. Expiry is decided lazily: every call compares the deadlines
// of the sessions it touches with Now(), and CreateSession sweeps out every
// lapsed session, so a session nobody touches again does not leak for long.
//
// Fencing tokens come from one counter per Coordinator, starting at 1 and
// incremented on every grant, so they strictly increase per key (and across
// keys) and are never reused. Session ids are never reused within a process.
//
// After Close every method returns an error wrapping lock.ErrClosed.
type Coordinator struct {
	now    func() time.Time
	prefix string // makes session ids unique across coordinators in a process

	mu       sync.Mutex
	closed   bool
	token    uint64 // last token granted
	nextID   uint64 // last session number
	sessions map[lock.SessionID]*session
	locks    map[string]*grant
}

type session struct {
	id       lock.SessionID
	owner    string
	ttl      time.Duration
	deadline time.Time // lapsed from this instant on
	locks    map[string]struct{}
}

type grant struct {
	s     *session
	token uint64
}

var coordinators atomic.Uint64

// NewCoordinator returns an empty coordinator.
func NewCoordinator(opts CoordinatorOptions) *Coordinator {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Coordinator{
		now:      now,
		prefix:   fmt.Sprintf("inmem-%d-", coordinators.Add(1)),
		sessions: make(map[lock.SessionID]*session),
		locks:    make(map[string]*grant),
	}
}

// enter checks ctx and Close. The caller holds c.mu.
func (c *Coordinator) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("inmem: %s: %w", op, err)
	}
	if c.closed {
		return fmt.Errorf("inmem: %s: %w", op, lock.ErrClosed)
	}
	return nil
}

// live returns the session if it exists and has not lapsed at now; a lapsed
// session is removed with its locks. The caller holds c.mu.
func (c *Coordinator) live(id lock.SessionID, now time.Time) *session {
	s := c.sessions[id]
	if s == nil {
		return nil
	}
	if !now.Before(s.deadline) {
		c.drop(s)
		return nil
	}
	return s
}

// drop removes s and frees its locks. The caller holds c.mu.
func (c *Coordinator) drop(s *session) {
	for key := range s.locks {
		delete(c.locks, key)
	}
	delete(c.sessions, s.id)
}

// holder returns the live grant of key, removing it if its session lapsed.
// The caller holds c.mu.
func (c *Coordinator) holder(key string, now time.Time) *grant {
	g := c.locks[key]
	if g == nil {
		return nil
	}
	if c.live(g.s.id, now) == nil {
		return nil
	}
	return g
}

// CreateSession implements lock.Coordinator.
func (c *Coordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "create session"); err != nil {
		return "", err
	}
	if owner == "" {
		return "", fmt.Errorf("inmem: create session: empty owner: %w", lock.ErrInvalid)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("inmem: create session for %q: ttl %v: %w", owner, ttl, lock.ErrInvalid)
	}
	now := c.now()
	for _, s := range c.sessions { // sweep: sessions are few (one per node)
		if !now.Before(s.deadline) {
			c.drop(s)
		}
	}
	c.nextID++
	s := &session{
		id:       lock.SessionID(fmt.Sprintf("%s%d", c.prefix, c.nextID)),
		owner:    owner,
		ttl:      ttl,
		deadline: now.Add(ttl),
		locks:    make(map[string]struct{}),
	}
	c.sessions[s.id] = s
	return s.id, nil
}

// Renew implements lock.Coordinator.
func (c *Coordinator) Renew(ctx context.Context, id lock.SessionID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "renew"); err != nil {
		return err
	}
	now := c.now()
	s := c.live(id, now)
	if s == nil {
		return fmt.Errorf("inmem: renew %s: %w", id, lock.ErrSessionExpired)
	}
	s.deadline = now.Add(s.ttl)
	return nil
}

// DestroySession implements lock.Coordinator.
func (c *Coordinator) DestroySession(ctx context.Context, id lock.SessionID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "destroy session"); err != nil {
		return err
	}
	if s := c.sessions[id]; s != nil {
		c.drop(s)
	}
	return nil
}

// Acquire implements lock.Coordinator.
func (c *Coordinator) Acquire(ctx context.Context, id lock.SessionID, key string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "acquire"); err != nil {
		return 0, err
	}
	if key == "" {
		return 0, fmt.Errorf("inmem: acquire: empty key: %w", lock.ErrInvalid)
	}
	now := c.now()
	s := c.live(id, now)
	if s == nil {
		return 0, fmt.Errorf("inmem: acquire %q: session %s: %w", key, id, lock.ErrSessionExpired)
	}
	if g := c.holder(key, now); g != nil {
		if g.s == s {
			return g.token, nil
		}
		return 0, &lock.HeldError{Key: key, Holder: g.s.owner, Token: g.token}
	}
	c.token++
	c.locks[key] = &grant{s: s, token: c.token}
	s.locks[key] = struct{}{}
	return c.token, nil
}

// Release implements lock.Coordinator.
func (c *Coordinator) Release(ctx context.Context, id lock.SessionID, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "release"); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("inmem: release: empty key: %w", lock.ErrInvalid)
	}
	g := c.holder(key, c.now())
	if g == nil || g.s.id != id {
		return fmt.Errorf("inmem: release %q: session %s: %w", key, id, lock.ErrNotHeld)
	}
	delete(c.locks, key)
	delete(g.s.locks, key)
	return nil
}

// Holder implements lock.Coordinator.
func (c *Coordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enter(ctx, "holder"); err != nil {
		return lock.LockInfo{}, false, err
	}
	if key == "" {
		return lock.LockInfo{}, false, fmt.Errorf("inmem: holder: empty key: %w", lock.ErrInvalid)
	}
	g := c.holder(key, c.now())
	if g == nil {
		return lock.LockInfo{}, false, nil
	}
	return lock.LockInfo{Key: key, Session: g.s.id, Owner: g.s.owner, Token: g.token}, true, nil
}

// Close implements lock.Coordinator: later calls return lock.ErrClosed.
// Sessions are kept as they are; Close may be called more than once.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}
