package loomtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loom-mesh/loom/node"
)

// WaitSettled waits until the cluster has recovered from what the test
// did to it, polling the nodes' own state (there is no event for most of
// it), and fails the test if that takes longer than Options.Timeout,
// saying what had not settled. The cluster has settled when, for every
// group of running nodes the cut links leave connected (the whole
// cluster when nothing is cut):
//
//   - if the group is a majority: each of its nodes sees exactly the
//     group's nodes alive in gossip (a killed or stopped node dead, a
//     restarted one back), and its placement ring has exactly them; its
//     nodes agree on a Raft leader among them; and each has a valid
//     coordinator session (a restarted node, one whose lease was
//     resumed), except a node whose lease is paused, which must have
//     dropped its actors;
//   - if not: its nodes have dropped their actors (their sessions have
//     lapsed). Their own view of membership is not waited for: alone,
//     with nobody to confirm its suspicions, a node's gossip takes its
//     longest suspicion timeout (about 18 s with the local preset) to
//     declare the others dead;
//   - the actors that were active on a node when it was killed, isolated
//     or had its lease paused are no longer locked by that node's session,
//     as a node of the majority sees it (or that session is alive after
//     all): the next call activates them on their new owner, from their
//     journals;
//   - when the cluster is whole, the client knows every running node.
//
// After it returns, a call to any actor placed in the majority succeeds
// (barring new faults).
func (c *Cluster) WaitSettled() {
	c.t.Helper()
	start := time.Now()
	c.waitFor("the cluster to settle", c.settled, true)
	c.t.Logf("loomtest: the cluster settled in %v", time.Since(start).Round(time.Millisecond))
}

// view is what the settle check reads of one running node.
type view struct {
	i      int
	id     string
	n      *node.Node
	paused bool
}

// settled reports nil once the cluster has settled (see WaitSettled),
// else what has not.
func (c *Cluster) settled() error {
	c.mu.Lock()
	groups := c.groupsLocked()
	quorum := c.quorum()
	views := map[int]view{}
	for i, m := range c.members {
		if !m.down {
			views[i] = view{i: i, id: m.id, n: m.n, paused: m.paused}
		}
	}
	orphans := make(map[string]orphan, len(c.orphans))
	for k, o := range c.orphans {
		orphans[k] = o
	}
	cl := c.client
	c.mu.Unlock()

	var judge *node.Node // a node of the majority, to read locks from
	var sessions []string
	for _, g := range groups {
		var want []string
		for _, i := range g {
			want = append(want, views[i].id)
		}
		want = sortedIDs(want)
		majority := len(g) >= quorum
		leader := ""
		for _, i := range g {
			v := views[i]
			info := v.n.Info()
			if majority {
				if got := aliveIDs(info); !slices.Equal(got, want) {
					return fmt.Errorf("%s sees %v alive, want %v", v.id, got, want)
				}
				if info.Ring == nil || !slices.Equal(sortedIDs(info.Ring.Members), want) {
					return fmt.Errorf("%s's ring is %v, want %v", v.id, ringOf(info), want)
				}
			}
			if !majority || v.paused {
				if k := active(info); k > 0 {
					return fmt.Errorf("%s (lease lapsing: %s) still has %d actors active", v.id, why(majority), k)
				}
				continue
			}
			if info.Leader == "" || !slices.Contains(want, info.Leader) {
				return fmt.Errorf("%s knows no Raft leader among %v (leader %q)", v.id, want, info.Leader)
			}
			if leader == "" {
				leader = info.Leader
			} else if info.Leader != leader {
				return fmt.Errorf("%s follows Raft leader %s, another node %s", v.id, info.Leader, leader)
			}
			lk := v.n.Health().Components.Locks
			if lk == nil || !lk.Valid {
				return fmt.Errorf("%s has no valid coordinator session", v.id)
			}
			sessions = append(sessions, lk.Session)
			judge = v.n
		}
	}
	if len(orphans) > 0 {
		if judge == nil {
			return fmt.Errorf("no group of running nodes has a majority (%d of %d): the actors of a failed node cannot move", quorum, len(c.members))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for key, o := range orphans {
			if slices.Contains(sessions, o.session) {
				continue // the session did not lapse: nothing moved
			}
			typ, id, _ := strings.Cut(key, "/")
			d, err := judge.DumpJournal(ctx, typ, id, false)
			if err != nil {
				return fmt.Errorf("reading %s's lock on %s: %w", key, judge.ID(), err)
			}
			if d.Lock != nil && d.Lock.Session == o.session {
				return fmt.Errorf("%s is still locked by the session of %s, which failed (it lapses by its TTL)", key, o.node)
			}
		}
		c.mu.Lock()
		for k, o := range orphans {
			if c.orphans[k] == o {
				delete(c.orphans, k)
			}
		}
		c.mu.Unlock()
	}
	if cl != nil && len(groups) == 1 {
		var want []string
		for _, v := range views {
			want = append(want, v.id)
		}
		if got, want := sortedIDs(cl.Members()), sortedIDs(want); !slices.Equal(got, want) {
			return fmt.Errorf("the client knows %v, want %v", got, want)
		}
	}
	return nil
}

func why(majority bool) string {
	if majority {
		return "paused"
	}
	return "cut off from the majority"
}

// aliveIDs are the members info's node sees alive, sorted.
func aliveIDs(info node.ClusterInfo) []string {
	var ids []string
	for _, m := range info.Members {
		if m.State == "alive" {
			ids = append(ids, m.ID)
		}
	}
	return sortedIDs(ids)
}

func ringOf(info node.ClusterInfo) []string {
	if info.Ring == nil {
		return nil
	}
	return info.Ring.Members
}

// active is how many actors info's node has in memory.
func active(info node.ClusterInfo) int {
	k := 0
	for _, n := range info.Actors {
		k += n
	}
	return k
}
