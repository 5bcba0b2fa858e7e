package raftlock

import (
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock"
)

// A restarted node ends the sessions of its previous incarnation: their
// locks are free at once, other owners' sessions and the kept one are
// untouched, and the ended sessions can no longer be renewed.
func TestEndSessionsOf(t *testing.T) {
	t.Parallel()
	s := openSingle(t, t.TempDir(), "127.0.0.1:0", time.Now)
	defer s.Close()
	ctx := t.Context()
	session := func(owner string) lock.SessionID {
		id, err := s.CreateSession(ctx, owner, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	old1, old2, keep, other := session("node-a"), session("node-a"), session("node-a"), session("node-b")
	for key, sess := range map[string]lock.SessionID{"k1": old1, "k2": old2, "k3": keep, "k4": other} {
		if _, err := s.Acquire(ctx, sess, key); err != nil {
			t.Fatalf("Acquire(%s): %v", key, err)
		}
	}

	n, err := s.EndSessionsOf(ctx, "node-a", keep)
	if err != nil || n != 2 {
		t.Fatalf("EndSessionsOf = %d, %v; want 2 sessions ended", n, err)
	}
	for key, held := range map[string]bool{"k1": false, "k2": false, "k3": true, "k4": true} {
		_, ok, err := s.Holder(ctx, key)
		if err != nil || ok != held {
			t.Fatalf("Holder(%s) held=%v, %v; want %v", key, ok, err, held)
		}
	}
	for _, id := range []lock.SessionID{old1, old2} {
		if err := s.Renew(ctx, id); !errors.Is(err, lock.ErrSessionExpired) {
			t.Fatalf("Renew of ended session %s: %v; want ErrSessionExpired", id, err)
		}
	}
	if _, err := s.Acquire(ctx, other, "k1"); err != nil {
		t.Fatalf("k1 after its owner's session ended: %v", err)
	}
	// Nothing left to end; bad input is refused.
	if n, err := s.EndSessionsOf(ctx, "node-a", keep); err != nil || n != 0 {
		t.Fatalf("second EndSessionsOf = %d, %v; want 0", n, err)
	}
	if _, err := s.EndSessionsOf(ctx, "", ""); !errors.Is(err, lock.ErrInvalid) {
		t.Fatalf("EndSessionsOf(\"\") = %v; want ErrInvalid", err)
	}
}
