package loomtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// Options configure a test cluster. The zero value is three nodes with
// the built-in actor types only.
type Options struct {
	// Nodes is how many nodes to start; 0 means 3. Keep it small: every
	// node is a full Loom node (Raft, gossip, gRPC, HTTP) in the test
	// process. Up to five, every node is a Raft voter, and a majority of
	// the nodes is a Raft quorum, which WaitSettled relies on when a
	// partition splits the cluster.
	Nodes int
	// Types are the application's actor types, registered on every node.
	Types []runtime.Definition
	// Tasks are the application's stateless tasks (package task),
	// registered on every node.
	Tasks []task.Definition
	// NoBuiltins leaves out the built-in actor types (counter, register,
	// kv), which are registered by default.
	NoBuiltins bool
	// SessionTTL is the nodes' coordinator session TTL: how long after a
	// node dies (or its lease stops being renewed) other nodes may take
	// its actors. 0 means 3 s, renewed every second. Shorter makes
	// failover tests faster and a loaded machine's sessions lapse
	// spuriously.
	SessionTTL time.Duration
	// Timeout bounds every wait of the kit: starting a node, WaitSettled,
	// WaitFor. 0 means 30 s. A wait that times out fails the test.
	Timeout time.Duration
	// Client configures the client Cluster.Client returns.
	Client client.Options
	// Configure, if not nil, adjusts node i's configuration (0-based)
	// before it starts (pool sizes, idle timeouts, messaging, ...). The
	// kit's choices (ids, data dirs, ports, Raft coordinator and journal,
	// bootstrapExpect, the fast local gossip preset, the session TTL) are
	// already in cfg; changing those is at the test's own risk.
	Configure func(i int, cfg *config.Config)
	// Logger receives the nodes' logs (each line with its node id). nil
	// discards them, unless the environment variable LOOM_TEST_LOG is set:
	// then they go to stderr, at debug level.
	Logger *slog.Logger
}

// TB is what the kit needs of a test: *testing.T and *testing.B (any
// testing.TB) are TBs. A failure is reported with Fatalf, and the
// cluster is torn down by a function passed to Cleanup.
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// Cluster is a running test cluster of in-process nodes on loopback. Its
// methods that change the cluster or wait (Kill, Restart, Stop,
// Partition, Isolate, Heal, PauseLease, ResumeLease, Advance,
// WaitSettled, WaitFor) fail the test as testing.TB's Fatal does, so
// call them from the test's goroutine; Node, Client, Len, Running, Now
// and ActiveOn are safe from any goroutine.
type Cluster struct {
	t     TB
	opts  Options
	dir   string
	clock *clock

	mu      sync.Mutex
	members []*member
	cuts    map[[2]int]bool   // links cut by Partition, i < j
	orphans map[string]orphan // actor key → the session that held it when its node failed
	client  *client.Client
	closed  bool
}

// member is one node slot: the node now in it, and what survives a
// restart.
type member struct {
	id         string
	n          *node.Node
	hook       *faultnet.Hook // the node's network faults, kept across restarts
	gossipPort int
	raftPort   int  // below the ephemeral range (freePort), kept across restarts
	down       bool // killed or stopped
	paused     bool // PauseLease
}

// orphan is an actor whose node failed while holding its lock.
type orphan struct {
	node    string
	session string
}

// Start starts a cluster of opts.Nodes nodes and returns once every node
// has started: a Raft leader is elected, each node has its coordinator
// session. The nodes are torn down when the test ends (abruptly: there is
// nothing left to hand off).
func Start(t TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	c.start()
	return c
}

// newCluster returns the cluster Start starts: its options with their
// defaults, a slot with a free gossip port for every node, no node yet.
func newCluster(t TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 3 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	c := &Cluster{t: t, opts: opts, dir: t.TempDir(), clock: newClock(), cuts: map[[2]int]bool{}, orphans: map[string]orphan{}}
	for i := range opts.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		c.members = append(c.members, &member{id: id, gossipPort: freePort(t), raftPort: freePort(t), hook: faultnet.New(id, "", uint64(i+1))})
	}
	t.Cleanup(c.teardown)
	return c
}

// start starts every node of c, side by side, and returns once they all
// have (see Start).
func (c *Cluster) start() {
	t, opts := c.t, c.opts
	t.Helper()
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
			defer cancel()
			errs[i] = c.startMember(ctx, i)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("loomtest: starting node %s: %v", c.members[i].id, err)
		}
	}
	for _, m := range c.members {
		m.raftPort = port(m.n.RaftAddr())
	}
	c.setFaults()
	c.dial()
}

