package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

// mode is how the test double answers.
type mode int

const (
	up   mode = iota // pass calls through to the real coordinator
	fail             // answer at once with errUnavailable
	hang             // block until the caller's context ends (a lost request)
	deaf             // block, ignoring the context, until release; then pass through (a late reply)
)

var errUnavailable = errors.New("double: coordinator unreachable")

// double wraps a real coordinator so a test can make CreateSession, Renew
// and DestroySession fail or block.
type double struct {
	lock.Coordinator
	mu      sync.Mutex
	mode    mode
	release chan struct{}          // for deaf: closed to let blocked calls through
	started chan string            // each blocking call reports its name here
	calls   map[string]int         // calls by name
	renewed map[lock.SessionID]int // successful renewals
	during  func()                 // if set, called inside Renew before it reaches the coordinator
}

func newDouble(c lock.Coordinator) *double {
	return &double{
		Coordinator: c,
		release:     make(chan struct{}),
		started:     make(chan string, 1000),
		calls:       map[string]int{},
		renewed:     map[lock.SessionID]int{},
	}
}

func (d *double) set(m mode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode == deaf && m != deaf {
		close(d.release)
		d.release = make(chan struct{})
	}
	d.mode = m
}

func (d *double) count(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[op]
}

func (d *double) gate(ctx context.Context, op string) error {
	d.mu.Lock()
	m, release := d.mode, d.release
	d.calls[op]++
	d.mu.Unlock()
	switch m {
	case fail:
		return fmt.Errorf("%s: %w", op, errUnavailable)
	case hang:
		d.started <- op
		<-ctx.Done()
		return fmt.Errorf("%s: %w", op, context.Cause(ctx))
	case deaf:
		d.started <- op
		<-release
	}
	return nil
}

func (d *double) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	if err := d.gate(ctx, "create"); err != nil {
		return "", err
	}
	return d.Coordinator.CreateSession(context.WithoutCancel(ctx), owner, ttl)
}

func (d *double) Renew(ctx context.Context, s lock.SessionID) error {
	if err := d.gate(ctx, "renew"); err != nil {
		return err
	}
	d.mu.Lock()
	during := d.during
	d.mu.Unlock()
	if during != nil {
		during()
	}
	err := d.Coordinator.Renew(context.WithoutCancel(ctx), s)
	if err == nil {
		d.mu.Lock()
		d.renewed[s]++
		d.mu.Unlock()
	}
	return err
}

func (d *double) DestroySession(ctx context.Context, s lock.SessionID) error {
	if err := d.gate(ctx, "destroy"); err != nil {
		return err
	}
	return d.Coordinator.DestroySession(context.WithoutCancel(ctx), s)
}

// awaitStarted waits for the double to report a blocking call named op.
func (d *double) awaitStarted(t *testing.T, op string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-d.started:
			if got == op {
				return
			}
		case <-timeout:
			t.Fatalf("no blocking %s call started", op)
		}
	}
}

// fixture is a keeper on a double of an inmem coordinator, all on a fake clock.
type fixture struct {
	clk   *locktest.FakeClock
	real  *inmem.Coordinator
	coord *double
	cfg   lock.KeeperConfig
	k     *lock.Keeper
	t0    time.Time
}

