// Package locktest is the conformance suite of lock.Coordinator: every
// backend (raftlock, the adapters, inmem) runs Run from its tests and must
// pass all of it. It also provides FakeClock, a manual clock for backends
// and Keepers under test.
//
// The suite uses sessions of SessionTTL and moves time with the advance
// function the backend supplies: a backend with an injected clock advances
// a FakeClock; a backend on the real clock (Redis, say) sleeps, which makes
// its run take some tens of seconds. Keys are prefixed with the subtest's
// name and a per-run nonce, so backends sharing one server do not collide.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock"
)

// SessionTTL is the TTL of every session the suite creates. Times the suite
// advances are fractions and multiples of it.
const SessionTTL = 2 * time.Second

const (
	// past is how far past a lapse the suite advances before expecting
	// expiry: a quarter TTL, room for a real-clock backend's latency.
	past = SessionTTL + SessionTTL/4
	// bit is how far past TTL, after a renewal at TTL/2, a lock must
	// still be held.
	bit = SessionTTL / 10
)

// Run runs the conformance suite. newBackend is called once per subtest and
// returns a fresh coordinator and a function that moves the coordinator's
// clock forward by d. The suite closes the coordinator at the end of each
// subtest (Close may be called more than once); newBackend registers any
// other cleanup with t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) (c lock.Coordinator, advance func(d time.Duration))) {
	RunWith(t, Options{}, newBackend)
}

// Options adjust the suite for a backend.
type Options struct {
	// ManyLocks is how many locks ManyLocksOneSession takes on one
	// session; 0 means 2,000 (500 with -short). A backend whose every
	// request is slow (a test server answering one request at a time)
	// may lower it: a thousand locks riding one renewal prove the same.
	ManyLocks int
}

// RunWith is Run with options.
func RunWith(t *testing.T, o Options, newBackend func(t *testing.T) (c lock.Coordinator, advance func(d time.Duration))) {
	nonce := fmt.Sprintf("%x", time.Now().UnixNano())
	tests := []struct {
		name string
		f    func(t *testing.T, h *harness)
	}{
		{"SessionLifecycle", testSessionLifecycle},
		{"AcquireReturnsToken", testAcquireReturnsToken},
		{"ReacquireSameToken", testReacquireSameToken},
		{"HeldByOtherSession", testHeldByOtherSession},
		{"ReleaseThenAcquireHigherToken", testReleaseThenAcquire},
		{"ExpiryFreesLocks", testExpiryFreesLocks},
		{"RenewalKeepsLocks", testRenewalKeepsLocks},
		{"ExpiredSession", testExpiredSession},
		{"TokensStrictlyIncrease", testTokensIncrease},
		{"ConcurrentAcquire", testConcurrentAcquire},
		{"Holder", testHolder},
		{"DestroyFreesLocks", testDestroyFreesLocks},
		{"ReleaseNotHeld", testReleaseNotHeld},
		{"InvalidArguments", testInvalidArguments},
		{"CloseTwice", testCloseTwice},
		{"ManyLocksOneSession", testManyLocksOneSession},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, advance := newBackend(t)
			t.Cleanup(func() { _ = c.Close() })
			tc.f(t, &harness{c: c, advance: advance, prefix: "locktest/" + nonce + "/" + t.Name() + "/", manyLocks: o.ManyLocks})
		})
	}
}

// harness wraps a backend with helpers that fail the test on error.
type harness struct {
	c         lock.Coordinator
	advance   func(time.Duration)
	prefix    string
	manyLocks int // Options.ManyLocks
}

func (h *harness) key(name string) string { return h.prefix + name }

func (h *harness) session(t *testing.T, owner string) lock.SessionID {
	t.Helper()
	s, err := h.c.CreateSession(t.Context(), owner, SessionTTL)
	if err != nil {
		t.Fatalf("CreateSession(%q, %v): %v", owner, SessionTTL, err)
	}
	if s == "" {
		t.Fatalf("CreateSession(%q) returned an empty SessionID", owner)
	}
	return s
}

