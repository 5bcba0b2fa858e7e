package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
)

// Chain is the "chain" actor type: pass counts the passes it received and
// sends the next one, durably (ctx.Messages), to chain/<next> while any
// are left, so a chain of hops crosses the actors' Raft groups.
var Chain = runtime.NewType("chain", func(string) *struct{} { return &struct{}{} })

// ChainPass is the argument of chain.pass.
type ChainPass struct {
	Left int `json:"left"`
	Next int `json:"next"`
}

var ChainPassM = runtime.AddMethod(Chain, "pass", func(ctx runtime.Context, _ *struct{}, in ChainPass) (struct{}, error) {
	n, _, err := runtime.GetState[int](ctx.State(), "passes")
	if err != nil {
		return struct{}{}, err
	}
	if in.Left > 0 {
		b, _ := json.Marshal(ChainPass{Left: in.Left - 1, Next: in.Next + 1})
		if _, err := ctx.Messages().Send(ctx, runtime.Envelope{ActorType: "chain", ActorID: fmt.Sprint(in.Next), Method: "pass", Payload: b}); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, runtime.SetState(ctx.State(), "passes", n+1)
})

// ChainPasses is how many passes a hop received.
var ChainPasses = runtime.AddMethod0(Chain, "passes", func(ctx runtime.Context, _ *struct{}) (int, error) {
	n, _, err := runtime.GetState[int](ctx.State(), "passes")
	return n, err
})

// A cluster of three nodes with three Raft groups: the groups' leaders
// spread over the nodes, every group has the three voters, calls through
// any node land in the groups of their actors, and a chain of durable
// messages crosses groups, each hop delivered once.
func TestRaftGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) { cfg.Cluster.RaftGroups = 3 }, Chain)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	nodetest.WaitFor(t, 30*time.Second, "a leader per node, three voters per group", func() bool {
		leads := map[string]int{}
		for _, g := range c.Nodes[0].Info().Raft.Groups {
			if len(g.Voters) != 3 || g.Leader == "" {
				return false
			}
			leads[g.Leader]++
		}
		return len(leads) == 3
	})

	// Each group's Raft figures are on /metrics, under its number.
	mfs := scrape(t, c.Nodes[1])
	for g := range 3 {
		if known := value(mfs, "loom_raft_leader_known", "group", fmt.Sprint(g)); known != 1 {
			t.Errorf("loom_raft_leader_known{group=%q} = %v, want 1", fmt.Sprint(g), known)
		}
	}
	if leaders := value(mfs, "loom_raft_state", "state", "Leader"); leaders != 1 {
		t.Errorf("node-2 leads %v groups by loom_raft_state, want 1", leaders)
	}

	const actors = 30
	groups := map[int]bool{}
	for i := range actors {
		id := fmt.Sprintf("c%d", i)
		groups[raftlock.GroupOf("counter/"+id, 3)] = true
		if _, err := builtin.CounterAdd.Call(ctx, c.Nodes[i%3], id, builtin.CounterDelta{Delta: int64(i + 1)}); err != nil {
			t.Fatalf("add to %s through %s: %v", id, c.Nodes[i%3].ID(), err)
		}
	}
	if len(groups) != 3 {
		t.Fatalf("the counters fall in groups %v, want all three", groups)
	}
	for i := range actors {
		id := fmt.Sprintf("c%d", i)
		v, err := builtin.CounterGet.Call(ctx, c.Nodes[(i+1)%3], id)
		if err != nil || v.Value != int64(i+1) {
			t.Fatalf("%s = %d, %v; want %d", id, v.Value, err, i+1)
		}
	}

	// Every counter lives on its group's leader, which commits its
	// appends itself. Moved to another node, a group's leadership takes
	// the group's counters with it, and they answer there with their
	// values.
	byID := map[string]*node.Node{}
	for _, n := range c.Nodes {
		byID[n.ID()] = n
	}
	leaderOf := func(g int) *node.Node { return byID[c.Nodes[0].Info().Raft.Groups[g].Leader] }
	hostedOnLeaders := func() bool {
		for i := range actors {
			id := fmt.Sprintf("c%d", i)
			leader := leaderOf(raftlock.GroupOf("counter/"+id, 3))
			if leader == nil {
				return false
			}
			for _, n := range c.Nodes {
				if n.Runtime().Hosts("counter", id) != (n == leader) {
					return false
				}
			}
		}
		return true
	}
	if !hostedOnLeaders() {
		t.Fatal("a counter is active elsewhere than on its group's leader, or on two nodes")
	}
	// The cluster client sends each call to its actor's group's leader.
	cl, err := client.Dial(ctx, []string{c.Nodes[2].GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nodetest.WaitFor(t, 10*time.Second, "the client placing each counter on its group's leader", func() bool {
		for i := range actors {
			id := fmt.Sprintf("c%d", i)
			owner, ok := cl.Owner("counter", id)
			if leader := leaderOf(raftlock.GroupOf("counter/"+id, 3)); !ok || leader == nil || owner != leader.ID() {
				return false
			}
		}
		return true
	})
	const moved = 1
	from := leaderOf(moved)
	to := c.Nodes[0]
	if to == from {
		to = c.Nodes[1]
	}
	if err := node.TransferGroupLeadership(ctx, from, moved, to); err != nil {
		t.Fatalf("moving group %d's leadership from %s to %s: %v", moved, from.ID(), to.ID(), err)
	}
	getAll := func() {
		for i := range actors {
			id := fmt.Sprintf("c%d", i)
			v, err := builtin.CounterGet.Call(ctx, c.Nodes[i%3], id)
			if err != nil || v.Value != int64(i+1) {
				t.Fatalf("after the move, %s = %d, %v; want %d", id, v.Value, err, i+1)
			}
		}
	}
	getAll()
	// The node that took the group now leads two, and moves one away
	// again (spreadLeaders); once the leaders are spread and stay so,
	// every counter, called again, answers from its group's leader.
	nodetest.WaitFor(t, 30*time.Second, "the counters on their groups' leaders after the move", func() bool {
		leads := map[string]bool{}
		for _, g := range c.Nodes[0].Info().Raft.Groups {
			leads[g.Leader] = true
		}
		if len(leads) != 3 {
			return false
		}
		getAll()
		return hostedOnLeaders()
	})

	const hops = 12
	b, _ := json.Marshal(ChainPass{Left: hops - 1, Next: 1})
	if _, err := c.Nodes[0].Send(ctx, runtime.Envelope{ActorType: "chain", ActorID: "0", Method: "pass", Payload: b}); err != nil {
		t.Fatal(err)
	}
	crossed := 0
	for i := range hops - 1 {
		if raftlock.GroupOf(fmt.Sprintf("chain/%d", i), 3) != raftlock.GroupOf(fmt.Sprintf("chain/%d", i+1), 3) {
			crossed++
		}
	}
	if crossed == 0 {
		t.Fatal("no hop crosses groups")
	}
	nodetest.WaitFor(t, 30*time.Second, "the last hop's pass", func() bool {
		n, err := ChainPasses.Call(ctx, c.Nodes[1], fmt.Sprint(hops-1))
		return err == nil && n == 1
	})
	for i := range hops {
		if n, err := ChainPasses.Call(ctx, c.Nodes[2], fmt.Sprint(i)); err != nil || n != 1 {
			t.Fatalf("chain/%d received %d passes, %v; want 1", i, n, err)
		}
	}
	t.Logf("%d of %d hops crossed groups", crossed, hops-1)
}

// TestRaftGroupsOnSomeNodes runs three groups on four nodes with
// cluster.groupMembers "voters": each group ends up on the three nodes
// rendezvous hashing chooses for it, with nothing else in its
// configuration, and calls through every node, members of the actor's
// group or not, reach the actor on its group's leader with its state.
// Calls answered ErrUnavailable (not applied: a session that lapsed while
// the machine was starved, say) are sent again, as a client would.
func TestRaftGroupsOnSomeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-node cluster")
	}
	const nodes, groups = 4, 3
	c := nodetest.StartConfigured(t, nodes, func(cfg *config.Config) {
		cfg.Cluster.RaftGroups = groups
		cfg.Cluster.GroupMembers = config.GroupMembersVoters
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	byID := map[string]*node.Node{}
	for _, n := range c.Nodes {
		byID[n.ID()] = n
	}
	var last string // what the WaitFor below saw last
	defer func() {
		if t.Failed() && last != "" {
			t.Log("last seen: " + last)
		}
	}()
	nodetest.WaitFor(t, 60*time.Second, "each group on three voters and no other server", func() bool {
		in := map[string]int{} // groups each node is a voter of
		for g := range groups {
			var gi *node.RaftGroupInfo
			for _, n := range c.Nodes {
				if info := n.Info().Raft.Groups[g]; info.State == "Leader" {
					gi = &info
				}
			}
			if gi == nil {
				last = fmt.Sprintf("group %d has no leader", g)
				return false
			}
			if len(gi.Voters) != 3 || len(gi.Nonvoters) != 0 {
				last = fmt.Sprintf("group %d: voters %v, non-voters %v", g, gi.Voters, gi.Nonvoters)
				return false
			}
			for _, v := range gi.Voters {
				in[v]++
			}
		}
		last = fmt.Sprintf("groups per node %v", in)
		return true
	})
	t.Log(last)

	const actors = 40
	for i := range actors {
		id := fmt.Sprintf("c%d", i)
		err := untilAvailable(ctx, func() error {
			_, err := builtin.CounterAdd.Call(ctx, c.Nodes[i%nodes], id, builtin.CounterDelta{Delta: int64(i + 1)})
			return err
		})
		if err != nil {
			t.Fatalf("add to %s through %s: %v", id, c.Nodes[i%nodes].ID(), err)
		}
	}
	for i := range actors {
		id := fmt.Sprintf("c%d", i)
		via := c.Nodes[(i+2)%nodes]
		var v builtin.CounterValue
		err := untilAvailable(ctx, func() (err error) {
			v, err = builtin.CounterGet.Call(ctx, via, id)
			return err
		})
		if err != nil || v.Value != int64(i+1) {
			t.Fatalf("%s through %s = %d, %v; want %d", id, via.ID(), v.Value, err, i+1)
		}
	}

	// Every node answers the operator's reads, of groups it is outside
	// of too (their leaders answer for it): every counter's journal
	// holds its one add, and the dead letters of all groups are listed.
	for _, n := range c.Nodes {
		for i := range actors {
			code, body := httpGet(t, fmt.Sprintf("http://%s/v1/admin/journal/counter/c%d", n.HTTPAddr(), i))
			var d node.JournalDump
			if code != http.StatusOK || json.Unmarshal(body, &d) != nil || len(d.Entries) != 1 {
				t.Fatalf("journal of counter/c%d through %s: %d %s; want one entry", i, n.ID(), code, body)
			}
		}
		if _, err := n.DeadLetters(ctx, queue.Filter{}); err != nil {
			t.Fatalf("dead letters through %s: %v", n.ID(), err)
		}
	}

	// An actor's reminders and the queues' figures of all groups, through
	// every node: each of the first reminded counters has one reminder, due
	// in an hour, and a message scheduled for then.
	const reminded = 8
	for i := range reminded {
		id := fmt.Sprintf("c%d", i)
		err := untilAvailable(ctx, func() error {
			_, err := builtin.CounterRemind.Call(ctx, c.Nodes[i%nodes], id, builtin.CounterReminder{Name: "later", Delta: 1, After: "1h"})
			return err
		})
		if err != nil {
			t.Fatalf("reminder of %s through %s: %v", id, c.Nodes[i%nodes].ID(), err)
		}
		if _, err := c.Nodes[(i+1)%nodes].Send(ctx, runtime.Envelope{ActorType: "counter", ActorID: id, Method: "add",
			Payload: []byte(`{"delta":1}`), DeliverAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("scheduled send to %s: %v", id, err)
		}
	}
	// A replica that follows a group may be a moment behind its leader:
	// every node shows them all soon.
	for _, n := range c.Nodes {
		nodetest.WaitFor(t, 10*time.Second, "the reminders and scheduled messages through "+n.ID(), func() bool {
			for i := range reminded {
				rs, err := n.Reminders(ctx, "counter", fmt.Sprintf("c%d", i))
				if err != nil || len(rs) != 1 || rs[0].Name != "later" || rs[0].Method != "add" {
					last = fmt.Sprintf("reminders of counter/c%d: %+v, %v; want the one called later", i, rs, err)
					return false
				}
			}
			stats, err := n.MessageQueues(ctx)
			last = fmt.Sprintf("queues %+v, %v; want counter with %d reminders and %d scheduled", stats, err, reminded, reminded)
			return err == nil && len(stats) == 1 && stats[0].Type == "counter" && stats[0].Reminders == reminded && stats[0].Scheduled == reminded
		})
	}

	last = ""

	// GET /v1/cluster of every node shows each group's voters as its
	// leader has them, and marks the groups the node is outside of.
	leaderView := map[int][]string{}
	for _, n := range c.Nodes {
		for _, gi := range n.Info().Raft.Groups {
			if gi.State == "Leader" {
				leaderView[gi.Group] = gi.Voters
			}
		}
	}
	outside := 0
	for _, n := range c.Nodes {
		code, body := httpGet(t, fmt.Sprintf("http://%s/v1/cluster", n.HTTPAddr()))
		var ci node.ClusterInfo
		if code != http.StatusOK || json.Unmarshal(body, &ci) != nil || ci.Raft == nil || len(ci.Raft.Groups) != groups {
			t.Fatalf("GET /v1/cluster of %s: %d %s", n.ID(), code, body)
		}
		for _, gi := range ci.Raft.Groups {
			if gi.Outside {
				outside++
			}
			if gi.Outside == slices.Contains(leaderView[gi.Group], n.ID()) || !slices.Equal(sorted(gi.Voters), sorted(leaderView[gi.Group])) {
				t.Errorf("group %d as %s shows it: outside %v, voters %v; its leader's voters %v", gi.Group, n.ID(), gi.Outside, gi.Voters, leaderView[gi.Group])
			}
		}
	}
	if want := nodes*groups - 3*groups; outside != want {
		t.Errorf("%d groups shown outside, want %d", outside, want)
	}
}

// sorted is a sorted copy of s.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// untilAvailable calls fn until it answers something other than
// runtime.ErrUnavailable (which was not applied), pausing 50 ms between
// tries, or until ctx ends.
func untilAvailable(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, runtime.ErrUnavailable) {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