const (
	ttl      = 10 * time.Second
	interval = 3 * time.Second
	margin   = time.Second
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := locktest.NewFakeClock(time.Time{})
	real := inmem.NewCoordinator(inmem.CoordinatorOptions{Now: clk.Now})
	t.Cleanup(func() { _ = real.Close() })
	f := &fixture{clk: clk, real: real, coord: newDouble(real), t0: clk.Now()}
	f.cfg = lock.KeeperConfig{
		TTL:            ttl,
		RenewInterval:  interval,
		SafetyMargin:   margin,
		RequestTimeout: 2 * time.Second,
		RetryMin:       100 * time.Millisecond,
		RetryMax:       time.Second,
		Now:            clk.Now,
		AfterFunc:      clk.AfterFunc,
	}
	f.k = lock.NewKeeper(f.coord, "node-a", f.cfg, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.coord.set(up)
		if err := f.k.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

func (f *fixture) start(t *testing.T) lock.SessionID {
	t.Helper()
	if err := f.k.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The goroutine arms its first renewal; the watchdog is already armed.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.clk.WaitPending(ctx, 2); err != nil {
		t.Fatalf("keeper did not arm its timers: %v", err)
	}
	return f.k.Session()
}

// at is the fake time t0+d.
func (f *fixture) at(d time.Duration) time.Time { return f.t0.Add(d) }

// sentAt is the send time of the keeper's last successful renewal.
func (f *fixture) sentAt() time.Time {
	s, _ := f.k.Lease().SentAt()
	return s
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// renewOnce advances to the next renewal and waits until the keeper has
// recorded it.
func (f *fixture) renewOnce(t *testing.T) {
	t.Helper()
	f.clk.Advance(interval)
	now := f.clk.Now()
	waitFor(t, fmt.Sprintf("a renewal sent at +%v", now.Sub(f.t0)), func() bool { return f.sentAt().Equal(now) })
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestKeeperRenewalsKeepSession(t *testing.T) {
	f := newFixture(t)
	s := f.start(t)
	if !f.k.Valid() {
		t.Fatal("Valid() = false right after Start")
	}
	if got := f.sentAt(); !got.Equal(f.t0) {
		t.Fatalf("lease counts from %v; want the CreateSession send time %v", got, f.t0)
	}
	if got, want := f.k.Lease().ValidUntil(), f.at(ttl-margin); !got.Equal(want) {
		t.Fatalf("ValidUntil = +%v; want +%v", got.Sub(f.t0), want.Sub(f.t0))
	}
	tok, err := f.real.Acquire(t.Context(), s, "actor")
	if err != nil {
		t.Fatal(err)
	}
	e := f.k.Epoch()
	for i := 1; i <= 10; i++ { // 30s: three TTLs
		f.renewOnce(t)
		if !f.k.Valid() || f.k.Session() != s {
			t.Fatalf("renewal %d: Valid = %v, Session = %s; want true, %s", i, f.k.Valid(), f.k.Session(), s)
		}
		if got, want := f.k.Lease().ValidUntil(), f.at(time.Duration(i)*interval+ttl-margin); !got.Equal(want) {
			t.Fatalf("renewal %d: ValidUntil = +%v; want +%v", i, got.Sub(f.t0), want.Sub(f.t0))
		}
	}
	if closed(e.Lapsed()) {
		t.Fatal("the epoch lapsed although every renewal succeeded")
	}
	info, ok, err := f.real.Holder(t.Context(), "actor")
	if err != nil || !ok || info.Session != s || info.Token != tok {
		t.Fatalf("Holder = %+v, %v, %v; want session %s, token %d", info, ok, err, s, tok)
	}
	if got := f.coord.count("create"); got != 1 {
		t.Fatalf("CreateSession called %d times; want 1", got)
	}
}

// The lease counts from when a renewal was sent, not from when the reply
// came: the coordinator's TTL started somewhere in between.
func TestKeeperLeaseCountsFromSend(t *testing.T) {
	f := newFixture(t)
	s := f.start(t)
	const transit = time.Second
	f.coord.mu.Lock()
	f.coord.during = func() { f.clk.Advance(transit) } // the request takes a second to arrive
	f.coord.mu.Unlock()
	f.clk.Advance(interval) // renewal sent at +3s, processed at +4s
	waitFor(t, "the renewal sent at +3s", func() bool { return f.sentAt().Equal(f.at(interval)) })
	if got, want := f.k.Lease().ValidUntil(), f.at(interval+ttl-margin); !got.Equal(want) {
		t.Fatalf("ValidUntil = +%v; want +%v (send time + TTL - margin)", got.Sub(f.t0), want.Sub(f.t0))
	}
	// The coordinator keeps the session until +14s; the node gives up at +12s.
	f.coord.mu.Lock()
	f.coord.during = nil
	f.coord.mu.Unlock()
	f.coord.set(fail)
	f.clk.Advance(ttl - margin - transit) // +12s
	if f.k.Valid() {
		t.Fatalf("valid at send time + TTL - margin: now +%v, session %s (was %s), lease sent +%v until +%v; calls %v",
			f.clk.Now().Sub(f.t0), f.k.Session(), s, f.sentAt().Sub(f.t0), f.k.Lease().ValidUntil().Sub(f.t0), f.coord.calls)
	}
	if err := f.real.Renew(t.Context(), s); err != nil {
		t.Fatalf("the coordinator lapsed the session before the node did: %v", err)
	}
}

func TestKeeperLapsesWhenRenewalsStop(t *testing.T) {
	for _, m := range []struct {
		name string
		mode mode
	}{
		{"renewals fail", fail},
		{"renewals block", hang},
	} {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t)
			s1 := f.start(t)
			if _, err := f.real.Acquire(t.Context(), s1, "actor"); err != nil {
				t.Fatal(err)
			}
			e1 := f.k.Epoch()
			f.renewOnce(t) // last successful renewal sent at +3s: valid until +12s

			f.coord.set(m.mode)
			f.clk.Advance(interval) // +6s: the renewal fails or hangs
			if m.mode == hang {
				f.coord.awaitStarted(t, "renew")
			}
			f.clk.Advance(ttl - margin - interval - 1) // +12s - 1ns
			if !f.k.Valid() || !e1.Valid() || closed(e1.Lapsed()) {
				t.Fatalf("just before TTL-margin after the last successful send: Valid = %v, lapsed = %v; want valid",
					f.k.Valid(), closed(e1.Lapsed()))
			}
			if !f.sentAt().Equal(f.at(interval)) {
				t.Fatalf("lease moved to +%v without a successful renewal", f.sentAt().Sub(f.t0))
			}

			f.clk.Advance(1) // +12s: the lease runs out on the node's clock
			if f.k.Valid() || e1.Valid() {
				t.Fatal("Valid() = true at TTL-margin after the last successful send")
			}
			if !closed(e1.Lapsed()) {
				t.Fatal("the epoch's Lapsed channel is not closed when the lease ran out")
			}
			// The node stopped before the coordinator frees the lock (at +13s).
			if info, ok, _ := f.real.Holder(t.Context(), "actor"); !ok || info.Session != s1 {
				t.Fatalf("the coordinator freed the lock before the node's lease ran out: %+v, %v", info, ok)
			}

			// The coordinator answers again: a new session follows.
			f.coord.set(up)
			waitFor(t, "a new session", func() bool {
				if e := f.k.Epoch(); e.Session() != s1 && e.Valid() {
					return true
				}
				f.clk.Advance(f.cfg.RetryMin)
				return false
			})
			e2 := f.k.Epoch()
			if e2 == e1 || closed(e2.Lapsed()) || e1.Valid() {
				t.Fatalf("after recovery: new epoch lapsed = %v, old epoch valid = %v", closed(e2.Lapsed()), e1.Valid())
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if got, err := f.k.Wait(ctx); err != nil || got.Session() != e2.Session() {
				t.Fatalf("Wait = %v, %v; want the new epoch", got, err)
			}
			// The old session's lock is free (destroyed, or lapsed at the coordinator).
			f.clk.Advance(margin)
			if info, ok, _ := f.real.Holder(t.Context(), "actor"); ok {
				t.Fatalf("the lapsed session still holds the lock: %+v", info)
			}
			if err := f.real.Renew(t.Context(), s1); !errors.Is(err, lock.ErrSessionExpired) {
				t.Fatalf("Renew of the old session: %v; want ErrSessionExpired", err)
			}
		})
	}
}

func TestKeeperLateRenewalDoesNotRevive(t *testing.T) {
	f := newFixture(t)
	s1 := f.start(t)
	e1 := f.k.Epoch()
	f.coord.set(deaf) // Renew ignores its context, then succeeds late
	f.clk.Advance(interval)
	f.coord.awaitStarted(t, "renew")
	f.clk.Advance(ttl - margin - interval) // +9s: the lease from +0 runs out
	if f.k.Valid() || !closed(e1.Lapsed()) {
		t.Fatal("lease ran out but the epoch did not lapse")
	}
	f.coord.set(up) // the late Renew goes through (sent at +3s, answered at +9s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	e2, err := f.k.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if e2.Session() == s1 {
		t.Fatal("the late renewal revived the lapsed session")
	}
	if e1.Valid() {
		t.Fatal("the lapsed epoch is valid again")
	}
	f.coord.mu.Lock()
	renewed := f.coord.renewed[s1]
	f.coord.mu.Unlock()
	if renewed != 1 {
		t.Fatalf("the late renewal of %s succeeded %d times at the coordinator; want 1", s1, renewed)
	}
	// The keeper destroyed the old session, which the late renewal had kept
	// alive at the coordinator.
	if err := f.real.Renew(t.Context(), s1); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew of the old session: %v; want ErrSessionExpired (destroyed)", err)
	}
}