func (h *harness) renew(t *testing.T, s lock.SessionID) {
	t.Helper()
	if err := h.c.Renew(t.Context(), s); err != nil {
		t.Fatalf("Renew(%s): %v", s, err)
	}
}

func (h *harness) acquire(t *testing.T, s lock.SessionID, key string) uint64 {
	t.Helper()
	tok, err := h.c.Acquire(t.Context(), s, key)
	if err != nil {
		t.Fatalf("Acquire(%s, %q): %v", s, key, err)
	}
	if tok == 0 {
		t.Fatalf("Acquire(%s, %q) returned token 0; tokens are never 0", s, key)
	}
	return tok
}

func (h *harness) release(t *testing.T, s lock.SessionID, key string) {
	t.Helper()
	if err := h.c.Release(t.Context(), s, key); err != nil {
		t.Fatalf("Release(%s, %q): %v", s, key, err)
	}
}

// wantHeld checks that key is held by session s of owner with token tok.
func (h *harness) wantHeld(t *testing.T, key string, s lock.SessionID, owner string, tok uint64) {
	t.Helper()
	info, ok, err := h.c.Holder(t.Context(), key)
	if err != nil {
		t.Fatalf("Holder(%q): %v", key, err)
	}
	want := lock.LockInfo{Key: key, Session: s, Owner: owner, Token: tok}
	if !ok || info != want {
		t.Fatalf("Holder(%q) = %+v, %v; want %+v, true", key, info, ok, want)
	}
}

func (h *harness) wantFree(t *testing.T, key string) {
	t.Helper()
	info, ok, err := h.c.Holder(t.Context(), key)
	if err != nil {
		t.Fatalf("Holder(%q): %v", key, err)
	}
	if ok {
		t.Fatalf("Holder(%q) = %+v, true; want free", key, info)
	}
}

// wantHeldError checks that err says key is held by owner with token tok.
func wantHeldError(t *testing.T, err error, key, owner string, tok uint64) {
	t.Helper()
	if !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("err = %v; want errors.Is(err, lock.ErrHeld)", err)
	}
	var he *lock.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v (%T); want a *lock.HeldError", err, err)
	}
	if he.Key != key || he.Holder != owner || he.Token != tok {
		t.Fatalf("HeldError = %+v; want Key %q, Holder %q, Token %d", *he, key, owner, tok)
	}
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v; want errors.Is(err, %v)", what, err, target)
	}
}

func testSessionLifecycle(t *testing.T, h *harness) {
	ctx := t.Context()
	s1 := h.session(t, "node-a")
	s2 := h.session(t, "node-a")
	if s1 == s2 {
		t.Fatalf("two CreateSession calls returned the same id %s", s1)
	}
	h.renew(t, s1)
	h.renew(t, s2)
	if err := h.c.DestroySession(ctx, s1); err != nil {
		t.Fatalf("DestroySession(%s): %v", s1, err)
	}
	wantIs(t, "Renew of a destroyed session", h.c.Renew(ctx, s1), lock.ErrSessionExpired)
	_, err := h.c.Acquire(ctx, s1, h.key("k"))
	wantIs(t, "Acquire by a destroyed session", err, lock.ErrSessionExpired)
	if err := h.c.DestroySession(ctx, s1); err != nil {
		t.Fatalf("DestroySession of a destroyed session: %v; want nil", err)
	}
	if err := h.c.DestroySession(ctx, lock.SessionID(h.key("no-such-session"))); err != nil {
		t.Fatalf("DestroySession of an unknown session: %v; want nil", err)
	}
	wantIs(t, "Renew of an unknown session", h.c.Renew(ctx, lock.SessionID(h.key("no-such-session"))), lock.ErrSessionExpired)
	h.renew(t, s2) // the other session is untouched
	s3 := h.session(t, "node-a")
	if s3 == s1 || s3 == s2 {
		t.Fatalf("CreateSession reused id %s", s3)
	}
}

