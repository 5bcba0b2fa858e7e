package raftlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock"
)

// A step of the leader's wall clock (NTP, an operator) while it leads
// moves no stamp: its office clock advances by the monotonic clock. Were
// the stamps to jump 30 s ahead, every session would lapse at once while
// its owner, timing its lease on its own monotonic clock, kept renewing
// and serving.
func TestLeaderWallClockStepEndsNoSession(t *testing.T) {
	var offsets [3]atomic.Int64
	origin := time.Now()
	c := newClusterWith(t, 3, nil, func(cfg *Config) {
		i := int(cfg.NodeID[1] - '1')
		cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offsets[i].Load())) }
		cfg.Monotonic = func() time.Duration { return time.Since(origin) }
	})
	leader := c.leader()
	ctx := context.Background()
	const ttl = 2 * time.Second
	var followers []*Store
	for i, s := range c.nodes {
		if i != leader {
			followers = append(followers, s)
		}
	}
	ids := make([]lock.SessionID, len(followers))
	for i, s := range followers {
		id, err := s.CreateSession(ctx, "owner-"+string(s.cfg.NodeID), ttl)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	renewAll := func() {
		t.Helper()
		var wg sync.WaitGroup
		for i, s := range followers {
			wg.Go(func() {
				if err := s.Renew(ctx, ids[i]); err != nil {
					t.Errorf("renewing %s's session after the leader's clock stepped: %v", s.cfg.NodeID, err)
				}
			})
		}
		wg.Wait()
	}
	renewAll()
	offsets[leader].Store(int64(30 * time.Second))
	// Renewals well within the TTL for longer than a TTL, and the reaper
	// (every ReapInterval) has run several times meanwhile.
	tick := time.NewTicker(ttl / 5)
	defer tick.Stop()
	for range 8 {
		<-tick.C
		renewAll()
		if t.Failed() {
			return
		}
	}
	// Stamps still advance: a session nobody renews lapses after its TTL.
	id, err := followers[0].CreateSession(ctx, "short", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := followers[0].Acquire(ctx, id, "k"); err != nil {
		t.Fatal(err)
	}
	// Judged on a node whose clock was not stepped, after it caught up
	// with the log (Sync; else it may not have seen the grant yet): the
	// stepped node's Holder reads its own (stepped) clock as soon as it is
	// not in office, and a leader change under load made it report the
	// lock free 30 s early, while the session was still alive.
	waitFor(t, 10*time.Second, "the unrenewed session's lock to be free", func() error {
		if err := followers[1].Sync(ctx); err != nil {
			return err
		}
		if _, held, err := followers[1].Holder(ctx, "k"); err != nil || held {
			return fmt.Errorf("held=%v err=%v", held, err)
		}
		return nil
	})
	if err := followers[0].Renew(ctx, id); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("renewing the lapsed session: %v, want ErrSessionExpired", err)
	}
}
