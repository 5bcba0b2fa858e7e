package raftlock

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// groupsQueueBackend is Groups seen as one queuetest.Backend, sharded
// by group (queue.Sharded), which the suite asks of it.
type groupsQueueBackend struct{ queueBackend }

func (b groupsQueueBackend) Shard(actor string) int { return b.Notifier.(GroupQueues).Shard(actor) }

func groupsBackend(gs *Groups) groupsQueueBackend {
	return groupsQueueBackend{queueBackend{gs.Queues(), gs}}
}

// TestGroupsQueueConformance runs queuetest against one node of three
// groups: the suite's actors fall in different groups, and its sends
// cross them.
func TestGroupsQueueConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		c := newGroupsClusterWith(t, 1, 3, nil, withRetention(o.Retention))
		return groupsBackend(c.nodes[0])
	})
}

// TestGroupsQueueConformanceFollower runs queuetest against a follower
// of a three-node cluster of three groups.
func TestGroupsQueueConformanceFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster per subtest")
	}
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		c := newGroupsClusterWith(t, 3, 3, nil, withRetention(o.Retention))
		gs := c.nodes[(c.leader(0)+1)%3]
		return groupsBackend(gs)
	})
}

func dueIDs(t *testing.T, q queue.Store, actor string) string {
	t.Helper()
	msgs, err := q.Due(t.Context(), actor, time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return strings.Join(ids, " ")
}

// Messages an actor sends to actors of other groups are moved to their
// groups: at once by the append that sends them, or by the sender
// group's leader when they were left behind, in their order, once each.
func TestGroupsRelayMessages(t *testing.T) {
	t.Parallel()
	c := newGroupsCluster(t, 1, 3, nil)
	gs := c.nodes[0]
	q := gs.Queues()
	ctx := t.Context()
	sender, to1, to2 := keyIn(0, 3), keyIn(1, 3), keyIn(2, 3)
	ordered := func(id, to string) queue.Message {
		return queue.Message{ID: id, Actor: to, Method: "add", Ordered: true}
	}

	// Through Groups.Append: visible in the receivers' groups when it
	// returns, gone from the sender's.
	tail, err := gs.Append(ctx, sender, 1, 0, []journal.Entry{sendEntry(ordered("a1", to1)), sendEntry(ordered("a2", to1)), sendEntry(ordered("b1", to2))})
	if err != nil {
		t.Fatal(err)
	}
	if got := dueIDs(t, q, to1) + "|" + dueIDs(t, q, to2); got != "a1|b1" {
		t.Fatalf("due at to1|to2 after the append = %q, want a1|b1 (a2 behind a1)", got)
	}
	if left, err := gs.Group(0).Queues().queued(ctx, to1, 10); err != nil || len(left) != 0 {
		t.Fatalf("the sender's group still holds %+v, %v", left, err)
	}

	// Left behind (appended to the sender's group alone): the group's
	// leader relays them, in order.
	for i := range 5 {
		id := fmt.Sprintf("c%d", i)
		if tail, err = gs.Group(0).Append(ctx, sender, 1, tail, []journal.Entry{sendEntry(ordered(id, to2))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the relay of c0..c4", func() error {
		if left, err := gs.Group(0).Queues().queued(ctx, to2, 10); err != nil || len(left) != 0 {
			return fmt.Errorf("%d left in the sender's group (%v)", len(left), err)
		}
		return nil
	})
	// to2's queue is b1 c0 c1 c2 c3 c4, in that order: each ack of the
	// head makes the next due.
	var got []string
	seq := uint64(0)
	for range 6 {
		head := dueIDs(t, q, to2)
		got = append(got, head)
		if seq, err = gs.Append(ctx, to2, 1, seq, []journal.Entry{{Kind: journal.KindMessageAck, IdempotencyKey: head}}); err != nil {
			t.Fatalf("ack of %s: %v", head, err)
		}
	}
	if s := strings.Join(got, " "); s != "b1 c0 c1 c2 c3 c4" {
		t.Fatalf("to2 received %q", s)
	}
	st, err := q.Stats(ctx)
	if err != nil || len(st) != 1 || st[0].Pending != 2 || st[0].Scheduled != 0 {
		t.Fatalf("Stats = %+v, %v; want the 2 messages of to1 pending", st, err)
	}
	// A message relayed again (a relay cut short before its handoff) is
	// a duplicate in the receiver's group.
	if acc, err := q.Enqueue(ctx, ordered("a1", to1)); err != nil || !acc.Duplicate {
		t.Fatalf("a1 enqueued again = %+v, %v; want a duplicate", acc, err)
	}
}

// Notify hears of the actors of every group, with one group as with
// three (the relays' notifications are not passed on).
func TestGroupsQueueNotify(t *testing.T) {
	t.Parallel()
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			c := newGroupsCluster(t, 1, k, nil)
			q := c.nodes[0].Queues()
			heard := make(chan string, 64)
			q.Notify(func(actor string, _ time.Time) { heard <- actor })
			for g := range k {
				actor := keyIn(g, k)
				if _, err := q.Enqueue(t.Context(), queue.Message{ID: fmt.Sprint("m", g), Actor: actor, Method: "add"}); err != nil {
					t.Fatal(err)
				}
				select {
				case got := <-heard:
					if got != actor {
						t.Fatalf("heard of %s, want %s", got, actor)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("no notification for %s (group %d of %d)", actor, g, k)
				}
			}
		})
	}
}