func testAcquireReturnsToken(t *testing.T, h *harness) {
	s := h.session(t, "node-a")
	k := h.key("actor")
	tok := h.acquire(t, s, k)
	h.wantHeld(t, k, s, "node-a", tok)
}

func testReacquireSameToken(t *testing.T, h *harness) {
	s := h.session(t, "node-a")
	k := h.key("actor")
	tok := h.acquire(t, s, k)
	for i := range 3 {
		if got := h.acquire(t, s, k); got != tok {
			t.Fatalf("re-Acquire #%d by the holder = token %d; want the grant's token %d", i+1, got, tok)
		}
		h.renew(t, s)
	}
	h.wantHeld(t, k, s, "node-a", tok)
}

func testHeldByOtherSession(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name, other string
	}{
		{"other owner", "node-b"},
		{"same owner, other session", "node-a"}, // locks belong to sessions, not owners
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.session(t, "node-a")
			b := h.session(t, tc.other)
			k := h.key(tc.name)
			tok := h.acquire(t, a, k)
			got, err := h.c.Acquire(t.Context(), b, k)
			if got != 0 {
				t.Errorf("Acquire of a held lock returned token %d; want 0", got)
			}
			wantHeldError(t, err, k, "node-a", tok)
			if errors.Is(err, lock.ErrSessionExpired) {
				t.Fatalf("HeldError also matches ErrSessionExpired: %v", err)
			}
			h.wantHeld(t, k, a, "node-a", tok)
		})
	}
}

func testReleaseThenAcquire(t *testing.T, h *harness) {
	a := h.session(t, "node-a")
	b := h.session(t, "node-b")
	k := h.key("actor")
	t1 := h.acquire(t, a, k)
	h.release(t, a, k)
	h.wantFree(t, k)
	t2 := h.acquire(t, b, k)
	if t2 <= t1 {
		t.Fatalf("token after release and re-grant = %d; want > %d", t2, t1)
	}
	_, err := h.c.Acquire(t.Context(), a, k)
	wantHeldError(t, err, k, "node-b", t2)
	h.release(t, b, k)
	t3 := h.acquire(t, a, k)
	if t3 <= t2 {
		t.Fatalf("third grant token = %d; want > %d", t3, t2)
	}
	h.wantHeld(t, k, a, "node-a", t3)
}

func testExpiryFreesLocks(t *testing.T, h *harness) {
	a := h.session(t, "node-a")
	k := h.key("actor")
	t1 := h.acquire(t, a, k)
	h.advance(past)
	h.wantFree(t, k)
	b := h.session(t, "node-b")
	t2 := h.acquire(t, b, k)
	if t2 <= t1 {
		t.Fatalf("token granted after expiry = %d; want > %d", t2, t1)
	}
	h.wantHeld(t, k, b, "node-b", t2)
}

func testRenewalKeepsLocks(t *testing.T, h *harness) {
	a := h.session(t, "node-a")
	k := h.key("actor")
	tok := h.acquire(t, a, k)
	// Renewing every TTL/2 keeps the session (and its lock) well past TTL.
	for i := range 4 {
		h.advance(SessionTTL / 2)
		h.renew(t, a)
		if i == 0 {
			// Renewed at TTL/2: alive until 1.5 TTL, so still held just past TTL.
			h.advance(SessionTTL/2 + bit)
			h.wantHeld(t, k, a, "node-a", tok)
			h.renew(t, a)
		}
	}
	h.wantHeld(t, k, a, "node-a", tok)
	b := h.session(t, "node-b")
	_, err := h.c.Acquire(t.Context(), b, k)
	wantHeldError(t, err, k, "node-a", tok)
	// Without renewal it lapses.
	h.advance(past)
	h.wantFree(t, k)
}

