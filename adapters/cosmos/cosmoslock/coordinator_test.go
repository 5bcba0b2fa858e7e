package cosmoslock_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/adapters/cosmos/cosmoslock"
	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

func options(s *cosmostest.Server, db string) cosmoslock.Options {
	return cosmoslock.Options{Cosmos: cosmos.Options{
		Endpoint: s.Endpoint, Key: s.Key, Database: db, InsecureSkipVerify: true,
	}}
}

// newTestCoordinator returns a coordinator on database db of the shared
// server, reading clock; closed when t ends.
func newTestCoordinator(t testing.TB, db string, clock *locktest.FakeClock) *cosmoslock.Coordinator {
	t.Helper()
	c, err := cosmoslock.NewWithClock(t.Context(), options(cosmostest.Shared(t), db), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestConformance runs locktest, with a thousand locks on one session in
// place of two thousand: the test server answers one request at a time
// (about 3 ms each here).
func TestConformance(t *testing.T) {
	locktest.RunWith(t, locktest.Options{ManyLocks: 1000}, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		clock := locktest.NewFakeClock(time.Time{})
		return newTestCoordinator(t, cosmostest.Database(t), clock), clock.Advance
	})
}

// TestObserverJudgesExpiry: another node judges a session lapsed only
// when its document has not changed for the TTL on that node's own clock,
// counted from when it first saw the document as it is; a renewal it
// sees starts the count again.
func TestObserverJudgesExpiry(t *testing.T) {
	db := cosmostest.Database(t)
	clockA, clockB := locktest.NewFakeClock(time.Time{}), locktest.NewFakeClock(time.Time{})
	a, b := newTestCoordinator(t, db, clockA), newTestCoordinator(t, db, clockB)
	ctx := t.Context()
	const ttl = 2 * time.Second
	sa, err := a.CreateSession(ctx, "node-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Acquire(ctx, sa, "actor")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.CreateSession(ctx, "node-b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// B's clock runs far ahead before B has seen A's session: that time
	// does not count, B has not watched it.
	clockB.Advance(10 * ttl)
	if err := b.Renew(ctx, sb); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("B's own session after 10 TTL without renewal: %v; want ErrSessionExpired", err)
	}
	if sb, err = b.CreateSession(ctx, "node-b", ttl); err != nil {
		t.Fatal(err)
	}
	_, err = b.Acquire(ctx, sb, "actor")
	var he *lock.HeldError
	if !errors.As(err, &he) || he.Token != tok || he.Holder != "node-a" {
		t.Fatalf("B's first look: %v; want held by node-a with token %d", err, tok)
	}
	// A renews while B watches: B's count restarts each time it sees a
	// new etag.
	for range 3 {
		clockA.Advance(ttl / 2)
		clockB.Advance(ttl * 3 / 4)
		if err := a.Renew(ctx, sa); err != nil {
			t.Fatal(err)
		}
		if err := b.Renew(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Acquire(ctx, sb, "actor"); !errors.Is(err, lock.ErrHeld) {
			t.Fatalf("B while A renews: %v; want ErrHeld", err)
		}
	}
	// A stops renewing; B's clock passes the TTL since it saw the last
	// etag: A's session is judged lapsed and the lock goes to B with a
	// higher token.
	for _, d := range []time.Duration{ttl / 2, ttl/2 + time.Millisecond} {
		clockB.Advance(d)
		if err := b.Renew(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	tokB, err := b.Acquire(ctx, sb, "actor")
	if err != nil || tokB <= tok {
		t.Fatalf("B after A's TTL on B's clock: token %d, %v; want > %d", tokB, err, tok)
	}
	// The lapsed session's document is gone: A cannot renew it back.
	if err := a.Renew(ctx, sa); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("A renewing after B judged it lapsed: %v; want ErrSessionExpired", err)
	}
}

// TestRenewBeatsJudgement: an observer that judged a session lapsed from
// an etag that a renewal has since changed does not end it: its
// conditional delete fails, and it looks again.
func TestRenewBeatsJudgement(t *testing.T) {
	db := cosmostest.Database(t)
	clockA, clockB := locktest.NewFakeClock(time.Time{}), locktest.NewFakeClock(time.Time{})
	a, b := newTestCoordinator(t, db, clockA), newTestCoordinator(t, db, clockB)
	ctx := t.Context()
	const ttl = 2 * time.Second
	sa, _ := a.CreateSession(ctx, "node-a", ttl)
	tok, err := a.Acquire(ctx, sa, "k")
	if err != nil {
		t.Fatal(err)
	}
	if info, ok, err := b.Holder(ctx, "k"); err != nil || !ok || info.Token != tok {
		t.Fatalf("Holder from B = %+v, %v, %v", info, ok, err)
	}
	clockB.Advance(2 * ttl)                  // B would judge it lapsed...
	if err := a.Renew(ctx, sa); err != nil { // ...but A renewed first
		t.Fatal(err)
	}
	if info, ok, err := b.Holder(ctx, "k"); err != nil || !ok || info.Token != tok {
		t.Fatalf("Holder from B after A's renewal = %+v, %v, %v; want held", info, ok, err)
	}
	if err := a.Renew(ctx, sa); err != nil {
		t.Fatalf("A's session after B looked: %v", err)
	}
}

// TestEndSessionsOf: a restarted node ends its previous incarnation's
// sessions, freeing their locks at once.
func TestEndSessionsOf(t *testing.T) {
	db := cosmostest.Database(t)
	clock := locktest.NewFakeClock(time.Time{})
	old, c := newTestCoordinator(t, db, clock), newTestCoordinator(t, db, clock)
	ctx := t.Context()
	s1, _ := old.CreateSession(ctx, "node-a", time.Minute)
	if _, err := old.Acquire(ctx, s1, "k"); err != nil {
		t.Fatal(err)
	}
	other, _ := old.CreateSession(ctx, "node-b", time.Minute)
	keep, _ := c.CreateSession(ctx, "node-a", time.Minute)
	n, err := c.EndSessionsOf(ctx, "node-a", keep)
	if err != nil || n != 1 {
		t.Fatalf("EndSessionsOf = %d, %v; want 1", n, err)
	}
	if _, ok, err := c.Holder(ctx, "k"); err != nil || ok {
		t.Fatalf("Holder after EndSessionsOf: held %v, %v; want free", ok, err)
	}
	for _, s := range []lock.SessionID{keep, other} {
		if err := c.Renew(ctx, s); err != nil {
			t.Fatalf("Renew(%s): %v", s, err)
		}
	}
}
