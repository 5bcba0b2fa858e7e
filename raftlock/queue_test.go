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

// queueBackend is a Store (or Groups) seen as one queuetest.Backend: its
// journal and its queues (two faces, since Release and Stats mean other
// things on the Store).
type queueBackend struct {
	queuetest.Notifier // a queue.Store and queue.Notifier
	j                  journal.Journal
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

// TestAckSurvivesALeaderChange: a message enqueued through the leader,
// the leader stopped; the acknowledging append through a follower goes to
// the new leader and applies once (the replica layer retries it across the
// change, and its dedup keeps a retry from applying twice): the journal
// holds one ack, the message is gone on every replica, and a second ack is
// refused with journal.ErrAck.
func TestAckSurvivesALeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	leader := c.leader()
	if _, err := c.nodes[leader].Queues().Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add", Ordered: true}); err != nil {
		t.Fatal(err)
	}
	f := (leader + 1) % 3
	s := c.nodes[f]
	c.stop(leader)
	ack := []journal.Entry{{Kind: journal.KindInvocation, Method: "add"}, {Kind: journal.KindMessageAck, IdempotencyKey: "m1"}}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tail, err := s.Append(actx, "counter/a", 1, 0, ack)
	if err != nil {
		t.Fatalf("append with the ack after the leader change: %v", err)
	}
	if _, err := s.Append(ctx, "counter/a", 1, tail, ack); !errors.Is(err, journal.ErrAck) || !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("second ack: %v, want journal.ErrAck and queue.ErrNotFound", err)
	}
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		es, err := n.Read(ctx, "counter/a", 0)
		if err != nil || len(es) != 2 || es[1].Kind != journal.KindMessageAck {
			t.Fatalf("%s: journal of counter/a: %+v, %v; want the invocation and one ack", nodeID(i), es, err)
		}
		due, err := n.Queues().Due(ctx, "counter/a", time.Now().Add(time.Hour), 10)
		if err != nil || len(due) != 0 {
			t.Fatalf("%s: due after the ack: %+v, %v", nodeID(i), due, err)
		}
	}
}

// TestQueueNotifyOnFollower: a message enqueued through the leader is
// announced on a follower when the follower applies it, with its wake.
func TestQueueNotifyOnFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	type note struct {
		actor string
		at    time.Time
	}
	notes := make(chan note, 64)
	c.nodes[c.follower()].Queues().Notify(func(actor string, at time.Time) { notes <- note{actor, at} })
	acc, err := c.nodes[c.leader()].Queues().Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/b", Method: "add"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-notes:
		if n.actor != "counter/b" || !n.at.Equal(acc.AcceptedAt) {
			t.Fatalf("notified %+v, want counter/b at %v", n, acc.AcceptedAt)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification on the follower")
	}
}

