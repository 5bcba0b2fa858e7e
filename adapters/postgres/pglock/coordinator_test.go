package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pglock"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var schemas atomic.Uint64

// uniqueSchema is a schema name no other coordinator of this test binary
// uses.
func uniqueSchema() string { return fmt.Sprintf("t%d", schemas.Add(1)) }

// db is the database of the shared server the tests of this binary share,
// each in a schema of its own.
var (
	dbMu   sync.Mutex
	dbName string
)

func sharedDB(t testing.TB) (*pgtest.Server, string) {
	t.Helper()
	s := pgtest.Shared(t)
	dbMu.Lock()
	defer dbMu.Unlock()
	if dbName == "" {
		dbName = s.CreateDatabase(t)
	}
	return s, dbName
}

func options(s *pgtest.Server, db, schema string) pglock.Options {
	return pglock.Options{Postgres: postgres.Options{
		Host: s.Host, Port: s.Port, User: s.User, Password: s.Password, Database: db, Schema: schema,
	}}
}

// newTestCoordinator returns a coordinator on the test clock, on database
// db of s, in schema; closed when t ends.
func newTestCoordinator(t testing.TB, s *pgtest.Server, db, schema string) *pglock.Coordinator {
	t.Helper()
	c, err := pglock.NewTestClock(t.Context(), options(s, db, schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// advancer moves the test clock of schema, failing t on error. It uses
// its own connection, so it works after the coordinator is closed.
func advancer(t *testing.T, s *pgtest.Server, db, schema string) func(time.Duration) {
	conn := s.Conn(t, db)
	return func(d time.Duration) {
		t.Helper()
		if _, err := conn.Exec(context.Background(), postgres.Expand("UPDATE {s}.test_clock SET t = t + $1 * interval '1 microsecond'", schema), d.Microseconds()); err != nil {
			t.Fatalf("advance %v: %v", d, err)
		}
	}
}

// TestConformance runs locktest against one real server; each subtest has
// its own schema, hence its own tables and clock.
func TestConformance(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		schema := uniqueSchema()
		c := newTestCoordinator(t, s, db, schema)
		return c, advancer(t, s, db, schema)
	})
}

// TestConformanceRealClock runs locktest against the production
// statements, on the database's own clock: advance lets the time pass
// (sleeps), as locktest describes for real-clock backends, so it takes
// about half a minute, and runs only when LOOM_PG_REALCLOCK is set.
// TestConformance runs the same suite on the test clock, and
// TestRealClockExpiry checks the production clock.
func TestConformanceRealClock(t *testing.T) {
	t.Parallel()
	if os.Getenv("LOOM_PG_REALCLOCK") == "" {
		t.Skip("sleeps about 30 s; set LOOM_PG_REALCLOCK=1 to run it")
	}
	s, db := sharedDB(t)
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		c, err := pglock.New(t.Context(), options(s, db, uniqueSchema()))
		if err != nil {
			t.Fatal(err)
		}
		return c, time.Sleep
	})
}

// TestProductionClockIgnoresTestClock: a coordinator built by New reads
// only now(); the test clock's table does not move it.
func TestProductionClockIgnoresTestClock(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	test := newTestCoordinator(t, s, db, schema)
	prod, err := pglock.New(t.Context(), options(s, db, schema))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := t.Context()
	sess, err := prod.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := prod.Acquire(ctx, sess, "k")
	if err != nil {
		t.Fatal(err)
	}
	advancer(t, s, db, schema)(time.Hour)
	// The test clock is an hour ahead: it sees the session lapsed.
	if _, ok, err := test.Holder(ctx, "k"); err != nil || ok {
		t.Fatalf("test-clock Holder = %v, %v; want free (an hour past the TTL)", ok, err)
	}
	// The production coordinator, on now() alone, still sees it alive.
	if err := prod.Renew(ctx, sess); err != nil {
		t.Fatalf("production Renew after the test clock moved: %v; want nil", err)
	}
	info, ok, err := prod.Holder(ctx, "k")
	if err != nil || !ok || info.Token != tok {
		t.Fatalf("production Holder = %+v, %v, %v; want held with token %d", info, ok, err, tok)
	}
}