func testExpiredSession(t *testing.T, h *harness) {
	a := h.session(t, "node-a")
	k := h.key("actor")
	h.acquire(t, a, k)
	h.advance(past)
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		call   func() error
		target error // nil: no error
	}{
		{"Renew", func() error { return h.c.Renew(ctx, a) }, lock.ErrSessionExpired},
		{"Renew again (a failed Renew does not revive)", func() error { return h.c.Renew(ctx, a) }, lock.ErrSessionExpired},
		{"Acquire of its own lock", func() error { _, err := h.c.Acquire(ctx, a, k); return err }, lock.ErrSessionExpired},
		{"Acquire of another key", func() error { _, err := h.c.Acquire(ctx, a, h.key("other")); return err }, lock.ErrSessionExpired},
		{"Release", func() error { return h.c.Release(ctx, a, k) }, lock.ErrNotHeld},
		{"DestroySession", func() error { return h.c.DestroySession(ctx, a) }, nil},
	} {
		err := tc.call()
		if tc.target == nil {
			if err != nil {
				t.Errorf("%s on a lapsed session: %v; want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.target) {
			t.Errorf("%s on a lapsed session: err = %v; want errors.Is(err, %v)", tc.name, err, tc.target)
		}
	}
	h.wantFree(t, k)
	h.wantFree(t, h.key("other"))
}

func testTokensIncrease(t *testing.T, h *harness) {
	owners := []string{"node-a", "node-b", "node-c"}
	sessions := make([]lock.SessionID, len(owners))
	for i, o := range owners {
		sessions[i] = h.session(t, o)
	}
	keys := []string{h.key("x"), h.key("y")}
	last := map[string]uint64{}
	seen := map[string]map[uint64]bool{}
	for _, k := range keys {
		seen[k] = map[uint64]bool{}
	}
	for cycle := range 60 {
		if cycle%20 == 0 {
			for _, s := range sessions {
				h.renew(t, s)
			}
		}
		for j, k := range keys {
			i := (cycle + j) % len(sessions) // a different session each time
			tok := h.acquire(t, sessions[i], k)
			if tok <= last[k] || seen[k][tok] {
				t.Fatalf("cycle %d, key %q: grant to %s got token %d; previous grant had %d", cycle, k, owners[i], tok, last[k])
			}
			last[k], seen[k][tok] = tok, true
			h.release(t, sessions[i], k)
		}
	}
	// Across sessions that end: destroy one and lapse the rest.
	a := h.session(t, "node-d")
	k := keys[0]
	tok := h.acquire(t, a, k)
	if tok <= last[k] {
		t.Fatalf("grant to a new session: token %d; want > %d", tok, last[k])
	}
	last[k] = tok
	if err := h.c.DestroySession(t.Context(), a); err != nil {
		t.Fatalf("DestroySession: %v", err)
	}
	b := h.session(t, "node-e")
	if tok = h.acquire(t, b, k); tok <= last[k] {
		t.Fatalf("grant after the holder's session was destroyed: token %d; want > %d", tok, last[k])
	}
	last[k] = tok
	h.advance(past)
	c := h.session(t, "node-f")
	if tok = h.acquire(t, c, k); tok <= last[k] {
		t.Fatalf("grant after the holder's session lapsed: token %d; want > %d", tok, last[k])
	}
}

func testConcurrentAcquire(t *testing.T, h *harness) {
	const (
		n      = 16
		rounds = 20
	)
	owners := make([]string, n)
	sessions := make([]lock.SessionID, n)
	for i := range n {
		owners[i] = fmt.Sprintf("node-%02d", i)
		sessions[i] = h.session(t, owners[i])
	}
	k := h.key("contended")
	var last uint64
	type result struct {
		tok uint64
		err error
	}
	for round := range rounds {
		for _, s := range sessions {
			h.renew(t, s)
		}
		results := make([]result, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				tok, err := h.c.Acquire(t.Context(), sessions[i], k)
				results[i] = result{tok, err}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, r := range results {
			if r.err != nil {
				continue
			}
			if winner >= 0 {
				t.Fatalf("round %d: both %s (token %d) and %s (token %d) acquired %q",
					round, owners[winner], results[winner].tok, owners[i], r.tok, k)
			}
			winner = i
		}
		if winner < 0 {
			t.Fatalf("round %d: no acquirer won; first error: %v", round, results[0].err)
		}
		w := results[winner]
		if w.tok <= last {
			t.Fatalf("round %d: winner's token %d; want > %d", round, w.tok, last)
		}
		last = w.tok
		for i, r := range results {
			if i != winner {
				wantHeldError(t, r.err, k, owners[winner], w.tok)
			}
		}
		h.wantHeld(t, k, sessions[winner], owners[winner], w.tok)
		h.release(t, sessions[winner], k)
	}
}

func testHolder(t *testing.T, h *harness) {
	k := h.key("actor")
	h.wantFree(t, k)
	a := h.session(t, "node-a")
	tok := h.acquire(t, a, k)
	h.wantHeld(t, k, a, "node-a", tok)
	h.wantFree(t, h.key("never-used"))
	h.release(t, a, k)
	h.wantFree(t, k)
	tok = h.acquire(t, a, k)
	h.wantHeld(t, k, a, "node-a", tok)
	h.advance(past)
	h.wantFree(t, k)
}

func testDestroyFreesLocks(t *testing.T, h *harness) {
	a := h.session(t, "node-a")
	b := h.session(t, "node-b")
	keys := []string{h.key("k1"), h.key("k2"), h.key("k3")}
	toks := map[string]uint64{}
	for _, k := range keys {
		toks[k] = h.acquire(t, a, k)
	}
	kb := h.key("kb")
	tb := h.acquire(t, b, kb)
	if err := h.c.DestroySession(t.Context(), a); err != nil {
		t.Fatalf("DestroySession: %v", err)
	}
	for _, k := range keys {
		h.wantFree(t, k)
	}
	h.wantHeld(t, kb, b, "node-b", tb)
	for _, k := range keys {
		if tok := h.acquire(t, b, k); tok <= toks[k] {
			t.Fatalf("grant of %q after destroy: token %d; want > %d", k, tok, toks[k])
		}
	}
}

func testReleaseNotHeld(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name string
		// setup returns the session that releases and checks what must hold after.
		setup func(t *testing.T, k string) (lock.SessionID, func(t *testing.T))
	}{
		{"free key", func(t *testing.T, k string) (lock.SessionID, func(*testing.T)) {
			a := h.session(t, "node-a")
			return a, func(t *testing.T) { h.wantFree(t, k) }
		}},
		{"held by another session", func(t *testing.T, k string) (lock.SessionID, func(*testing.T)) {
			a, b := h.session(t, "node-a"), h.session(t, "node-b")
			tb := h.acquire(t, b, k)
			return a, func(t *testing.T) { h.wantHeld(t, k, b, "node-b", tb) }
		}},
		{"released twice", func(t *testing.T, k string) (lock.SessionID, func(*testing.T)) {
			a := h.session(t, "node-a")
			h.acquire(t, a, k)
			h.release(t, a, k)
			return a, func(t *testing.T) { h.wantFree(t, k) }
		}},
		{"destroyed session", func(t *testing.T, k string) (lock.SessionID, func(*testing.T)) {
			a := h.session(t, "node-a")
			h.acquire(t, a, k)
			if err := h.c.DestroySession(t.Context(), a); err != nil {
				t.Fatalf("DestroySession: %v", err)
			}
			return a, func(t *testing.T) { h.wantFree(t, k) }
		}},
		{"lapsed and granted to another", func(t *testing.T, k string) (lock.SessionID, func(*testing.T)) {
			a := h.session(t, "node-a")
			h.acquire(t, a, k)
			h.advance(past)
			b := h.session(t, "node-b")
			tb := h.acquire(t, b, k)
			return a, func(t *testing.T) { h.wantHeld(t, k, b, "node-b", tb) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := h.key(tc.name)
			s, check := tc.setup(t, k)
			wantIs(t, "Release", h.c.Release(t.Context(), s, k), lock.ErrNotHeld)
			check(t)
		})
	}
}

func testInvalidArguments(t *testing.T, h *harness) {
	ctx := t.Context()
	s := h.session(t, "node-a")
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"CreateSession empty owner", func() error { _, err := h.c.CreateSession(ctx, "", SessionTTL); return err }},
		{"CreateSession zero TTL", func() error { _, err := h.c.CreateSession(ctx, "node-a", 0); return err }},
		{"CreateSession negative TTL", func() error { _, err := h.c.CreateSession(ctx, "node-a", -time.Second); return err }},
		{"Acquire empty key", func() error { _, err := h.c.Acquire(ctx, s, ""); return err }},
		{"Release empty key", func() error { return h.c.Release(ctx, s, "") }},
		{"Holder empty key", func() error { _, _, err := h.c.Holder(ctx, ""); return err }},
	} {
		if err := tc.call(); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("%s: err = %v; want errors.Is(err, lock.ErrInvalid)", tc.name, err)
		}
	}
}