// TestQueueSurvivesRestartOfAllNodes: queues written before and after a
// snapshot are all there when every node of the cluster has been closed
// and started again (restored from its snapshot, then its log replayed).
func TestQueueSurvivesRestartOfAllNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	q := c.nodes[c.leader()].Queues()
	later := time.Now().Add(time.Hour)
	for _, m := range []queue.Message{
		{ID: "o1", Actor: "counter/a", Method: "add", Ordered: true},
		{ID: "o2", Actor: "counter/a", Method: "add", Ordered: true},
		{ID: "dead", Actor: "counter/a", Method: "add"},
	} {
		if _, err := q.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.DeadLetter(ctx, queue.Failure{Actor: "counter/a", ID: "dead", Reason: "boom"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := n.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Enqueue(ctx, queue.Message{ID: "delayed", Actor: "counter/c", Method: "add", DeliverAt: later}); err != nil {
		t.Fatal(err)
	}
	if err := q.SetReminder(ctx, queue.Reminder{Actor: "counter/c", Name: "tick", Method: "tick", DueAt: later, Period: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ack := []journal.Entry{{Kind: journal.KindInvocation, Method: "add"}, {Kind: journal.KindMessageAck, IdempotencyKey: "o1"}}
	if _, err := c.nodes[c.follower()].Append(ctx, "counter/a", 1, 0, ack); err != nil {
		t.Fatal(err)
	}
	want, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c.closeAll()
	for i := range c.nodes {
		c.nodes[i] = nil
	}
	for i := range c.nodes {
		c.restart(i)
	}
	for i, n := range c.nodes {
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		q := n.Queues()
		due, err := q.Due(ctx, "counter/a", time.Now(), 10)
		if err != nil || len(due) != 1 || due[0].ID != "o2" {
			t.Fatalf("%s: due of counter/a after the restart: %+v, %v; want o2", nodeID(i), due, err)
		}
		if dead, err := q.ListDead(ctx, queue.Filter{}); err != nil || len(dead) != 1 || dead[0].ID != "dead" || dead[0].LastError != "boom" {
			t.Fatalf("%s: dead letters after the restart: %+v, %v", nodeID(i), dead, err)
		}
		if rs, err := q.Reminders(ctx, "counter/c"); err != nil || len(rs) != 1 || !rs[0].DueAt.Equal(later) {
			t.Fatalf("%s: reminders after the restart: %+v, %v", nodeID(i), rs, err)
		}
		got, err := q.Stats(ctx)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: stats after the restart: %+v, %v; before: %+v", nodeID(i), got, err, want)
		}
	}
	if n, err := c.nodes[0].Queues().Release(ctx, "counter/c", later); err != nil || n != 2 {
		t.Fatalf("release of the delayed message and the reminder after the restart: %d, %v; want 2", n, err)
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

// TestQueueArgumentEdges: arguments the state machine must judge reach it
// as they were given. A negative dead-letter limit is refused by Replay
// and Purge as by ListDead (it once went on the wire as "no limit"), and
// Release refuses a bad actor key instead of finding nothing to release.
func TestQueueArgumentEdges(t *testing.T) {
	t.Parallel()
	s := openSingle(t, t.TempDir(), "127.0.0.1:0", nil)
	q, ctx := s.Queues(), t.Context()
	if _, err := q.Enqueue(ctx, queue.Message{ID: "d", Actor: "c/1", Method: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctx, queue.Failure{Actor: "c/1", ID: "d", Reason: "boom"}); err != nil {
		t.Fatal(err)
	}
	bad := queue.Filter{Limit: -1}
	if _, err := q.ListDead(ctx, bad); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("ListDead with limit -1: %v, want queue.ErrInvalid", err)
	}
	if n, err := q.Purge(ctx, bad); !errors.Is(err, queue.ErrInvalid) || n != 0 {
		t.Errorf("Purge with limit -1: %d, %v; want queue.ErrInvalid", n, err)
	}
	if n, err := q.Replay(ctx, bad, time.Now()); !errors.Is(err, queue.ErrInvalid) || n != 0 {
		t.Errorf("Replay with limit -1: %d, %v; want queue.ErrInvalid", n, err)
	}
	if dead, err := q.ListDead(ctx, queue.Filter{}); err != nil || len(dead) != 1 {
		t.Errorf("dead letters after the refused writes: %+v, %v; want d", dead, err)
	}
	if _, err := q.Release(ctx, "", time.Now()); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Release of the empty actor: %v, want queue.ErrInvalid", err)
	}
}

// TestQueueReleaseWithNothingDue: Release of an actor whose replica shows
// nothing to release at now commits nothing (a dispatcher asks often);
// once something is due it commits the release.
func TestQueueReleaseWithNothingDue(t *testing.T) {
	t.Parallel()
	s := openSingle(t, t.TempDir(), "127.0.0.1:0", nil)
	q, ctx := s.Queues(), t.Context()
	at := time.Now().Add(time.Hour)
	if _, err := q.Enqueue(ctx, queue.Message{ID: "later", Actor: "c/1", Method: "m", DeliverAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := s.AppliedIndex()
	for _, actor := range []string{"c/1", "c/2"} {
		for range 20 {
			if n, err := q.Release(ctx, actor, time.Now()); n != 0 || err != nil {
				t.Fatalf("Release of %s before its time: %d, %v", actor, n, err)
			}
		}
	}
	if after := s.AppliedIndex(); after != before {
		t.Fatalf("Releases with nothing due moved the applied index from %d to %d", before, after)
	}
	if n, err := q.Release(ctx, "c/1", at); n != 1 || err != nil {
		t.Fatalf("Release at the message's time: %d, %v; want 1", n, err)
	}
}
