package raftlock

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// queueBackend is a Store seen as one queuetest.Backend: its journal and
// its Queues (two faces, since Release and Stats mean other things on the
// Store).
type queueBackend struct {
	Queues
	j *Store
}

func (b queueBackend) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	return b.j.Append(ctx, actor, token, expectedSeq, entries)
}
func (b queueBackend) Read(ctx context.Context, actor string, from uint64) ([]journal.Entry, error) {
	return b.j.Read(ctx, actor, from)
}
func (b queueBackend) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	return b.j.Tail(ctx, actor)
}
func (b queueBackend) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	return b.j.SaveSnapshot(ctx, actor, token, snap)
}
func (b queueBackend) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	return b.j.LoadSnapshot(ctx, actor)
}
func (b queueBackend) Truncate(ctx context.Context, actor string, token, through uint64) error {
	return b.j.Truncate(ctx, actor, token, through)
}

// TestQueueConformance runs queuetest against a one-node cluster.
func TestQueueConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		s := openSingleWith(t, t.TempDir(), withRetention(o.Retention))
		return queueBackend{s.Queues(), s}
	})
}

// TestQueueConformanceFollower runs queuetest against a follower of a
// three-node cluster: every write is forwarded to the leader, every read
// served by the follower's replica.
func TestQueueConformanceFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster per subtest")
	}
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		c := newClusterWith(t, 3, nil, withRetention(o.Retention))
		s := c.nodes[c.follower()]
		return queueBackend{s.Queues(), s}
	})
}

// TestAckSurvivesALeaderChange: a message enqueued, its leader stopped, a
// new leader elected; the acknowledging append through a follower succeeds
// once, and a second acknowledgement is refused on every replica.
func TestAckSurvivesALeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	leader := c.leader()
	q := c.nodes[leader].Queues()
	if _, err := q.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add", Ordered: true}); err != nil {
		t.Fatal(err)
	}
	notified := make(chan string, 16)
	f := (leader + 1) % 3
	c.nodes[f].Queues().Notify(func(actor string, _ time.Time) { notified <- actor })
	c.stop(leader)
	s := c.nodes[f]
	ack := []journal.Entry{{Kind: journal.KindInvocation, Method: "add"}, {Kind: journal.KindMessageAck, IdempotencyKey: "m1"}}
	var tail uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if tail, err = s.Append(ctx, "counter/a", 1, 0, ack); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("append with the ack after the leader change: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.Append(ctx, "counter/a", 1, tail, ack); !errors.Is(err, journal.ErrAck) {
		t.Fatalf("second ack: %v, want journal.ErrAck", err)
	}
	due, err := s.Queues().Due(ctx, "counter/a", time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 0 {
		t.Fatalf("due after the ack: %+v, %v", due, err)
	}
	// A message enqueued through the new leader is announced on the
	// follower that applies it.
	other := c.nodes[(f+1)%3]
	if other == nil {
		other = s
	}
	if _, err := other.Queues().Enqueue(ctx, queue.Message{ID: "m2", Actor: "counter/b", Method: "add"}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for a := ""; a != "counter/b"; {
		select {
		case a = <-notified: // counter/a's enqueue may come first
		case <-timeout:
			t.Fatal("no notification of counter/b on the follower")
		}
	}
}

// openSingleWith is openSingle with a config tweak.
func openSingleWith(t testing.TB, dir string, tweak func(*Config)) *Store {
	t.Helper()
	cfg := testConfig(t, "n1", dir, "127.0.0.1:0", nil, true)
	tweak(&cfg)
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Bootstrap([]raft.Server{s.LocalServer()}); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	waitFor(t, 10*time.Second, "single node leads", func() error {
		if !s.IsLeader() {
			return fmt.Errorf("state %v", s.State())
		}
		return nil
	})
	return s
}

// withRetention sets Config.MessageIDRetention to r, unless r is 0 (the
// default, DefaultConfig's).
func withRetention(r time.Duration) func(*Config) {
	return func(cfg *Config) {
		if r != 0 {
			cfg.MessageIDRetention = r
		}
	}
}
