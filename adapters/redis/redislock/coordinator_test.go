package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

var prefixes atomic.Uint64

// uniquePrefix returns a key prefix no other coordinator of this test
// binary uses.
func uniquePrefix() string { return fmt.Sprintf("t%d:", prefixes.Add(1)) }

// newTestCoordinator returns a coordinator on the test clock, on srv, with
// prefix; closed when t ends.
func newTestCoordinator(t testing.TB, srv *redistest.Server, prefix string) *redislock.Coordinator {
	t.Helper()
	c, err := redislock.NewTestClock(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// advancer moves the test clock of c's prefix, failing t on error. It uses
// its own client, so it works after c is closed.
func advancer(t *testing.T, srv *redistest.Server, c *redislock.Coordinator) func(time.Duration) {
	raw := srv.Client()
	key := c.ClockOffsetKey()
	return func(d time.Duration) {
		t.Helper()
		if err := raw.IncrBy(context.Background(), key, d.Milliseconds()).Err(); err != nil {
			t.Fatalf("advance %v: %v", d, err)
		}
	}
}

// TestConformance runs locktest against one real redis-server; each
// subtest has its own key prefix, hence its own keys and clock.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		c := newTestCoordinator(t, srv, uniquePrefix())
		return c, advancer(t, srv, c)
	})
}

// TestConformanceRealClock runs locktest against the production scripts,
// on Redis's own clock: advance lets the time pass (sleeps), as locktest
// describes for real-clock backends, so this takes about half a minute.
func TestConformanceRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("sleeps about 30 s; TestConformance runs the same suite on the test clock")
	}
	srv := redistest.Start(t, redistest.Options{})
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: uniquePrefix()}})
		if err != nil {
			t.Fatal(err)
		}
		return c, time.Sleep
	})
}

// TestProductionClockIgnoresOffset: a coordinator built by New reads only
// Redis's TIME; the test clock's key does not move it.
func TestProductionClockIgnoresOffset(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	prefix := uniquePrefix()
	test := newTestCoordinator(t, srv, prefix)
	prod, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := t.Context()
	s, err := prod.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := prod.Acquire(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	advancer(t, srv, test)(time.Hour)
	// The test clock is an hour ahead: it sees the session lapsed.
	if _, ok, err := test.Holder(ctx, "k"); err != nil || ok {
		t.Fatalf("test-clock Holder = %v, %v; want free (an hour past the TTL)", ok, err)
	}
	// The production coordinator, on TIME alone, still sees it alive.
	if err := prod.Renew(ctx, s); err != nil {
		t.Fatalf("production Renew after the offset moved: %v; want nil", err)
	}
	info, ok, err := prod.Holder(ctx, "k")
	if err != nil || !ok || info.Token != tok {
		t.Fatalf("production Holder = %+v, %v, %v; want held with token %d", info, ok, err, tok)
	}
}

// TestRealClockExpiry: on the production clock, a session that is not
// renewed lapses after its TTL on the server's clock, never before. It
// polls for the lapse, with a deadline.
func TestRealClockExpiry(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: uniquePrefix()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	const ttl = 500 * time.Millisecond
	sent := time.Now()
	s, err := c.CreateSession(ctx, "node-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Acquire(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := c.Holder(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock still held %v after CreateSession with TTL %v", time.Since(sent), ttl)
		}
		time.Sleep(10 * time.Millisecond) // polling interval for a condition with a deadline
	}
	// The server started counting after we sent CreateSession, so the lapse
	// cannot be seen earlier than TTL after the send (minus 1 ms rounding).
	if el := time.Since(sent); el < ttl-time.Millisecond {
		t.Fatalf("lock freed %v after CreateSession; TTL is %v", el, ttl)
	}
	if err := c.Renew(ctx, s); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew after the lapse: %v; want ErrSessionExpired", err)
	}
	s2, err := c.CreateSession(ctx, "node-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if tok2, err := c.Acquire(ctx, s2, "k"); err != nil || tok2 <= tok {
		t.Fatalf("Acquire after the lapse = %d, %v; want > %d", tok2, err, tok)
	}
}