// TestRealClockExpiry: on the production clock, a session that is not
// renewed lapses after its TTL on the database's clock, never before. It
// polls for the lapse, with a deadline.
func TestRealClockExpiry(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	c, err := pglock.New(t.Context(), options(s, db, uniqueSchema()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	sent := time.Now()
	sess, err := c.CreateSession(ctx, "node-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Acquire(ctx, sess, "k")
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
		time.Sleep(5 * time.Millisecond) // polling interval for a condition with a deadline
	}
	// The server started counting after we sent CreateSession, so the
	// lapse cannot be seen earlier than TTL after the send.
	if el := time.Since(sent); el < ttl {
		t.Fatalf("lock freed %v after CreateSession; TTL is %v", el, ttl)
	}
	if err := c.Renew(ctx, sess); !errors.Is(err, lock.ErrSessionExpired) {
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

// TestTokensSurviveKillAndRestart: every grant the server acknowledged
// survives SIGKILL of every server process: after each restart, the
// holder still holds its lock with its token, and the next grant's token
// is higher than every earlier one (the token sequence never goes back,
// although PostgreSQL logs a sequence 32 values ahead and a crash skips
// what was not used).
func TestTokensSurviveKillAndRestart(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	db := s.CreateDatabase(t)
	c := newTestCoordinator(t, s, db, "loom")
	ctx := t.Context()
	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const k = "actor"
	var last uint64
	grant := func(sess lock.SessionID) uint64 {
		t.Helper()
		tok, err := c.Acquire(ctx, sess, k)
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
		s.Kill()
		_, err := c.Acquire(ctx, a, k)
		if !errors.Is(err, pglock.ErrUnavailable) && !errors.Is(err, pglock.ErrUnknownOutcome) {
			t.Fatalf("Acquire with the server killed: %v; want ErrUnavailable or ErrUnknownOutcome", err)
		}
		if !strings.Contains(err.Error(), s.Addr()) {
			t.Errorf("error %q does not name the server %s", err, s.Addr())
		}
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
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
}

// TestTokensIncreaseAcrossExpiryAndSweep: after a holder's session lapses
// and the sweep has deleted everything it left, the next grant's token is
// higher.
func TestTokensIncreaseAcrossExpiryAndSweep(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	c := newTestCoordinator(t, s, db, schema)
	advance := advancer(t, s, db, schema)
	raw := s.Conn(t, db)
	ctx := t.Context()
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := raw.QueryRow(ctx, postgres.Expand(sql, schema), args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
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
		// Creating a session sweeps the lapsed one: its rows go.
		b, err := c.CreateSession(ctx, "sweeper", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if n := count("SELECT count(*) FROM {s}.lock_sessions WHERE id = $1", string(a)); n != 0 {
			t.Fatalf("round %d: the lapsed session's row is still there after the sweep", round)
		}
		if n := count("SELECT count(*) FROM {s}.locks"); n != 0 {
			t.Fatalf("round %d: %d lock rows left after the sweep", round, n)
		}
		if err := c.DestroySession(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSweepIsBounded: a lapsed session with more locks than one sweep
// deletes is cleaned up over several calls, and its locks are free from
// the lapse on, before their rows are gone.
func TestSweepIsBounded(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	c := newTestCoordinator(t, s, db, schema)
	advance := advancer(t, s, db, schema)
	raw := s.Conn(t, db)
	ctx := t.Context()
	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500 // 2.5 sweeps' budget
	// Many grants in one round trip each would take a while; the rows are
	// what Acquire would write.
	if _, err := raw.Exec(ctx, postgres.Expand(`INSERT INTO {s}.locks (key, session_id, token)
		SELECT convert_to('k' || i, 'UTF8'), $1, nextval('{s}.lock_tokens') FROM generate_series(1, $2) i`, schema), string(a), n); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Holder(ctx, "k2500"); err != nil || !ok {
		t.Fatalf("Holder = %v, %v; want held", ok, err)
	}
	advance(time.Minute)
	locksOf := func() int {
		var left int
		if err := raw.QueryRow(ctx, postgres.Expand("SELECT count(*) FROM {s}.locks WHERE session_id = $1", schema), string(a)).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left
	}
	b, err := c.CreateSession(ctx, "node-b", time.Hour) // sweeps 1000
	if err != nil {
		t.Fatal(err)
	}
	if left := locksOf(); left != n-1000 {
		t.Fatalf("after one sweep, the lapsed session has %d lock rows; want %d", left, n-1000)
	}
	if _, ok, err := c.Holder(ctx, "k2500"); err != nil || ok {
		t.Fatalf("Holder of a lapsed session's lock = %v, %v; want free", ok, err)
	}
	for range 2 {
		if err := c.Renew(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var sessions int
	if err := raw.QueryRow(ctx, postgres.Expand("SELECT count(*) FROM {s}.lock_sessions WHERE id = $1", schema), string(a)).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if left := locksOf(); left != 0 || sessions != 0 {
		t.Fatalf("after three sweeps: %d lock rows and %d session rows of the lapsed session left", left, sessions)
	}
}

// TestTwoClientsRace: two coordinators, each with its own pool, race
// sessions of theirs for one key; every round exactly one session wins,
// the others see it in their *HeldError, and tokens strictly increase.
func TestTwoClientsRace(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	coords := []*pglock.Coordinator{newTestCoordinator(t, s, db, schema), newTestCoordinator(t, s, db, schema)}
	ctx := t.Context()
	const perCoord, rounds = 4, 50
	type racer struct {
		c     *pglock.Coordinator
		s     lock.SessionID
		owner string
	}
	var racers []racer
	for i, c := range coords {
		for j := range perCoord {
			owner := fmt.Sprintf("client%d-node%d", i, j)
			sess, err := c.CreateSession(ctx, owner, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			racers = append(racers, racer{c, sess, owner})
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

// TestKeysAreBytes: keys and owners are opaque byte strings: a NUL byte,
// invalid UTF-8 and keys that differ only in such bytes are kept apart.
func TestKeysAreBytes(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	c := newTestCoordinator(t, s, db, uniqueSchema())
	ctx := t.Context()
	owner := "node\x00\xff"
	sess, err := c.CreateSession(ctx, owner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a\x00", "a", "a\xff", "\xfe\x00\x01"}
	toks := map[string]uint64{}
	for _, k := range keys {
		if toks[k], err = c.Acquire(ctx, sess, k); err != nil {
			t.Fatalf("Acquire(%q): %v", k, err)
		}
	}
	for _, k := range keys {
		info, ok, err := c.Holder(ctx, k)
		if err != nil || !ok || info.Owner != owner || info.Token != toks[k] || info.Key != k {
			t.Fatalf("Holder(%q) = %+v, %v, %v", k, info, ok, err)
		}
	}
	if err := c.Release(ctx, sess, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.Holder(ctx, "a\x00"); !ok {
		t.Fatal("releasing \"a\" freed \"a\\x00\"")
	}
}

// TestUnavailable: with nothing listening, every operation fails at once
// with ErrUnavailable, naming the operation and the address, and matching
// none of the lock contract's answers; New fails the same way.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	o := pglock.Options{Postgres: postgres.Options{Host: "127.0.0.1", Port: addr.Port, User: "u"}}
	if _, err := pglock.New(t.Context(), o); !errors.Is(err, pglock.ErrUnavailable) || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("New with nothing listening: %v; want ErrUnavailable naming %s", err, addr)
	}
	// A coordinator whose server went away after New.
	s := pgtest.Start(t, pgtest.Options{})
	c, err := pglock.New(t.Context(), options(s, s.CreateDatabase(t), "loom"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Stop()
	// A pooled connection the server closed may have taken a statement
	// before the read found it closed (an unknown outcome: see
	// TestTokensSurviveKillAndRestart); without one, each operation dials.
	c.DropConnections()
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
		{"end sessions", func() error { _, err := c.EndSessionsOf(ctx, "node-a", ""); return err }},
	} {
		err := tc.call()
		if !errors.Is(err, pglock.ErrUnavailable) || !errors.Is(err, lock.ErrUnavailable) {
			t.Errorf("%s: %v; want ErrUnavailable", tc.name, err)
			continue
		}
		for _, s := range []error{lock.ErrSessionExpired, lock.ErrNotHeld, lock.ErrHeld, lock.ErrClosed, pglock.ErrUnknownOutcome} {
			if errors.Is(err, s) {
				t.Errorf("%s: %v also matches %v", tc.name, err, s)
			}
		}
		if msg := err.Error(); !strings.Contains(msg, tc.name) || !strings.Contains(msg, s.Addr()) || !strings.Contains(msg, "refused") {
			t.Errorf("%s: %q does not say what failed (operation, address, cause)", tc.name, msg)
		}
	}
}

// TestNoAnswer: a server that stops answering (every process paused)
// makes an operation fail after the query timeout with ErrUnknownOutcome,
// which also matches the cause (the deadline); a context that ended
// before the call sends nothing and returns its error alone.
func TestNoAnswer(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	o := options(s, s.CreateDatabase(t), "loom")
	o.Postgres.QueryTimeout = 200 * time.Millisecond
	c, err := pglock.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Just before the pause, so that the pooled connection is reused
	// without a ping (pgxpool pings those idle for over a second).
	sess, err := c.CreateSession(t.Context(), "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.Pause()
	defer s.Resume()
	_, err = c.Acquire(t.Context(), sess, "k")
	if !errors.Is(err, pglock.ErrUnknownOutcome) || errors.Is(err, pglock.ErrUnavailable) {
		t.Fatalf("Acquire with no answer: %v; want ErrUnknownOutcome only", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with no answer: %v; want it to wrap the deadline", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Acquire(ctx, sess, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, pglock.ErrUnknownOutcome) {
		t.Fatalf("Acquire with a cancelled context: %v; want context.Canceled, not ErrUnknownOutcome", err)
	}
	s.Resume()
	// Another coordinator, without the short timeout (the pool's broken
	// connections are replaced by new ones, slow on a loaded machine).
	c2, err := pglock.New(t.Context(), options(s, o.Postgres.Database, "loom"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Acquire(t.Context(), sess, "k"); err != nil {
		t.Fatalf("Acquire once the server answers again: %v", err)
	}
}

// TestCancelWhileWaiting: an operation whose context is cancelled (not
// timed out: lock.Keeper cancels its requests on its own clock) while the
// server runs it returns at once with ErrUnknownOutcome and the cause,
// and Close does not wait for the abandoned statement.
func TestCancelWhileWaiting(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	o := options(s, db, schema)
	o.Postgres.QueryTimeout = time.Hour
	c, err := pglock.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.CreateSession(t.Context(), "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(t.Context(), sess, "k"); err != nil {
		t.Fatal(err)
	}
	// Another transaction holds the lock's row: the next Acquire waits
	// for it inside the server.
	admin := s.Conn(t, db)
	tx, err := admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), postgres.Expand("SELECT 1 FROM {s}.locks WHERE key = $1 FOR UPDATE", schema), []byte("k")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("keeper request timeout")
	returned := make(chan error, 1)
	go func() { _, err := c.Acquire(ctx, sess, "k"); returned <- err }()
	waitFor(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
		postgres.Expand("{s}.lock_acquire", schema))
	cancel(cause)
	select {
	case err := <-returned:
		if !errors.Is(err, pglock.ErrUnknownOutcome) || !errors.Is(err, cause) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire cancelled while waiting: %v; want ErrUnknownOutcome, the cause and context.Canceled", err)
		}
		if !strings.Contains(err.Error(), `acquire "k" by session `+string(sess)) {
			t.Fatalf("Acquire cancelled while waiting: %q does not name the operation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Acquire did not return after its context was cancelled")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := c.Renew(t.Context(), sess); !errors.Is(err, lock.ErrClosed) {
		t.Fatalf("Renew after Close: %v; want ErrClosed", err)
	}
}

// waitFor polls the query (a count) until it is positive, with a deadline.
func waitFor(t *testing.T, conn *pgx.Conn, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no row of %q after 10 s", query)
		}
		time.Sleep(5 * time.Millisecond) // polling interval for a condition with a deadline
	}
}

// TestWrongPassword: a server that refuses the client's credentials is
// unavailable (nothing was done), and the error says so.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{Password: "right"})
	o := options(s, s.CreateDatabase(t), "loom")
	o.Postgres.Password = "wrong"
	_, err := pglock.New(t.Context(), o)
	if !errors.Is(err, pglock.ErrUnavailable) || !errors.Is(err, lock.ErrUnavailable) || errors.Is(err, lock.ErrUnknownOutcome) {
		t.Fatalf("New with a wrong password: %v; want ErrUnavailable (the adapter's and the contract's)", err)
	}
	if !strings.Contains(err.Error(), "password") {
		t.Fatalf("%q does not say the password was refused", err)
	}
}

// TestExtremeTTLs: the TTL is counted in whole microseconds, rounded up
// (1 ns lives 1 µs), and the longest Duration does not overflow.
func TestExtremeTTLs(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	c := newTestCoordinator(t, s, db, schema)
	advance := advancer(t, s, db, schema)
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

// TestRenewNeverShortens: a renewal whose transaction began before
// another's, and commits after it, keeps the later deadline.
func TestRenewNeverShortens(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	c := newTestCoordinator(t, s, db, schema)
	ctx := t.Context()
	sess, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raw := s.Conn(t, db)
	deadline := func() time.Time {
		var d time.Time
		if err := raw.QueryRow(ctx, postgres.Expand("SELECT expires_at FROM {s}.lock_sessions WHERE id = $1", schema), string(sess)).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// An old renewal: its transaction's clock reads 30 s before the one
	// that follows (the test clock stands for the time it waited).
	old, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Rollback(context.Background())
	var oldNow time.Time
	if err := old.QueryRow(ctx, postgres.Expand("SELECT t FROM {s}.test_clock", schema)).Scan(&oldNow); err != nil {
		t.Fatal(err)
	}
	advancer(t, s, db, schema)(30 * time.Second)
	if err := c.Renew(ctx, sess); err != nil {
		t.Fatal(err)
	}
	later := deadline()
	if _, err := old.Exec(ctx, postgres.Expand("SELECT {s}.lock_renew($1, $2, 0)", schema), string(sess), oldNow); err != nil {
		t.Fatal(err)
	}
	if err := old.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := deadline(); !got.Equal(later) {
		t.Fatalf("a late old renewal moved the deadline from %v to %v", later, got)
	}
}

// TestNewerSchemaRefused: a coordinator does not run against a schema
// made by a newer Loom.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	newTestCoordinator(t, s, db, schema)
	if _, err := s.Conn(t, db).Exec(t.Context(), postgres.Expand("INSERT INTO {s}.schema_version (version) VALUES ($1)", schema), postgres.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := pglock.New(t.Context(), options(s, db, schema)); !errors.Is(err, postgres.ErrSchemaTooNew) || errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("New on a newer schema: %v; want ErrSchemaTooNew", err)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	if err := (pglock.Options{}).Validate(); !errors.Is(err, postgres.ErrOptions) {
		t.Fatalf("Validate of empty options: %v; want postgres.ErrOptions", err)
	}
	if _, err := pglock.New(t.Context(), pglock.Options{}); !errors.Is(err, postgres.ErrOptions) {
		t.Fatalf("New with empty options: %v; want postgres.ErrOptions", err)
	}
	if err := (pglock.Options{Postgres: postgres.Options{Host: "127.0.0.1", User: "u"}}).Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