// startMember starts a node in slot i and puts it there. A gossip port
// taken between freePort's check and the node's bind (by another test's
// server, say) is replaced by a new one: the other nodes
// still find this one through the seeds that did not change.
func (c *Cluster) startMember(ctx context.Context, i int) error {
	for attempt := 1; ; attempt++ {
		n, err := node.New(c.nodeOptions(i))
		if err != nil {
			return err
		}
		err = n.Start(ctx)
		if err == nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.closed {
				_ = n.Crash()
				return nil
			}
			m := c.members[i]
			m.n, m.down = n, false
			return nil
		}
		_ = n.Crash()
		if attempt == 5 || !errors.Is(err, cluster.ErrPortInUse) {
			return err
		}
		p := freePort(c.t)
		c.mu.Lock()
		c.members[i].gossipPort = p
		c.mu.Unlock()
	}
}

// nodeOptions are node i's options: its config, the cluster's types and
// tasks, its fault layer and the cluster's clock.
func (c *Cluster) nodeOptions(i int) node.Options {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	cfg := config.Default()
	cfg.Node.ID = m.id
	cfg.Node.DataDir = filepath.Join(c.dir, m.id)
	cfg.Node.Bind = "127.0.0.1"
	cfg.Node.HTTPPort, cfg.Node.GRPCPort = 0, 0
	cfg.Node.RaftPort = m.raftPort
	cfg.Node.GossipPort = m.gossipPort
	cfg.Coordination.Backend = config.CoordinationRaft
	cfg.Journal.Backend = config.JournalRaft
	cfg.Coordination.SessionTTL = c.opts.SessionTTL
	cfg.Coordination.RenewInterval = c.opts.SessionTTL / 3
	var seeds []string
	for _, o := range c.members {
		seeds = append(seeds, net.JoinHostPort("127.0.0.1", fmt.Sprint(o.gossipPort)))
	}
	cfg.Cluster.Join = strings.Join(seeds, ",")
	cfg.Cluster.BootstrapExpect = len(c.members)
	if len(c.members) > 3 {
		cfg.Cluster.Voters = 5 // every node a voter, up to five
	}
	cfg.Cluster.Gossip = config.GossipLocal
	cfg.Cluster.JoinTimeout = c.opts.Timeout
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	return node.Options{
		Config:   cfg,
		Types:    c.opts.Types,
		Tasks:    c.opts.Tasks,
		Builtins: !c.opts.NoBuiltins,
		Logger:   c.logger(),
		Network:  network{m.hook},
		Clock:    c.clock.Now,
	}
}

func (c *Cluster) logger() *slog.Logger {
	if c.opts.Logger != nil {
		return c.opts.Logger
	}
	if os.Getenv("LOOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// teardown crashes every node still running, all at once, and closes
// the client.
func (c *Cluster) teardown() {
	c.mu.Lock()
	c.closed = true
	cl := c.client
	c.client = nil
	var nodes []*node.Node
	for _, m := range c.members {
		if m.n != nil && !m.down {
			nodes = append(nodes, m.n)
		}
	}
	c.mu.Unlock()
	if cl != nil {
		_ = cl.Close()
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { _ = n.Crash() })
	}
	wg.Wait()
}

// Len is the number of node slots, running or not.
func (c *Cluster) Len() int { return len(c.members) }

// Node is the node in slot i (0-based): after Restart, the new one; after
// Kill or Stop, the stopped one (its ID and data are still there).
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(i).n
}

// Running reports whether node i is running (not killed nor stopped).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.member(i).down
}

// Index is the slot of the node with id ("n1" is 0), or -1.
func (c *Cluster) Index(id string) int {
	for i, m := range c.members {
		if m.id == id {
			return i
		}
	}
	return -1
}

// ActiveOn is the slot of the running node on which the actor is active
// (in memory) now, if any.
func (c *Cluster) ActiveOn(actorType, id string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.down {
			continue
		}
		if rt := m.n.Runtime(); rt != nil && rt.IsActive(actorType, id) {
			return i, true
		}
	}
	return -1, false
}

