package raftlock

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

// TestJournalConformance runs journaltest against a one-node cluster;
// Reopen restarts the node on the same data dir and address.
func TestJournalConformance(t *testing.T) {
	t.Parallel()
	type opened struct {
		dir, addr string
	}
	where := map[journal.Journal]opened{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			dir := t.TempDir()
			s := openSingle(t, dir, "127.0.0.1:0", nil)
			where[s] = opened{dir, string(s.Addr())}
			return s
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			o := where[old]
			s := openSingle(t, o.dir, o.addr, nil)
			if err := s.Sync(t.Context()); err != nil {
				t.Fatalf("Sync after reopen: %v", err)
			}
			where[s] = o
			return s
		},
	})
}

// TestJournalConformanceFlushing runs journaltest against a one-node
// cluster whose state machine flushes after every Raft entry, so that
// reads and applies constantly merge the overlays with fsm.db (with the
// default bounds the suite's few writes never leave the overlay).
func TestJournalConformanceFlushing(t *testing.T) {
	t.Parallel()
	type opened struct {
		dir, addr string
	}
	where := map[journal.Journal]opened{}
	open := func(t *testing.T, dir, addr string) *Store {
		s := openSingle(t, dir, addr, nil)
		flushEveryEntry(s)
		where[s] = opened{dir, string(s.Addr())}
		return s
	}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal { return open(t, t.TempDir(), "127.0.0.1:0") },
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			s := open(t, where[old].dir, where[old].addr)
			if err := s.Sync(t.Context()); err != nil {
				t.Fatalf("Sync after reopen: %v", err)
			}
			return s
		},
	})
}

// flushEveryEntry sets s's state machine to flush after every apply.
func flushEveryEntry(s *Store) {
	s.fsm.mu.Lock() // ApplyBatch reads the bounds under it
	s.fsm.flushKeys = 1
	s.fsm.mu.Unlock()
}

// TestJournalConformanceFollower runs journaltest against a follower of a
// three-node cluster: every write is forwarded to the leader, and every
// read is served by the follower's replica. Reopen restarts the follower.
func TestJournalConformanceFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster per subtest")
	}
	t.Parallel()
	clusters := map[journal.Journal]*testCluster{}
	index := map[journal.Journal]int{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			c := newCluster(t, 3, nil)
			i := c.follower()
			s := c.nodes[i]
			clusters[s], index[s] = c, i
			return s
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			c, i := clusters[old], index[old]
			c.fwd.set(nodeID(i), nil)
			c.nodes[i] = nil // the suite closed it
			s := c.restart(i)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := s.Sync(ctx); err != nil {
				t.Fatalf("Sync after restart: %v", err)
			}
			clusters[s], index[s] = c, i
			return s
		},
	})
}

// TestLockConformance runs locktest against a one-node cluster whose leader
// clock is locktest's FakeClock.
func TestLockConformance(t *testing.T) {
	t.Parallel()
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		clock := locktest.NewFakeClock(time.Time{})
		s := openSingle(t, t.TempDir(), "127.0.0.1:0", clock.Now)
		return s, clock.Advance
	})
}

// TestLockConformanceFlushing is TestLockConformance with a state machine
// that flushes after every Raft entry.
func TestLockConformanceFlushing(t *testing.T) {
	t.Parallel()
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		clock := locktest.NewFakeClock(time.Time{})
		s := openSingle(t, t.TempDir(), "127.0.0.1:0", clock.Now)
		flushEveryEntry(s)
		return s, clock.Advance
	})
}
