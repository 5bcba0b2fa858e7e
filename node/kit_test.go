package node_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/loomtest"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
)

// The machinery behind package loomtest, seen from a node: Crash, the
// application clock, a Network.

// A crashed single node comes back from its data dir with everything it
// acknowledged.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := startNode(t, dir)
	for range 3 {
		if _, err := builtin.CounterAdd.Call(ctx, n, "c", builtin.CounterDelta{Delta: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after Crash: %v", err)
	}
	n2 := startNode(t, dir)
	if v, err := builtin.CounterGet.Call(ctx, n2, "c"); err != nil || v.Value != 6 {
		t.Fatalf("after the crash c = %d, %v; want 6", v.Value, err)
	}
}

// A crashed cluster node releases nothing: its actor's lock stays with
// its session until the TTL, and the others find it dead (not left).
func TestCrashLeavesLocksToLapse(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster and a failover")
	}
	c := loomtest.Start(t, loomtest.Options{})
	ctx := context.Background()
	if _, err := builtin.CounterAdd.Call(ctx, c.Client(), "k", builtin.CounterDelta{Delta: 4}); err != nil {
		t.Fatal(err)
	}
	h, ok := c.ActiveOn("counter", "k")
	if !ok {
		t.Fatal("k is active nowhere")
	}
	session := c.Node(h).Health().Components.Locks.Session
	dead := c.Node(h).ID()
	c.Kill(h)
	other := c.Node((h + 1) % c.Len())
	d, err := other.DumpJournal(ctx, "counter", "k", true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Lock == nil || d.Lock.Session != session {
		t.Fatalf("right after the crash k's lock is %+v, want still %s's session %s", d.Lock, dead, session)
	}
	c.WaitSettled()
	for _, m := range other.Info().Members {
		if m.ID == dead && m.State != "dead" {
			t.Fatalf("%s sees the crashed %s %s, want dead", other.ID(), dead, m.State)
		}
	}
	if v, err := builtin.CounterGet.Call(ctx, c.Client(), "k"); err != nil || v.Value != 4 {
		t.Fatalf("k = %d, %v after the failover; want 4", v.Value, err)
	}
}

// A paused lease lapses: the node serves nothing until ResumeLease opens a
// new session; its state is intact. Shutdown does not wait on the pause.
func TestPauseLeaseLapsesAndResumes(t *testing.T) {
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Coordination.SessionTTL = time.Second
	cfg.Coordination.RenewInterval = 300 * time.Millisecond
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := builtin.CounterAdd.Call(ctx, n, "p", builtin.CounterDelta{Delta: 5}); err != nil {
		t.Fatal(err)
	}
	before := n.Health().Components.Locks.Session
	n.PauseLease()
	nodetest.WaitFor(t, 10*time.Second, "the session to lapse", func() bool { return !n.Health().Components.Locks.Valid })
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = builtin.CounterGet.Call(short, n, "p")
	cancel()
	if err == nil {
		t.Fatal("served an actor without a session")
	}
	// The node stops serving a safety margin before the coordinator can
	// expire the session: resumed within that margin, the renewal the
	// pause held would still find it alive. The last renewal that
	// succeeded reached the coordinator within its request timeout (the
	// renew interval) of being sent, so past that plus the TTL the
	// session is gone there too.
	nodetest.WaitFor(t, 10*time.Second, "the session to be gone on the coordinator", func() bool {
		l := n.Health().Components.Locks
		return l.LastRenewalAgoMs > l.TTLMs+l.RenewIntervalMs
	})
	n.ResumeLease()
	nodetest.WaitFor(t, 10*time.Second, "a new session", func() bool { return n.Health().Components.Locks.Valid })
	if after := n.Health().Components.Locks.Session; after == before {
		t.Fatalf("session %s lived through the pause", after)
	}
	if v, err := builtin.CounterGet.Call(ctx, n, "p"); err != nil || v.Value != 5 {
		t.Fatalf("p = %d, %v after the pause; want 5", v.Value, err)
	}
	n.PauseLease()
	start := time.Now()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown with a paused lease took %v", d)
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// Options.Clock drives idle timeouts and reminders; CheckClock looks at
// it at once.
func TestClockDrivesIdleTimeoutsAndReminders(t *testing.T) {
	clk := &fakeClock{}
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler), Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })

	if _, err := builtin.CounterAdd.Call(ctx, n, "idle", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
	clk.advance(6 * time.Minute) // past the default idle timeout, 5 min
	n.CheckClock()
	if n.Runtime().IsActive("counter", "idle") {
		t.Fatal("still active 6 minutes idle on the node's clock")
	}

	if _, err := builtin.CounterRemind.Call(ctx, n, "r", builtin.CounterReminder{Name: "r", Delta: 3, After: "1h"}); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Hour)
	n.CheckClock()
	nodetest.WaitFor(t, 10*time.Second, "the reminder to fire", func() bool {
		v, err := builtin.CounterGet.Call(ctx, n, "r")
		return err == nil && v.Value == 3
	})
}

// countingNetwork is a node.Network that passes everything through and
// counts what it carried.
type countingNetwork struct {
	mu      sync.Mutex
	listens map[node.Channel]int
	dials   map[node.Channel]int
	gossip  int
}

func (w *countingNetwork) Listen(ch node.Channel, ln net.Listener) net.Listener {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listens[ch]++
	return ln
}

func (w *countingNetwork) Dial(ctx context.Context, ch node.Channel, addr string) (net.Conn, error) {
	w.mu.Lock()
	w.dials[ch]++
	w.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (w *countingNetwork) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gossip++
	return t
}

func (w *countingNetwork) counts() (listens, dials map[node.Channel]int, gossip int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listens, w.dials, w.gossip
}

// A Network carries a node's gRPC, Raft and gossip traffic.
func TestNetworkCarriesNodeTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("a two-node cluster")
	}
	dir := t.TempDir()
	ports := []int{nodetest.FreePort(t), nodetest.FreePort(t)}
	seeds := []string{}
	for _, p := range ports {
		seeds = append(seeds, net.JoinHostPort("127.0.0.1", itoa(p)))
	}
	nets := []*countingNetwork{}
	nodes := []*node.Node{}
	for i := range 2 {
		w := &countingNetwork{listens: map[node.Channel]int{}, dials: map[node.Channel]int{}}
		cfg := nodetest.Config(dir, "n"+itoa(i+1), ports[i], strings.Join(seeds, ","), 2)
		n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: nodetest.Logger(cfg.Node.ID), Network: w})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Crash() })
		nets, nodes = append(nets, w), append(nodes, n)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[i] = n.Start(ctx)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Calls through each node reach actors the ring gives the other.
	ctx := context.Background()
	for i := range 10 {
		for _, n := range nodes {
			if _, err := builtin.CounterAdd.Call(ctx, n, "k"+itoa(i), builtin.CounterDelta{Delta: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var grpcDials, raftDials int
	for i, w := range nets {
		listens, dials, gossip := w.counts()
		if listens[node.ChannelGRPC] != 1 || listens[node.ChannelRaft] != 1 || gossip != 1 {
			t.Errorf("n%d: listens %v, gossip wrapped %d times; want one each", i+1, listens, gossip)
		}
		grpcDials += dials[node.ChannelGRPC]
		raftDials += dials[node.ChannelRaft] // the leader's, to the follower
	}
	if grpcDials == 0 || raftDials == 0 {
		t.Errorf("%d gRPC and %d Raft connections dialled through the Network, want some of each", grpcDials, raftDials)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
