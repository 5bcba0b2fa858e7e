package pglock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock"
)

// TestEndSessionsOf: a restarted node ends its previous incarnation's
// sessions, which frees their locks at once; the session it keeps, other
// owners' sessions and lapsed sessions are left alone.
func TestEndSessionsOf(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	c := newTestCoordinator(t, s, db, schema)
	advance := advancer(t, s, db, schema)
	ctx := context.Background()
	mk := func(owner string, ttl time.Duration) lock.SessionID {
		t.Helper()
		s, err := c.CreateSession(ctx, owner, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old1, old2 := mk("n1", time.Minute), mk("n1", time.Minute)
	lapsed := mk("n1", time.Second)
	keep, other := mk("n1", time.Minute), mk("n2", time.Minute)
	tok, err := c.Acquire(ctx, old1, "a/1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, other, "a/2"); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Second) // lapsed lapses

	n, err := c.EndSessionsOf(ctx, "n1", keep)
	if err != nil || n != 2 {
		t.Fatalf("EndSessionsOf = %d, %v; want 2 (old1, old2)", n, err)
	}
	for _, s := range []lock.SessionID{old1, old2, lapsed} {
		if err := c.Renew(ctx, s); !errors.Is(err, lock.ErrSessionExpired) {
			t.Errorf("Renew(%s) = %v, want ErrSessionExpired", s, err)
		}
	}
	for _, s := range []lock.SessionID{keep, other} {
		if err := c.Renew(ctx, s); err != nil {
			t.Errorf("Renew(%s) = %v, want alive", s, err)
		}
	}
	if _, held, err := c.Holder(ctx, "a/1"); err != nil || held {
		t.Fatalf("a/1 held=%v err=%v after its session ended", held, err)
	}
	tok2, err := c.Acquire(ctx, keep, "a/1")
	if err != nil || tok2 <= tok {
		t.Fatalf("re-acquire a/1 = %d, %v; want a token above %d", tok2, err, tok)
	}
	if info, held, err := c.Holder(ctx, "a/2"); err != nil || !held || info.Session != other {
		t.Fatalf("a/2 holder = %+v held=%v err=%v; want the other owner's session", info, held, err)
	}
	if n, err := c.EndSessionsOf(ctx, "n1", keep); err != nil || n != 0 {
		t.Fatalf("second EndSessionsOf = %d, %v; want 0", n, err)
	}
	if _, err := c.EndSessionsOf(ctx, "", ""); !errors.Is(err, lock.ErrInvalid) {
		t.Fatalf("EndSessionsOf(\"\") = %v, want ErrInvalid", err)
	}
}