// member is slot i; c.mu is held. An index out of range is a bug in the
// test: it panics with the reason.
func (c *Cluster) member(i int) *member {
	if i < 0 || i >= len(c.members) {
		panic(fmt.Sprintf("loomtest: no node %d in a cluster of %d", i, len(c.members)))
	}
	return c.members[i]
}

// Client is the cluster's client (package client, with Options.Client),
// connected to every node when the cluster started and closed when the
// test ends. It follows the topology as nodes die, restart and recover,
// and implements runtime.Invoker and runtime.Sender: pass it to a
// Method's Call or Send.
func (c *Cluster) Client() *client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.client
}

// dial connects the cluster's client to every node.
func (c *Cluster) dial() {
	c.t.Helper()
	var addrs []string
	for _, m := range c.members {
		addrs = append(addrs, m.n.GRPCAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	cl, err := client.Dial(ctx, addrs, c.opts.Client)
	if err != nil {
		c.t.Fatalf("loomtest: dialling the cluster at %v: %v", addrs, err)
	}
	c.mu.Lock()
	c.client = cl
	c.mu.Unlock()
}

// Kill crashes node i (node.Node.Crash): its servers close, it stops
// gossiping without leaving, its Raft store closes mid-flight, and its
// actors are dropped with their locks still held. It returns at once,
// before the rest of the cluster has noticed: WaitSettled waits for the
// survivors to see it dead, to agree on a Raft leader, and for its
// session to lapse, after which its actors answer from other nodes, from
// their journals. Restart brings it back.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	if m.down {
		c.mu.Unlock()
		c.t.Fatalf("loomtest: Kill(%d): %s is not running", i, m.id)
	}
	c.orphanLocked(m)
	m.down, m.paused = true, false
	n := m.n
	c.mu.Unlock()
	if err := n.Crash(); err != nil {
		c.t.Logf("loomtest: killing %s: %v", m.id, err)
	}
}

// Stop shuts node i down gracefully (node.Node.Shutdown): it hands its
// actors off, ends its session and leaves the cluster. Restart brings it
// back.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	if m.down {
		c.mu.Unlock()
		c.t.Fatalf("loomtest: Stop(%d): %s is not running", i, m.id)
	}
	m.down, m.paused = true, false
	n := m.n
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		c.t.Fatalf("loomtest: stopping %s: %v", m.id, err)
	}
}

// Restart starts node i again from its data dir, with its id, Raft and
// gossip ports, as a process restarted after a crash would be (a node
// still running is killed first). It returns once the node has started:
// it has rejoined, caught up with the Raft log far enough to open a new
// session, and ended its previous run's sessions, which frees that run's
// actors at once. The network faults set on it still apply.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	running := !m.down
	c.mu.Unlock()
	if running {
		c.Kill(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	if err := c.startMember(ctx, i); err != nil {
		c.t.Fatalf("loomtest: restarting %s: %v", m.id, err)
	}
	c.setFaults() // its gRPC address is new
}

// WaitFor polls cond every 20 ms until it returns nil, and fails the
// test with cond's last error if that takes longer than Options.Timeout.
// what names the condition in that failure.
func (c *Cluster) WaitFor(what string, cond func() error) {
	c.t.Helper()
	c.waitFor(what, cond, false)
}

// waitFor is WaitFor; with trace, it also logs every new reason cond
// gives for not holding yet, with the time waited so far (the test's log
// then tells how the cluster recovered).
func (c *Cluster) waitFor(what string, cond func() error, trace bool) {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(c.opts.Timeout)
	last := ""
	for {
		err := cond()
		if err == nil {
			return
		}
		if trace && err.Error() != last {
			last = err.Error()
			c.t.Logf("loomtest: +%v waiting for %s: %v", time.Since(start).Round(time.Millisecond), what, err)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("loomtest: timed out after %v waiting for %s: %v", c.opts.Timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort reserves a port free for both TCP and UDP on 127.0.0.1 (gossip
// takes both) and releases it. It lies below the kernel's ephemeral range,
// so no outbound connection of another test can take it before the node
// binds it, nor while the node is down and must get it back after a
// restart (Raft's configuration keeps its address).
func freePort(t TB) int {
	t.Helper()
	p, err := ports.FreeLoopback()
	if err != nil {
		t.Fatalf("loomtest: %v", err)
	}
	return p
}

// port is the port of a host:port address (0 if there is none).
func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(p, &n)
	return n
}

// sortedIDs returns ids sorted, without duplicates.
func sortedIDs(ids []string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return slices.Compact(ids)
}