func testCloseTwice(t *testing.T, h *harness) {
	s := h.session(t, "node-a")
	k := h.key("actor")
	h.acquire(t, s, k)
	if err := h.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.c.Close(); err != nil {
		t.Fatalf("second Close: %v; want nil", err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"CreateSession", func() error { _, err := h.c.CreateSession(ctx, "node-a", SessionTTL); return err }},
		{"Renew", func() error { return h.c.Renew(ctx, s) }},
		{"Acquire", func() error { _, err := h.c.Acquire(ctx, s, k); return err }},
		{"Release", func() error { return h.c.Release(ctx, s, k) }},
		{"Holder", func() error { _, _, err := h.c.Holder(ctx, k); return err }},
		{"DestroySession", func() error { return h.c.DestroySession(ctx, s) }},
	} {
		if err := tc.call(); !errors.Is(err, lock.ErrClosed) {
			t.Errorf("%s after Close: err = %v; want errors.Is(err, lock.ErrClosed)", tc.name, err)
		}
	}
}

// testManyLocksOneSession checks that locks ride on their session: one
// Renew per interval keeps every lock of a session alive (100k actors must
// not mean 100k renewals), and they all go when it lapses.
func testManyLocksOneSession(t *testing.T, h *harness) {
	n := 2_000
	if testing.Short() {
		n = 500
	}
	if h.manyLocks > 0 {
		n = h.manyLocks
	}
	const batch = 500 // renew between batches, for backends on the real clock
	a := h.session(t, "node-a")
	keys := make([]string, n)
	toks := make([]uint64, n)
	for i := range n {
		if i%batch == 0 {
			h.renew(t, a)
		}
		keys[i] = h.key(fmt.Sprintf("actor-%05d", i))
		toks[i] = h.acquire(t, a, keys[i])
	}
	h.renew(t, a)
	h.advance(SessionTTL / 2)
	h.renew(t, a)
	h.advance(SessionTTL/2 + bit)
	h.renew(t, a) // the session is alive past TTL: one renewal per interval kept it
	for i := range n {
		if i%batch == 0 && i > 0 {
			h.renew(t, a)
		}
		h.wantHeld(t, keys[i], a, "node-a", toks[i])
	}
	b := h.session(t, "node-b")
	_, err := h.c.Acquire(t.Context(), b, keys[0])
	wantHeldError(t, err, keys[0], "node-a", toks[0])
	h.advance(past)
	for i := 0; i < n; i += 97 {
		h.wantFree(t, keys[i])
	}
	h.wantFree(t, keys[n-1])
}
