package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

func TestThreeNodesOneActivationExactSums(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	nodes := nodetest.Start(t, 3).Nodes
	ctx := context.Background()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	const actors, calls = 5, 60
	want := map[string]int64{}
	for i := 0; i < calls; i++ {
		id := fmt.Sprintf("c%d", rng.IntN(actors))
		via := nodes[rng.IntN(len(nodes))]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := builtin.CounterAdd.Call(cctx, via, id, builtin.CounterDelta{Delta: 1})
		cancel()
		if err != nil {
			t.Fatalf("call %d via %s: %v", i, via.ID(), err)
		}
		want[id]++
		if v.Value != want[id] {
			t.Fatalf("call %d via %s: %s = %d, want %d", i, via.ID(), id, v.Value, want[id])
		}
	}
	// Every node answers every actor with the same total.
	for id, w := range want {
		for _, nd := range nodes {
			v, err := builtin.CounterGet.Call(ctx, nd, id)
			if err != nil || v.Value != w {
				t.Fatalf("%s via %s = %d, %v; want %d", id, nd.ID(), v.Value, err, w)
			}
		}
	}
	// One activation per actor across the cluster.
	total := 0
	for _, nd := range nodes {
		total += nd.Runtime().Active("counter")
	}
	if total != len(want) {
		t.Fatalf("%d counter activations across the cluster, want %d", total, len(want))
	}
	info := nodes[0].Info()
	if len(info.Raft.Voters) != 3 || info.Leader == "" || len(info.Ring.Members) != 3 {
		t.Fatalf("cluster info %+v", info)
	}
}

func TestJoiningNodeTakesSomeActorsWithTheirState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := nodetest.Start(t, 3)
	ctx := context.Background()
	const actors = 30
	for i := 0; i < actors; i++ {
		if _, err := builtin.CounterAdd.Call(ctx, c.Nodes[i%3], fmt.Sprintf("a%d", i), builtin.CounterDelta{Delta: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	n4 := c.Join(t, "n4")
	nodetest.WaitFor(t, 15*time.Second, "every node's ring to have 4 members", func() bool {
		for _, nd := range c.Nodes {
			if r := nd.Info().Ring; r == nil || len(r.Members) != 4 {
				return false
			}
		}
		return true
	})
	// During and after the hand-off every call either succeeds or fails
	// with a retryable error, and no acknowledged state is lost.
	for i := 0; i < actors; i++ {
		id := fmt.Sprintf("a%d", i)
		var v builtin.CounterValue
		nodetest.WaitFor(t, 15*time.Second, "a call to "+id, func() bool {
			var err error
			v, err = builtin.CounterGet.Call(ctx, c.Nodes[i%4], id)
			if err != nil && !errors.Is(err, runtime.ErrUnavailable) {
				t.Fatalf("%s: %v is not a retryable error", id, err)
			}
			return err == nil
		})
		if v.Value != int64(i+1) {
			t.Fatalf("%s = %d after the join, want %d", id, v.Value, i+1)
		}
	}
	if n4.Runtime().Active("counter") == 0 {
		t.Fatal("the new node owns no actor after the join")
	}
	total := 0
	for _, nd := range c.Nodes {
		total += nd.Runtime().Active("counter")
	}
	if total != actors {
		t.Fatalf("%d activations for %d actors", total, actors)
	}
}

// A node closes its pooled gRPC connection to a member that leaves.
func TestDepartedMemberConnectionIsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := nodetest.Start(t, 3)
	ctx := context.Background()
	gone := c.Nodes[2]
	addr := gone.GRPCAddr()
	// Calls through n1 reach actors owned by n3, over a pooled connection.
	nodetest.WaitFor(t, 15*time.Second, "n1 to connect to n3", func() bool {
		for i := 0; i < 20; i++ {
			if _, err := builtin.CounterAdd.Call(ctx, c.Nodes[0], fmt.Sprintf("d%d", i), builtin.CounterDelta{Delta: 1}); err != nil {
				t.Fatal(err)
			}
		}
		return slices.Contains(c.Nodes[0].Info().Connections, addr)
	})
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := gone.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 15*time.Second, "n1 to close its connection to n3", func() bool {
		return !slices.Contains(c.Nodes[0].Info().Connections, addr)
	})
}