func TestKeeperSessionExpiredAtCoordinator(t *testing.T) {
	f := newFixture(t)
	s1 := f.start(t)
	e1 := f.k.Epoch()
	// The coordinator loses the session (say, it was destroyed by an operator).
	if err := f.real.DestroySession(t.Context(), s1); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(interval) // the next Renew gets ErrSessionExpired
	select {
	case <-e1.Lapsed():
	case <-time.After(10 * time.Second):
		t.Fatal("no lapse notification after Renew returned ErrSessionExpired")
	}
	if e1.Valid() {
		t.Fatal("lapsed epoch is valid")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	e2, err := f.k.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if e2.Session() == s1 || !e2.Valid() {
		t.Fatalf("new epoch: session %s (old %s), valid %v", e2.Session(), s1, e2.Valid())
	}
	if sent, _ := e2.Lease().SentAt(); !sent.Equal(f.at(interval)) {
		t.Fatalf("new lease counts from +%v; want +%v", sent.Sub(f.t0), interval)
	}
	if err := f.real.Renew(t.Context(), e2.Session()); err != nil {
		t.Fatalf("the new session is not live at the coordinator: %v", err)
	}
}

func TestKeeperClose(t *testing.T) {
	f := newFixture(t)
	s := f.start(t)
	e := f.k.Epoch()
	ctx := t.Context()
	if err := f.k.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if f.k.Valid() || e.Valid() || !closed(e.Lapsed()) {
		t.Fatal("the epoch is still live after Close")
	}
	if err := f.real.Renew(ctx, s); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew after Close: %v; want ErrSessionExpired (Close destroys the session)", err)
	}
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("%d timers still pending after Close", n)
	}
	if err := f.k.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := f.coord.count("destroy"); got != 1 {
		t.Fatalf("DestroySession called %d times; want 1", got)
	}
	if err := f.k.Start(ctx); !errors.Is(err, lock.ErrKeeperClosed) {
		t.Fatalf("Start after Close: %v; want ErrKeeperClosed", err)
	}
	if _, err := f.k.Wait(ctx); !errors.Is(err, lock.ErrKeeperClosed) {
		t.Fatalf("Wait after Close: %v; want ErrKeeperClosed", err)
	}
}

