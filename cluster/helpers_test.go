package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/loom-mesh/loom/internal/ports"
)

// syncBuffer collects a test's logs; they are printed only if it fails.
// memberlist's goroutines may still log after the test ends, which is why
// this is not t.Log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is DevConfig (memberlist's local timings) for a node on
// loopback with a free port.
func testConfig(t *testing.T, id string, seeds ...string) Config {
	c := DevConfig()
	c.NodeID = id
	c.Seeds = seeds
	c.Meta = Meta{
		GRPCAddr: "127.0.0.1:1" + id,
		RaftAddr: "127.0.0.1:2" + id,
		HTTPAddr: "127.0.0.1:3" + id,
		Version:  "test-" + id,
	}
	c.JoinTimeout = 5 * time.Second
	c.Logger = testLogger(t).With("test_node", id)
	return c
}

// fastTimings shortens failure detection further than DevConfig, for tests
// that must wait for deaths on both sides of a partition.
func fastTimings(c *Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = 500 * time.Millisecond
	c.GossipToTheDeadTime = time.Second
	c.DeadNodeReclaimTime = 200 * time.Millisecond
}

func startNode(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeID, err)
	}
	return c
}

// waitFor polls cond until it returns nil or timeout passes (nats-server's
// checkFor): no fixed sleeps.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %v: %v", what, timeout, err)
	return 0
}

// seesAlive checks that c sees exactly ids alive, each with the Meta its
// testConfig gave it.
func seesAlive(c *Cluster, ids ...string) error {
	alive := c.Alive()
	if len(alive) != len(ids) {
		return fmt.Errorf("%s sees %d alive (%v), want %v", c.cfg.NodeID, len(alive), memberIDs(alive), ids)
	}
	for i, m := range alive {
		if m.NodeID != ids[i] {
			return fmt.Errorf("%s sees alive %v, want %v", c.cfg.NodeID, memberIDs(alive), ids)
		}
		want := Meta{NodeID: m.NodeID, GRPCAddr: "127.0.0.1:1" + m.NodeID, RaftAddr: "127.0.0.1:2" + m.NodeID,
			HTTPAddr: "127.0.0.1:3" + m.NodeID, Version: "test-" + m.NodeID}
		if m.Meta != want {
			return fmt.Errorf("%s sees %s with meta %+v, want %+v", c.cfg.NodeID, m.NodeID, m.Meta, want)
		}
	}
	return nil
}

func memberIDs(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.NodeID + "(" + m.State.String() + ")"
	}
	return out
}

// stateOf returns how c sees id.
func stateOf(c *Cluster, id string) (Member, bool) {
	for _, m := range c.Members() {
		if m.NodeID == id {
			return m, true
		}
	}
	return Member{}, false
}

func wantState(c *Cluster, id string, want State) func() error {
	return func() error {
		m, ok := stateOf(c, id)
		if !ok {
			return fmt.Errorf("%s does not know %s", c.cfg.NodeID, id)
		}
		if m.State != want {
			return fmt.Errorf("%s sees %s %v, want %v", c.cfg.NodeID, id, m.State, want)
		}
		return nil
	}
}

// kill stops gossiping without leaving, as a crash would.
func (c *Cluster) kill() { c.Halt() }

// freePort returns a port that was free a moment ago, below the
// ephemeral range.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := ports.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// faultNet is a network switch for tests: it cuts an isolated address off
// from everyone. Every node of a test uses a faultTransport on the same
// faultNet, so filtering what each node sends cuts both directions.
type faultNet struct {
	mu       sync.Mutex
	isolated map[string]bool
}

func (f *faultNet) isolate(addr string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isolated == nil {
		f.isolated = map[string]bool{}
	}
	f.isolated[addr] = on
}

func (f *faultNet) cut(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated[from] || f.isolated[to]
}

// faultTransport is a real memberlist.NetTransport whose outgoing packets
// and connections to or from an isolated address are dropped, as a
// partition would drop them.
type faultTransport struct {
	*memberlist.NetTransport
	self string
	net  *faultNet
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(t *testing.T, fn *faultNet, logger *slog.Logger) *faultTransport {
	t.Helper()
	var lastErr error
	for range 10 { // binding TCP then UDP on the same random port can race
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			BindPort:  0,
			Logger:    NewMemberlistLogger(logger),
		})
		if err != nil {
			lastErr = err
			continue
		}
		return &faultTransport{NetTransport: nt, self: "127.0.0.1:" + strconv.Itoa(nt.GetAutoBindPort()), net: fn}
	}
	t.Fatalf("NewNetTransport: %v", lastErr)
	return nil
}

func (ft *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if ft.net.cut(ft.self, addr) {
		return time.Now(), nil // lost on the wire
	}
	return ft.NetTransport.WriteTo(b, addr)
}

func (ft *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if ft.net.cut(ft.self, a.Addr) {
		return time.Now(), nil
	}
	return ft.NetTransport.WriteToAddress(b, a)
}

func (ft *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if ft.net.cut(ft.self, addr) {
		return nil, fmt.Errorf("fault: %s cannot reach %s", ft.self, addr)
	}
	return ft.NetTransport.DialTimeout(addr, timeout)
}

func (ft *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if ft.net.cut(ft.self, a.Addr) {
		return nil, fmt.Errorf("fault: %s cannot reach %s", ft.self, a.Addr)
	}
	return ft.NetTransport.DialAddressTimeout(a, timeout)
}
