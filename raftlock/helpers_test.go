package raftlock

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/replica/replicatest"
)

// testLogger logs to stderr at the level named by LOOM_TEST_LOG (debug,
// info, warn, error); by default it discards.
func testLogger(t testing.TB) *slog.Logger {
	var level slog.Level
	switch os.Getenv("LOOM_TEST_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	default:
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// logStoreFlag is the Raft log store every test's nodes use: the whole
// suite runs on each (make test runs it with wal too).
var logStoreFlag = flag.String("raftlock.logstore", LogStoreAuto, "the Raft log store of the tests' nodes: auto (raft-wal in their new dirs), boltdb or wal")

// testConfig is FastConfig for a node of a test cluster on loopback. A
// single-node cluster gets even shorter timeouts: it elects itself after
// one heartbeat timeout.
func testConfig(t testing.TB, id raft.ServerID, dir, addr string, now func() time.Time, single bool) Config {
	cfg := FastConfig()
	cfg.NodeID = id
	cfg.DataDir = dir
	cfg.LogStore = *logStoreFlag
	cfg.WALSegmentSize = 64 << 10 // small segments: rotations, and logs truncated after small snapshots
	cfg.BindAddr = addr
	cfg.Logger = testLogger(t)
	if now != nil {
		cfg.Now = now
	}
	if single {
		cfg.HeartbeatTimeout = 50 * time.Millisecond
		cfg.ElectionTimeout = 50 * time.Millisecond
		cfg.LeaderLeaseTimeout = 50 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
	}
	return cfg
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	replicatest.WaitFor(t, timeout, what, cond)
}

// openSingle opens a one-node cluster in dir (bootstrapping it if it is
// new) and waits until it serves.
func openSingle(t testing.TB, dir, addr string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(testConfig(t, "n1", dir, addr, now, true))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !s.HasState() {
		if err := s.Bootstrap([]raft.Server{s.LocalServer()}); err != nil {
			_ = s.Close()
			t.Fatalf("Bootstrap: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "single node leads", func() error {
		if !s.IsLeader() {
			return fmt.Errorf("state %v", s.State())
		}
		return nil
	})
	return s
}

// memForwarder is the in-process Forwarder of the tests: it calls the
// leader Store's HandleForward directly, copying bytes both ways as a
// network would. Stores are registered by id; an unregistered or closed one
// is unreachable.
type memForwarder struct{ *replicatest.Forwarder }

func newMemForwarder() *memForwarder { return &memForwarder{replicatest.NewForwarder()} }

func (f *memForwarder) set(id raft.ServerID, s *Store) {
	if s == nil {
		f.Set(id, nil) // not a nil *Store in a Handler
		return
	}
	f.Set(id, s)
}

// testCluster is n Stores on loopback TCP, forwarding in process.
type testCluster struct {
	t     testing.TB
	fwd   *memForwarder
	now   func() time.Time
	dirs  []string
	addrs []string
	nodes []*Store // nil while a node is down
	tweak func(*Config)
}

func nodeID(i int) raft.ServerID { return raft.ServerID(fmt.Sprintf("n%d", i+1)) }

// newCluster starts n nodes, bootstraps them from the first, and waits
// for a leader that serves. Close runs at cleanup.
func newCluster(t testing.TB, n int, now func() time.Time) *testCluster {
	t.Helper()
	return newClusterWith(t, n, now, nil)
}

// newClusterWith is newCluster with tweak applied to every node's config.
func newClusterWith(t testing.TB, n int, now func() time.Time, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, fwd: newMemForwarder(), now: now, nodes: make([]*Store, n), dirs: make([]string, n), addrs: make([]string, n), tweak: tweak}
	t.Cleanup(c.closeAll)
	servers := make([]raft.Server, n)
	for i := range n {
		c.dirs[i] = t.TempDir()
		c.start(i, "127.0.0.1:0")
		c.addrs[i] = string(c.nodes[i].Addr())
		servers[i] = raft.Server{Suffrage: raft.Voter, ID: nodeID(i), Address: c.nodes[i].Addr()}
	}
	if err := c.nodes[0].Bootstrap(servers); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	c.leader()
	return c
}

func (c *testCluster) start(i int, addr string) {
	c.t.Helper()
	cfg := testConfig(c.t, nodeID(i), c.dirs[i], addr, c.now, false)
	cfg.Forwarder = c.fwd
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("Open %s: %v", nodeID(i), err)
	}
	c.nodes[i] = s
	c.fwd.set(nodeID(i), s)
}

// restart starts node i again on its data dir and address.
func (c *testCluster) restart(i int) *Store {
	c.t.Helper()
	c.start(i, c.addrs[i])
	return c.nodes[i]
}

// stop closes node i (as a crash would, as far as the others can tell).
func (c *testCluster) stop(i int) {
	c.t.Helper()
	c.fwd.set(nodeID(i), nil)
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("Close %s: %v", nodeID(i), err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i, s := range c.nodes {
		if s != nil {
			c.fwd.set(nodeID(i), nil)
			_ = s.Close()
		}
	}
}

// leader waits for a node that serves as leader and returns its index.
func (c *testCluster) leader() int {
	c.t.Helper()
	return replicatest.Leader(c.t, c.nodes)
}

// follower returns the index of a running node other than the leader.
func (c *testCluster) follower() int {
	l := c.leader()
	for i, s := range c.nodes {
		if s != nil && i != l {
			return i
		}
	}
	c.t.Fatal("no follower running")
	return -1
}
