// Package nodetest starts real Loom nodes for tests: a cluster of n nodes
// in the test process, each with its own data dir and loopback ports, all
// Raft-backed (bootstrapExpect n) with the fast local gossip preset.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// SessionTTL is the nodes' coordinator session TTL.
const SessionTTL = 3 * time.Second

// FreePort reserves a free TCP and UDP port on loopback, below the
// kernel's ephemeral range, and releases it (ports.Free).
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := ports.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Config is the configuration of one test cluster member.
func Config(dir, id string, gossipPort int, join string, expect int) config.Config {
	cfg := config.Default()
	cfg.Node.ID = id
	cfg.Node.DataDir = filepath.Join(dir, id)
	cfg.Node.HTTPPort, cfg.Node.GRPCPort, cfg.Node.RaftPort = 0, 0, 0
	cfg.Node.GossipPort = gossipPort
	cfg.Coordination.Backend = config.CoordinationRaft
	cfg.Journal.Backend = config.JournalRaft
	cfg.Coordination.SessionTTL = SessionTTL
	cfg.Coordination.RenewInterval = time.Second
	cfg.Cluster.Join = join
	cfg.Cluster.BootstrapExpect = expect
	cfg.Cluster.Gossip = config.GossipLocal
	cfg.Cluster.JoinTimeout = 20 * time.Second
	return cfg
}

// Logger discards, unless LOOM_TEST_LOG is set (then debug to stderr).
func Logger(id string) *slog.Logger {
	if os.Getenv("LOOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
	}
	return slog.New(slog.DiscardHandler)
}

// Cluster is a running test cluster.
type Cluster struct {
	Nodes []*node.Node
	Seed  string // gossip address of the first node
	dir   string
	types []runtime.Definition
	tasks []task.Definition
	// configure, when set, adjusts each node's configuration.
	configure func(*config.Config)
}

// Start starts n nodes concurrently with the built-in actor types (and
// types) and returns once all have started. They are shut down when the
// test ends.
func Start(t testing.TB, n int, types ...runtime.Definition) *Cluster {
	t.Helper()
	return StartWithTasks(t, n, nil, types...)
}

// StartWithTasks is Start with tasks (package task) registered on every
// node.
func StartWithTasks(t testing.TB, n int, tasks []task.Definition, types ...runtime.Definition) *Cluster {
	t.Helper()
	return start(t, n, &Cluster{dir: t.TempDir(), types: types, tasks: tasks})
}

// StartConfigured is Start with configure applied to every node's
// configuration (Config) before it starts: tracing on, pool sizes, ...
func StartConfigured(t testing.TB, n int, configure func(*config.Config), types ...runtime.Definition) *Cluster {
	t.Helper()
	return start(t, n, &Cluster{dir: t.TempDir(), types: types, configure: configure})
}

func start(t testing.TB, n int, c *Cluster) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := c.startOnce(t, n)
		if err == nil {
			return c
		}
		// The seed's port, free when FreePort looked, was taken before
		// the seed bound it: start over on another one.
		if attempt == 5 || !errors.Is(err, cluster.ErrPortInUse) {
			t.Fatal(err)
		}
		c.dir = t.TempDir()
	}
}

// startOnce starts n nodes, the first on a free gossip port as the
// others' seed. If the seed fails, the others stop waiting for it; if
// any fails, the ones that started are shut down.
func (c *Cluster) startOnce(t testing.TB, n int) error {
	t.Helper()
	seedPort := FreePort(t)
	c.Seed = fmt.Sprintf("127.0.0.1:%d", seedPort)
	c.Nodes = make([]*node.Node, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		port, join := 0, c.Seed
		if i == 0 {
			port, join = seedPort, ""
		}
		c.Nodes[i] = c.build(t, fmt.Sprintf("n%d", i+1), port, join, n)
		wg.Go(func() {
			errs[i] = c.Nodes[i].Start(ctx)
			if i == 0 && errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, nd := range c.Nodes {
				_ = nd.Shutdown(context.Background())
			}
			return fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	return nil
}

func (c *Cluster) build(t testing.TB, id string, gossipPort int, join string, expect int) *node.Node {
	cfg := Config(c.dir, id, gossipPort, join, expect)
	if c.configure != nil {
		c.configure(&cfg)
	}
	nd, err := node.New(node.Options{Config: cfg, Types: c.types, Tasks: c.tasks, Builtins: true, Logger: Logger(id)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = nd.Shutdown(ctx)
	})
	return nd
}

// Join starts one more node that joins the cluster, and returns it once it
// has started.
func (c *Cluster) Join(t testing.TB, id string) *node.Node {
	t.Helper()
	nd := c.build(t, id, 0, c.Seed, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		t.Fatalf("joining %s: %v", id, err)
	}
	c.Nodes = append(c.Nodes, nd)
	return nd
}

// Restart shuts node i down and starts a node with the same id, Raft port
// and data dir in its place (wiped first if wipe is set: a replaced disk),
// joining through the seed; it returns the new node once it has started.
// Node 0 is the seed and cannot be restarted.
func (c *Cluster) Restart(t testing.TB, i int, wipe bool) *node.Node {
	t.Helper()
	if i == 0 {
		t.Fatal("nodetest: the seed node cannot be restarted")
	}
	old := c.Nodes[i]
	id := old.ID()
	var raftPort int
	for _, m := range old.Info().Members {
		if m.ID == id {
			_, p, err := net.SplitHostPort(m.Raft)
			if err != nil {
				t.Fatalf("nodetest: %s's raft address %q: %v", id, m.Raft, err)
			}
			fmt.Sscan(p, &raftPort)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Fatalf("nodetest: shutting %s down: %v", id, err)
	}
	if wipe {
		if err := os.RemoveAll(filepath.Join(c.dir, id)); err != nil {
			t.Fatal(err)
		}
	}
	prev := c.configure
	c.configure = func(cfg *config.Config) {
		if prev != nil {
			prev(cfg)
		}
		cfg.Node.RaftPort = raftPort
	}
	nd := c.build(t, id, 0, c.Seed, len(c.Nodes))
	c.configure = prev
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := nd.Start(sctx); err != nil {
		t.Fatalf("nodetest: restarting %s: %v", id, err)
	}
	c.Nodes[i] = nd
	return nd
}

// WaitFor polls cond every 20 ms until it holds, failing the test after
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