// TestTokensSurviveKillAndRestart: with appendfsync always, every grant
// and token increment Redis acknowledged survives kill -9 of
// redis-server: after each restart, the holder still holds its lock with
// its token, and the next grant's token is higher than every earlier one.
func TestTokensSurviveKillAndRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{}) // appendfsync always
	c := newTestCoordinator(t, srv, uniquePrefix())
	ctx := t.Context()
	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const k = "actor"
	var last uint64
	grant := func(s lock.SessionID) uint64 {
		t.Helper()
		tok, err := c.Acquire(ctx, s, k)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		if tok <= last {
			t.Fatalf("token %d after %d: not increasing", tok, last)
		}
		last = tok
		return tok
	}
	for restart := range 3 {
		for range 20 { // grants and releases between crashes
			grant(a)
			if err := c.Release(ctx, a, k); err != nil {
				t.Fatal(err)
			}
		}
		held := grant(a) // acknowledged right before the crash
		srv.Kill()
		_, err := c.Acquire(ctx, a, k)
		if !errors.Is(err, redislock.ErrUnavailable) && !errors.Is(err, redislock.ErrUnknownOutcome) {
			t.Fatalf("Acquire with redis-server killed: %v; want ErrUnavailable or ErrUnknownOutcome", err)
		}
		if !strings.Contains(err.Error(), srv.Addr) {
			t.Errorf("error %q does not name the server %s", err, srv.Addr)
		}
		srv.Restart()
		// The session (a minute's TTL) and its grant survived.
		if tok, err := c.Acquire(ctx, a, k); err != nil || tok != held {
			t.Fatalf("restart %d: re-Acquire by the holder = %d, %v; want its token %d", restart, tok, err, held)
		}
		if err := c.Release(ctx, a, k); err != nil {
			t.Fatal(err)
		}
		b, err := c.CreateSession(ctx, "node-b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		grant(b)
		if err := c.DestroySession(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if last < 3*22 {
		t.Fatalf("last token %d; want at least %d grants", last, 3*22)
	}
}

// TestTokensIncreaseAcrossExpiryAndSweep: after a holder's session lapses
// and the sweep has deleted everything it left, the token counter is still
// there and the next grant's token is higher.
func TestTokensIncreaseAcrossExpiryAndSweep(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := newTestCoordinator(t, srv, uniquePrefix())
	advance := advancer(t, srv, c)
	raw := srv.Client()
	ctx := t.Context()
	const ttl = 2 * time.Second
	keys := []string{"k1", "k2", "k3"}
	var last [3]uint64
	for round := range 5 {
		a, err := c.CreateSession(ctx, fmt.Sprintf("node-%d", round), ttl)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			tok, err := c.Acquire(ctx, a, k)
			if err != nil {
				t.Fatal(err)
			}
			if tok <= last[i] {
				t.Fatalf("round %d, %s: token %d after %d", round, k, tok, last[i])
			}
			last[i] = tok
		}
		advance(ttl)
		// Creating a session sweeps the lapsed one: its keys go...
		b, err := c.CreateSession(ctx, "sweeper", ttl)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{c.Base() + "s:" + string(a), c.Base() + "sl:" + string(a), c.Base() + "l:k1"} {
			if n, err := raw.Exists(ctx, key).Result(); err != nil || n != 0 {
				t.Fatalf("round %d: %s exists (%d, %v) after the sweep", round, key, n, err)
			}
		}
		if n, err := raw.ZScore(ctx, c.Base()+"sessions", string(a)).Result(); err == nil {
			t.Fatalf("round %d: lapsed session still indexed (score %v)", round, n)
		}
		// ...but the token counters stay.
		for i, k := range keys {
			n, err := raw.Get(ctx, c.Base()+"t:"+k).Uint64()
			if err != nil || n != last[i] {
				t.Fatalf("round %d: token counter of %s = %d, %v; want %d", round, k, n, err, last[i])
			}
		}
		if err := c.DestroySession(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSweepIsBounded: a lapsed session with more locks than one sweep
// deletes is cleaned up over several calls, and its locks are free from
// the lapse on, before their keys are gone.
func TestSweepIsBounded(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := newTestCoordinator(t, srv, uniquePrefix())
	advance := advancer(t, srv, c)
	raw := srv.Client()
	ctx := t.Context()
	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500 // 2.5 sweeps' budget
	for i := range n {
		if _, err := c.Acquire(ctx, a, fmt.Sprintf("k%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	advance(time.Minute)
	b, err := c.CreateSession(ctx, "node-b", time.Hour) // sweeps 1000
	if err != nil {
		t.Fatal(err)
	}
	left, err := raw.SCard(ctx, c.Base()+"sl:"+string(a)).Result()
	if err != nil || left != n-1000 {
		t.Fatalf("after one sweep, the lapsed session lists %d locks (%v); want %d", left, err, n-1000)
	}
	if _, ok, err := c.Holder(ctx, "k2499"); err != nil || ok {
		t.Fatalf("Holder of a lapsed session's lock = %v, %v; want free", ok, err)
	}
	for range 2 {
		if err := c.Renew(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{c.Base() + "s:" + string(a), c.Base() + "sl:" + string(a)} {
		if n, err := raw.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Fatalf("%s exists (%d, %v) after three sweeps", key, n, err)
		}
	}
	if n, err := raw.Keys(ctx, c.Base()+"l:*").Result(); err != nil || len(n) != 0 {
		t.Fatalf("%d lock keys left after three sweeps (%v)", len(n), err)
	}
}

// TestTwoClientsRace: two coordinators, each with its own client and
// connection pool, race sessions of theirs for one key; every round
// exactly one session wins, the others see it in their *HeldError, and
// tokens strictly increase.
func TestTwoClientsRace(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	prefix := uniquePrefix()
	coords := []*redislock.Coordinator{newTestCoordinator(t, srv, prefix), newTestCoordinator(t, srv, prefix)}
	ctx := t.Context()
	const perCoord, rounds = 4, 100
	type racer struct {
		c     *redislock.Coordinator
		s     lock.SessionID
		owner string
	}
	var racers []racer
	for i, c := range coords {
		for j := range perCoord {
			owner := fmt.Sprintf("client%d-node%d", i, j)
			s, err := c.CreateSession(ctx, owner, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			racers = append(racers, racer{c, s, owner})
		}
	}
	const k = "contended"
	var last uint64
	type result struct {
		tok uint64
		err error
	}
	for round := range rounds {
		results := make([]result, len(racers))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range racers {
			wg.Go(func() {
				<-start
				tok, err := r.c.Acquire(ctx, r.s, k)
				results[i] = result{tok, err}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, r := range results {
			if r.err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: %s (token %d) and %s (token %d) both won", round,
						racers[winner].owner, results[winner].tok, racers[i].owner, r.tok)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won; first error: %v", round, results[0].err)
		}
		w := results[winner]
		if w.tok <= last {
			t.Fatalf("round %d: winner's token %d; want > %d", round, w.tok, last)
		}
		last = w.tok
		for i, r := range results {
			var he *lock.HeldError
			if i != winner && (!errors.As(r.err, &he) || he.Holder != racers[winner].owner || he.Token != w.tok) {
				t.Fatalf("round %d: loser %s got %v; want HeldError naming %s, token %d",
					round, racers[i].owner, r.err, racers[winner].owner, w.tok)
			}
		}
		wr := racers[winner]
		// The other client sees the same holder.
		other := coords[0]
		if wr.c == coords[0] {
			other = coords[1]
		}
		info, ok, err := other.Holder(ctx, k)
		if err != nil || !ok || info.Session != wr.s || info.Token != w.tok {
			t.Fatalf("round %d: other client's Holder = %+v, %v, %v", round, info, ok, err)
		}
		if err := wr.c.Release(ctx, wr.s, k); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnavailable: with nothing listening, every operation fails at once
// with ErrUnavailable, naming the operation and the address, and matching
// none of the lock contract's answers.
func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"create session", func() error { _, err := c.CreateSession(ctx, "node-a", time.Second); return err }},
		{"renew", func() error { return c.Renew(ctx, "1-00") }},
		{"acquire", func() error { _, err := c.Acquire(ctx, "1-00", "k"); return err }},
		{"release", func() error { return c.Release(ctx, "1-00", "k") }},
		{"holder", func() error { _, _, err := c.Holder(ctx, "k"); return err }},
		{"destroy", func() error { return c.DestroySession(ctx, "1-00") }},
	} {
		err := tc.call()
		if !errors.Is(err, redislock.ErrUnavailable) {
			t.Errorf("%s: %v; want ErrUnavailable", tc.name, err)
			continue
		}
		for _, s := range []error{lock.ErrSessionExpired, lock.ErrNotHeld, lock.ErrHeld, lock.ErrClosed, redislock.ErrUnknownOutcome} {
			if errors.Is(err, s) {
				t.Errorf("%s: %v also matches %v", tc.name, err, s)
			}
		}
		if msg := err.Error(); !strings.Contains(msg, tc.name) || !strings.Contains(msg, addr) || !strings.Contains(msg, "refused") {
			t.Errorf("%s: %q does not say what failed (operation, address, cause)", tc.name, msg)
		}
	}
}

// mute is a TCP server that accepts connections and never answers, until
// hangUp closes them.
type mute struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted chan struct{} // closed at the first connection
	done     chan struct{}
}

func startMute(t *testing.T) *mute {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mute{ln: ln, accepted: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.mu.Lock()
			if m.conns == nil {
				close(m.accepted)
			}
			m.conns = append(m.conns, c) // read nothing, answer nothing
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-m.done; m.hangUp() })
	return m
}

func (m *mute) addr() string { return m.ln.Addr().String() }

func (m *mute) hangUp() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		c.Close()
	}
	m.conns = m.conns[:0]
}

// TestNoAnswer: a server that accepts connections and never answers makes
// an operation fail after the read timeout with ErrUnknownOutcome, which
// also matches the cause (a timeout).
func TestNoAnswer(t *testing.T) {
	m := startMute(t)
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: m.addr(), ReadTimeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Acquire(t.Context(), "1-00", "k")
	if !errors.Is(err, redislock.ErrUnknownOutcome) || errors.Is(err, redislock.ErrUnavailable) {
		t.Fatalf("Acquire with no answer: %v; want ErrUnknownOutcome only", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Acquire with no answer: %v; want it to wrap the timeout", err)
	}
	// A context that ended before the call: nothing sent, the context's error.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Acquire(ctx, "1-00", "k"); !errors.Is(err, context.Canceled) || errors.Is(err, redislock.ErrUnknownOutcome) {
		t.Fatalf("Acquire with a cancelled context: %v; want context.Canceled, not ErrUnknownOutcome", err)
	}
}

// TestCancelWhileWaiting: an operation whose context is cancelled (not
// timed out: lock.Keeper cancels its requests on its own clock) while it
// waits for an answer returns at once with ErrUnknownOutcome and the
// cause, not after the read timeout; Close waits for the abandoned command.
func TestCancelWhileWaiting(t *testing.T) {
	m := startMute(t)
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: m.addr(), ReadTimeout: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("keeper request timeout")
	returned := make(chan error, 1)
	go func() { returned <- c.Renew(ctx, "1-00") }()
	<-m.accepted // the call is under way: it connected and waits for an answer
	cancel(cause)
	select {
	case err := <-returned:
		if !errors.Is(err, redislock.ErrUnknownOutcome) || !errors.Is(err, cause) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Renew cancelled while waiting: %v; want ErrUnknownOutcome, the cause and context.Canceled", err)
		}
		if !strings.Contains(err.Error(), "renew session 1-00") {
			t.Fatalf("Renew cancelled while waiting: %q does not name the operation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Renew did not return after its context was cancelled")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	m.hangUp() // the abandoned command ends when its connection does
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return after the server hung up")
	}
	if err := c.Renew(t.Context(), "1-00"); !errors.Is(err, lock.ErrClosed) {
		t.Fatalf("Renew after Close: %v; want ErrClosed", err)
	}
}

// TestWrongPassword: a server that refuses the client's credentials is
// unavailable (nothing was done), and the error says so.
func TestWrongPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "right"})
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, Password: "wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.CreateSession(t.Context(), "node-a", time.Second)
	if !errors.Is(err, redislock.ErrUnavailable) || !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("CreateSession with a wrong password: %v; want ErrUnavailable (the adapter's and the contract's)", err)
	}
	if errors.Is(err, lock.ErrUnknownOutcome) {
		t.Fatalf("a refusal reported as an unknown outcome: %v", err)
	}
}

// TestExtremeTTLs: the TTL is counted in whole milliseconds, rounded up
// (1 ns lives 1 ms), and the longest Duration does not overflow.
func TestExtremeTTLs(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := newTestCoordinator(t, srv, uniquePrefix())
	advance := advancer(t, srv, c)
	ctx := t.Context()
	long, err := c.CreateSession(ctx, "node-a", time.Duration(math.MaxInt64))
	if err != nil {
		t.Fatal(err)
	}
	short, err := c.CreateSession(ctx, "node-b", time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	advance(100 * 365 * 24 * time.Hour)
	if err := c.Renew(ctx, long); err != nil {
		t.Fatalf("Renew of a session with the longest TTL, a century on: %v", err)
	}
	if err := c.Renew(ctx, short); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew of a 1 ns session, a century on: %v; want ErrSessionExpired", err)
	}
}

func TestOptions(t *testing.T) {
	if err := (redislock.Options{}).Validate(); !errors.Is(err, redis.ErrOptions) {
		t.Fatalf("Validate of empty options: %v; want redis.ErrOptions", err)
	}
	if _, err := redislock.New(redislock.Options{}); !errors.Is(err, redis.ErrOptions) {
		t.Fatalf("New with empty options: %v; want redis.ErrOptions", err)
	}
	if err := (redislock.Options{Redis: redis.Options{Addr: "127.0.0.1:6379"}}).Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
