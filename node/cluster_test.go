package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
)

// freePort reserves a free TCP port on loopback and releases it. The seed
// node's gossip port must be known before it starts, so the others can join.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func clusterConfig(t *testing.T, dir, id string, gossipPort int, join string, expect int) config.Config {
	cfg := config.Default()
	cfg.Node.ID = id
	cfg.Node.DataDir = filepath.Join(dir, id)
	cfg.Node.HTTPPort, cfg.Node.GRPCPort, cfg.Node.RaftPort = 0, 0, 0
	cfg.Node.GossipPort = gossipPort
	cfg.Coordination.Backend = config.CoordinationRaft
	cfg.Journal.Backend = config.JournalRaft
	cfg.Coordination.SessionTTL = 3 * time.Second
	cfg.Coordination.RenewInterval = time.Second
	cfg.Cluster.Join = join
	cfg.Cluster.BootstrapExpect = expect
	cfg.Cluster.Gossip = config.GossipLocal
	cfg.Cluster.JoinTimeout = 20 * time.Second
	return cfg
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LOOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startCluster starts n nodes concurrently (bootstrapExpect n) and waits
// until every Start returned.
func startCluster(t *testing.T, n int) []*node.Node {
	t.Helper()
	dir := t.TempDir()
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	nodes := make([]*node.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		port, join := 0, seed
		if i == 0 {
			port, join = seedPort, ""
		}
		nd, err := node.New(node.Options{Config: clusterConfig(t, dir, id, port, join, n), Builtins: true, Logger: testLogger(t).With("node", id)})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = nd
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = nd.Shutdown(ctx)
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[i] = nd.Start(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return nodes
}

func TestThreeNodesOneActivationExactSums(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	nodes := startCluster(t, 3)
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
			v, err := builtin.CounterGet.Call(ctx, nd, id, struct{}{})
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