func TestKeeperCloseCancelsBlockedRenewal(t *testing.T) {
	f := newFixture(t)
	s := f.start(t)
	f.coord.set(hang)
	f.clk.Advance(interval)
	f.coord.awaitStarted(t, "renew")
	f.coord.set(up) // the hung Renew stays hung; DestroySession goes through
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.k.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.real.Renew(ctx, s); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew after Close: %v; want ErrSessionExpired", err)
	}
}

func TestKeeperCloseBeforeStart(t *testing.T) {
	f := newFixture(t)
	if err := f.k.Close(t.Context()); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if f.k.Valid() || f.k.Session() != "" {
		t.Fatal("a keeper never started reports a session")
	}
	if got := f.coord.count("destroy"); got != 0 {
		t.Fatalf("DestroySession called %d times; want 0", got)
	}
}

func TestKeeperStartRetries(t *testing.T) {
	f := newFixture(t)
	if f.k.Valid() || closed(f.k.Epoch().Lapsed()) == false {
		t.Fatal("before Start: the keeper has a live epoch")
	}
	f.coord.set(fail)
	errc := make(chan error, 1)
	go func() { errc <- f.k.Start(t.Context()) }()
	waitFor(t, "three failed CreateSession calls", func() bool {
		if f.coord.count("create") >= 3 {
			return true
		}
		f.clk.Advance(f.cfg.RetryMin)
		return false
	})
	f.coord.set(up)
	var err error
	waitFor(t, "Start to return", func() bool {
		select {
		case err = <-errc:
			return true
		default:
			f.clk.Advance(f.cfg.RetryMin)
			return false
		}
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !f.k.Valid() {
		t.Fatal("not valid after Start")
	}
}

func TestKeeperStartGivesUpWithContext(t *testing.T) {
	f := newFixture(t)
	f.coord.set(fail)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- f.k.Start(ctx) }()
	waitFor(t, "a CreateSession call", func() bool { return f.coord.count("create") >= 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errUnavailable) {
			t.Fatalf("Start = %v; want it to wrap context.Canceled and the last error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context was cancelled")
	}
	// A failed Start may be tried again.
	f.coord.set(up)
	if err := f.k.Start(t.Context()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if err := f.k.Start(t.Context()); !errors.Is(err, lock.ErrInvalid) {
		t.Fatalf("Start of a started keeper: %v; want ErrInvalid", err)
	}
}

func TestKeeperStartRejects(t *testing.T) {
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer c.Close()
	bad := lock.DefaultKeeperConfig()
	bad.TTL = 0
	for _, tc := range []struct {
		name  string
		c     lock.Coordinator
		owner string
		cfg   lock.KeeperConfig
	}{
		{"empty owner", c, "", lock.DefaultKeeperConfig()},
		{"nil coordinator", nil, "node-a", lock.DefaultKeeperConfig()},
		{"bad config", c, "node-a", bad},
	} {
		k := lock.NewKeeper(tc.c, tc.owner, tc.cfg, nil)
		if err := k.Start(t.Context()); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("%s: Start = %v; want ErrInvalid", tc.name, err)
		}
		if err := k.Close(t.Context()); err != nil {
			t.Errorf("%s: Close: %v", tc.name, err)
		}
	}
}

func TestKeeperConfigValidate(t *testing.T) {
	clk := locktest.NewFakeClock(time.Time{})
	for _, tc := range []struct {
		name   string
		modify func(*lock.KeeperConfig)
		want   []string // substrings, one per reported problem; nil: valid
	}{
		{"default", func(*lock.KeeperConfig) {}, nil},
		{"for a 30s TTL", func(c *lock.KeeperConfig) { *c = lock.KeeperConfigForTTL(30 * time.Second) }, nil},
		{"for a 100ms TTL", func(c *lock.KeeperConfig) { *c = lock.KeeperConfigForTTL(100 * time.Millisecond) }, nil},
		{"fake clock", func(c *lock.KeeperConfig) { c.Now, c.AfterFunc = clk.Now, clk.AfterFunc }, nil},
		{"zero TTL", func(c *lock.KeeperConfig) { c.TTL = 0 }, []string{"TTL must be positive"}},
		{"interval at TTL/2", func(c *lock.KeeperConfig) { c.RenewInterval = c.TTL / 2 }, []string{"less than TTL/2"}},
		{"zero interval", func(c *lock.KeeperConfig) { c.RenewInterval = 0 }, []string{"RenewInterval must be positive"}},
		{"negative margin", func(c *lock.KeeperConfig) { c.SafetyMargin = -1 }, []string{"must not be negative"}},
		{"margin at TTL/2", func(c *lock.KeeperConfig) { c.SafetyMargin = c.TTL / 2 }, []string{"SafetyMargin must be less than TTL/2"}},
		{"no room for two renewals", func(c *lock.KeeperConfig) {
			c.TTL, c.RenewInterval, c.SafetyMargin = 10*time.Second, 4*time.Second, 3*time.Second
		}, []string{"no room for two renewals"}},
		{"zero request timeout", func(c *lock.KeeperConfig) { c.RequestTimeout = 0 }, []string{"RequestTimeout"}},
		{"retry bounds", func(c *lock.KeeperConfig) { c.RetryMin, c.RetryMax = 0, -1 }, []string{"RetryMin", "RetryMax"}},
		{"only Now injected", func(c *lock.KeeperConfig) { c.Now = clk.Now }, []string{"Now and AfterFunc"}},
		{"every problem at once", func(c *lock.KeeperConfig) { *c = lock.KeeperConfig{AfterFunc: clk.AfterFunc} },
			[]string{"TTL must be positive", "RenewInterval must be positive", "RequestTimeout", "RetryMin", "Now and AfterFunc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lock.DefaultKeeperConfig()
			tc.modify(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, lock.ErrInvalid) {
				t.Fatalf("Validate() = %v; want errors.Is ErrInvalid", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %v; want it to mention %q", err, s)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("Validate() reported %d problems; want %d: %v", got, len(tc.want), err)
			}
		})
	}
}

func TestDefaultKeeperConfig(t *testing.T) {
	c := lock.DefaultKeeperConfig()
	want := lock.KeeperConfig{
		TTL:            5 * time.Second,
		RenewInterval:  5 * time.Second / 3,
		SafetyMargin:   500 * time.Millisecond,
		RequestTimeout: 5 * time.Second / 3,
		RetryMin:       100 * time.Millisecond,
		RetryMax:       5 * time.Second / 3,
	}
	if c.TTL != want.TTL || c.RenewInterval != want.RenewInterval || c.SafetyMargin != want.SafetyMargin ||
		c.RequestTimeout != want.RequestTimeout || c.RetryMin != want.RetryMin || c.RetryMax != want.RetryMax ||
		c.Now != nil || c.AfterFunc != nil {
		t.Fatalf("DefaultKeeperConfig() = %+v; want %+v", c, want)
	}
}

// On the real clock, end to end, with a short TTL: the keeper renews (the
// lease moves forward twice) and the session stays the same.
func TestKeeperRealClock(t *testing.T) {
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer c.Close()
	k := lock.NewKeeper(c, "node-a", lock.KeeperConfigForTTL(1500*time.Millisecond), nil)
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, e := k.Session(), k.Epoch()
	first, _ := e.Lease().SentAt()
	for n := 0; n < 2; {
		select {
		case <-e.Lapsed():
			t.Fatal("session lapsed while the coordinator answered")
		case <-time.After(10 * time.Millisecond):
		}
		if sent, _ := e.Lease().SentAt(); sent.After(first) {
			first, n = sent, n+1
		}
	}
	if k.Session() != s || !k.Valid() {
		t.Fatalf("session %s (was %s), valid %v", k.Session(), s, k.Valid())
	}
	if err := c.Renew(t.Context(), s); err != nil {
		t.Fatalf("session not live at the coordinator: %v", err)
	}
	if err := k.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if k.Valid() || !closed(e.Lapsed()) {
		t.Fatal("valid after Close")
	}
	if err := c.Renew(t.Context(), s); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew after Close: %v; want ErrSessionExpired", err)
	}
}

func BenchmarkKeeperValid(b *testing.B) {
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer c.Close()
	k := lock.NewKeeper(c, "node-a", lock.KeeperConfigForTTL(time.Minute), nil)
	if err := k.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer k.Close(context.Background())
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if !k.Valid() {
				b.Fatal("not valid")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !k.Valid() {
					b.Fatal("not valid")
				}
			}
		})
	})
	b.Run("epoch", func(b *testing.B) {
		e := k.Epoch()
		for b.Loop() {
			if !e.Valid() {
				b.Fatal("not valid")
			}
		}
	})
}

func ExampleKeeper() {
	coord := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer coord.Close()
	ctx := context.Background()

	k := lock.NewKeeper(coord, "node-1", lock.DefaultKeeperConfig(), nil)
	if err := k.Start(ctx); err != nil {
		panic(err)
	}
	defer k.Close(ctx)

	// Activate an actor under the current session...
	e := k.Epoch()
	token, err := coord.Acquire(ctx, e.Session(), "counter/42")
	if err != nil {
		panic(err)
	}
	fmt.Println("token:", token)

	// ...and before each turn check that the session is certainly alive;
	// e.Lapsed() is closed the moment it may not be.
	fmt.Println("valid:", e.Valid())
	select {
	case <-e.Lapsed():
		fmt.Println("lapsed: deactivate the actor")
	default:
	}
	// Output:
	// token: 1
	// valid: true
}
