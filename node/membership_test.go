package node_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
)

// raftView is what the leader's configuration says: voters and non-voters
// by Raft server id.
func raftView(c *nodetest.Cluster) (leader string, voters, nonvoters []string) {
	for _, nd := range c.Nodes {
		info := nd.Info()
		if info.Raft == nil || info.Raft.State != "Leader" {
			continue
		}
		for _, s := range info.Raft.Servers {
			if s.Suffrage == "Voter" {
				voters = append(voters, s.ID)
			} else {
				nonvoters = append(nonvoters, s.ID)
			}
		}
		slices.Sort(voters)
		slices.Sort(nonvoters)
		return nd.ID(), voters, nonvoters
	}
	return "", nil, nil
}

func raftID(nd *node.Node) string { return nd.Info().Raft.ID }

// followerIndex is the index of a node other than the seed that is not the
// Raft leader.
func followerIndex(t *testing.T, c *nodetest.Cluster) int {
	t.Helper()
	var leader string
	nodetest.WaitFor(t, 15*time.Second, "a leader", func() bool { leader, _, _ = raftView(c); return leader != "" })
	for i := 1; i < len(c.Nodes); i++ {
		if c.Nodes[i].ID() != leader {
			return i
		}
	}
	t.Fatal("no follower other than the seed")
	return -1
}

// A node restarted on a wiped data dir comes back as a new Raft server
// (it never speaks under the id of the server whose log it lost): it is
// added as a non-voter, promoted once it has caught up, and the leader
// removes its previous incarnation. What was acknowledged before stays.
func TestWipedNodeRejoinsAsANewRaftServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := nodetest.Start(t, 3)
	ctx := context.Background()
	for i := range 10 {
		if _, err := builtin.CounterAdd.Call(ctx, c.Nodes[i%3], fmt.Sprintf("w%d", i), builtin.CounterDelta{Delta: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	w := followerIndex(t, c)
	oldID := raftID(c.Nodes[w])
	kept := c.Restart(t, w, false)
	if id := raftID(kept); id != oldID {
		t.Fatalf("restarted with its data dir, %s is Raft server %s, was %s", kept.ID(), id, oldID)
	}
	wiped := c.Restart(t, w, true)
	newID := raftID(wiped)
	if newID == oldID {
		t.Fatalf("restarted on a wiped data dir, %s is still Raft server %s", wiped.ID(), oldID)
	}
	nodetest.WaitFor(t, 30*time.Second, "the new server promoted and the old one removed", func() bool {
		_, voters, nonvoters := raftView(c)
		return len(voters) == 3 && slices.Contains(voters, newID) && !slices.Contains(voters, oldID) && !slices.Contains(nonvoters, oldID)
	})
	for i := range 10 {
		id := fmt.Sprintf("w%d", i)
		var v builtin.CounterValue
		nodetest.WaitFor(t, 15*time.Second, "a read of "+id+" through the wiped node", func() bool {
			var err error
			v, err = builtin.CounterGet.Call(ctx, wiped, id)
			return err == nil
		})
		if v.Value != int64(i+1) {
			t.Fatalf("%s = %d after the wipe, want %d", id, v.Value, i+1)
		}
	}
}

// Non-voters are promoted to keep cluster.voters voters: with 3 voters and
// 2 non-voters, two voters stopped one after the other for longer than
// the dead-voter timeout are replaced, and the configuration is back to 3
// voters, every one of them alive.
func TestNonvotersReplaceDeadVoters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 5-node cluster")
	}
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) {
		cfg.Cluster.DeadVoterTimeout = time.Second
	})
	c.Join(t, "n4")
	c.Join(t, "n5")
	nodetest.WaitFor(t, 30*time.Second, "3 voters and 2 non-voters", func() bool {
		_, voters, nonvoters := raftView(c)
		return len(voters) == 3 && len(nonvoters) == 2
	})
	ctx := context.Background()
	for round := range 2 {
		_, voters, _ := raftView(c)
		leader, _, _ := raftView(c)
		var victim *node.Node
		for _, nd := range c.Nodes {
			if nd.ID() != leader && nd.ID() != "n1" && slices.Contains(voters, raftID(nd)) && nd.Info().Raft.State != "Shutdown" {
				victim = nd
				break
			}
		}
		if victim == nil {
			t.Fatalf("round %d: no voter to stop besides the leader and the seed (voters %v)", round, voters)
		}
		gone := raftID(victim)
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := victim.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		c.Nodes = slices.DeleteFunc(c.Nodes, func(nd *node.Node) bool { return nd == victim })
		nodetest.WaitFor(t, 30*time.Second, fmt.Sprintf("round %d: %s replaced by a promoted non-voter", round, victim.ID()), func() bool {
			_, voters, _ := raftView(c)
			if len(voters) != 3 || slices.Contains(voters, gone) {
				return false
			}
			for _, v := range voters {
				if !slices.ContainsFunc(c.Nodes, func(nd *node.Node) bool { return raftID(nd) == v }) {
					return false
				}
			}
			return true
		})
	}
	if _, err := builtin.CounterAdd.Call(ctx, c.Nodes[0], "after", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatalf("a write after two voters were replaced: %v", err)
	}
}
