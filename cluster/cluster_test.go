package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// threeNodes starts n1 alone and n2, n3 through it (n3 also lists n2 and
// itself, as a shared seed list would), and waits until all see three.
func threeNodes(t *testing.T, tune func(*Config)) (a, b, c *Cluster) {
	t.Helper()
	if tune == nil {
		tune = func(*Config) {}
	}
	cfg := testConfig(t, "n1")
	tune(&cfg)
	a = startNode(t, cfg)
	cfg = testConfig(t, "n2", a.LocalNode().Addr)
	tune(&cfg)
	b = startNode(t, cfg)
	port := freePort(t)
	cfg = testConfig(t, "n3", a.LocalNode().Addr, b.LocalNode().Addr, "127.0.0.1:"+strconv.Itoa(port))
	cfg.BindPort = port
	tune(&cfg)
	c = startNode(t, cfg)
	for _, n := range []*Cluster{a, b, c} {
		waitFor(t, 10*time.Second, "three alive", func() error { return seesAlive(n, "n1", "n2", "n3") })
	}
	return a, b, c
}

func TestThreeNodesJoin(t *testing.T) {
	t.Parallel()
	a, b, c := threeNodes(t, nil)
	for _, n := range []*Cluster{a, b, c} {
		if n.NumAlive() != 3 || len(n.Members()) != 3 {
			t.Fatalf("%s: NumAlive %d, Members %v", n.cfg.NodeID, n.NumAlive(), memberIDs(n.Members()))
		}
		// Everyone agrees on everyone's address, which is the real port.
		for _, other := range []*Cluster{a, b, c} {
			m, _ := stateOf(n, other.cfg.NodeID)
			if m.Addr != other.LocalNode().Addr || strings.HasSuffix(m.Addr, ":0") {
				t.Fatalf("%s sees %s at %q, it is at %q", n.cfg.NodeID, m.NodeID, m.Addr, other.LocalNode().Addr)
			}
		}
	}
}

func TestSeedsOnlySelfStartsAlone(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	cfg := testConfig(t, "solo", "127.0.0.1:"+strconv.Itoa(port), "localhost:"+strconv.Itoa(port))
	cfg.BindPort = port
	begin := time.Now()
	c := startNode(t, cfg)
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Start took %v; a node whose seeds are itself should not retry", d)
	}
	if err := seesAlive(c, "solo"); err != nil {
		t.Fatal(err)
	}
	if got := c.LocalNode().Addr; got != "127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("LocalNode().Addr = %q", got)
	}
}

func TestGracefulLeaveSeenAsLeft(t *testing.T) {
	t.Parallel()
	a, b, c := threeNodes(t, nil)
	events, cancel := a.Subscribe()
	defer cancel()
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := c.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, n := range []*Cluster{a, b} {
		waitFor(t, 5*time.Second, "n3 left", wantState(n, "n3", StateLeft))
		if err := seesAlive(n, "n1", "n2"); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.LocalNode().State; got != StateLeft {
		t.Fatalf("leaver sees itself %v", got)
	}
	ev := waitEvent(t, events, 5*time.Second, func(ev Event) bool { return ev.Type == EventLeave })
	if ev.Member.NodeID != "n3" || ev.Member.State != StateLeft || ev.Member.Meta.GRPCAddr != "127.0.0.1:1n3" {
		t.Fatalf("leave event %+v", ev)
	}
	if err := c.Leave(ctx); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after Leave: %v", err)
	}
}

func TestKilledNodeSeenDead(t *testing.T) {
	t.Parallel()
	a, b, c := threeNodes(t, nil)
	cfg := a.cfg
	// memberlist's bound: a probe round reaches the node within
	// members x ProbeInterval, then the suspicion timeout, at most
	// SuspicionMaxTimeoutMult x SuspicionMult x log10(n) x ProbeInterval.
	bound := 3*cfg.ProbeInterval + time.Duration(cfg.SuspicionMaxTimeoutMult*cfg.SuspicionMult)*cfg.ProbeInterval
	c.kill()
	for _, n := range []*Cluster{a, b} {
		took := waitFor(t, bound, "n3 dead", wantState(n, "n3", StateDead))
		t.Logf("%s saw the killed node dead after %v (bound %v)", n.cfg.NodeID, took.Round(time.Millisecond), bound)
	}
	if err := seesAlive(a, "n1", "n2"); err != nil {
		t.Fatal(err)
	}
}

func TestJoinNonexistentFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		joinTimeout time.Duration
		ctxTimeout  time.Duration
		wantCtxErr  bool
	}{
		{"join timeout", 500 * time.Millisecond, time.Minute, false},
		{"context deadline", time.Minute, 500 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, "lonely", "127.0.0.1:1")
			cfg.JoinTimeout = tt.joinTimeout
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctxTimeout)
			defer cancel()
			begin := time.Now()
			err = c.Start(ctx)
			took := time.Since(begin)
			if !errors.Is(err, ErrJoinFailed) {
				t.Fatalf("Start = %v, want ErrJoinFailed", err)
			}
			if !strings.HasPrefix(err.Error(), "cluster: could not join any of [127.0.0.1:1]: ") {
				t.Fatalf("error %q does not name the seeds", err)
			}
			var je *JoinError
			if !errors.As(err, &je) || je.Attempts < 2 {
				t.Fatalf("error %v: want a *JoinError with retries", err)
			}
			if errors.Is(err, context.DeadlineExceeded) != tt.wantCtxErr {
				t.Fatalf("error %v: wraps context.DeadlineExceeded = %v, want %v", err, !tt.wantCtxErr, tt.wantCtxErr)
			}
			if took > 500*time.Millisecond+cfg.TCPTimeout+time.Second {
				t.Fatalf("Start took %v", took)
			}
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
			if err := c.Start(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("Start after a failed Start = %v, want ErrClosed", err)
			}
		})
	}
}

func TestCloseAbortsStart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "lonely", "127.0.0.1:1")
	cfg.JoinTimeout = time.Minute
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Start(context.Background()) }()
	time.Sleep(300 * time.Millisecond) // let it retry a few times; the Close below must still win
	begin := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrJoinFailed) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Start = %v, want ErrJoinFailed and ErrClosed", err)
	}
	if took := time.Since(begin); took > cfg.TCPTimeout+time.Second {
		t.Fatalf("Close took %v", took)
	}
}

func TestDuplicateIDRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		through string // the seed the duplicate joins through
	}{
		{"through the holder of the id", "n1"},
		{"through another member", "n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, testConfig(t, "n1"))
			b := startNode(t, testConfig(t, "n2", a.LocalNode().Addr))
			for _, n := range []*Cluster{a, b} {
				waitFor(t, 5*time.Second, "two alive", func() error { return seesAlive(n, "n1", "n2") })
			}
			seed := map[string]*Cluster{"n1": a, "n2": b}[tt.through].LocalNode().Addr

			dupCfg := testConfig(t, "n1", seed)
			dupCfg.Meta.Version = "impostor"
			dup, err := New(dupCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer dup.Close()
			begin := time.Now()
			err = dup.Start(context.Background())
			took := time.Since(begin)
			if !errors.Is(err, ErrDuplicateID) || !strings.Contains(err.Error(), `"n1"`) {
				t.Fatalf("duplicate Start = %v, want ErrDuplicateID naming n1", err)
			}
			if took > 3*time.Second {
				t.Fatalf("refusal took %v; a live duplicate should be refused at once", took)
			}
			t.Logf("refused after %v: %v", took.Round(time.Millisecond), err)

			// The original keeps running, unaffected: same address, same
			// meta, no flapping, and it can still take new members.
			c := startNode(t, testConfig(t, "n3", a.LocalNode().Addr))
			for _, n := range []*Cluster{a, b, c} {
				waitFor(t, 5*time.Second, "three alive", func() error { return seesAlive(n, "n1", "n2", "n3") })
				m, _ := stateOf(n, "n1")
				if m.Addr != a.LocalNode().Addr {
					t.Fatalf("%s sees n1 at %s, the original is at %s", n.cfg.NodeID, m.Addr, a.LocalNode().Addr)
				}
			}
			if a.LocalNode().State != StateAlive {
				t.Fatalf("original sees itself %v", a.LocalNode().State)
			}
		})
	}
}

// TestRestartAtNewAddress: a node killed and restarted under the same id at
// another port is not refused as a duplicate; it joins once failure
// detection has declared its old incarnation dead.
func TestRestartAtNewAddress(t *testing.T) {
	t.Parallel()
	a := startNode(t, testConfig(t, "n1"))
	b := startNode(t, testConfig(t, "n2", a.LocalNode().Addr))
	waitFor(t, 5*time.Second, "two alive", func() error { return seesAlive(b, "n1", "n2") })
	oldAddr := a.LocalNode().Addr
	a.kill()

	cfg := testConfig(t, "n1", b.LocalNode().Addr)
	cfg.JoinTimeout = 30 * time.Second
	begin := time.Now()
	a2 := startNode(t, cfg)
	t.Logf("restarted node joined after %v", time.Since(begin).Round(time.Millisecond))
	if a2.LocalNode().Addr == oldAddr {
		t.Fatal("restart got the same port; the test needs a new one")
	}
	took := waitFor(t, 20*time.Second, "n2 sees the new n1", func() error {
		m, _ := stateOf(b, "n1")
		if m.State != StateAlive || m.Addr != a2.LocalNode().Addr {
			return fmt.Errorf("n2 sees n1 %v at %s", m.State, m.Addr)
		}
		return nil
	})
	t.Logf("n2 saw n1 at its new address %v after the restart's Start returned", took.Round(time.Millisecond))
}

func waitEvent(t *testing.T, ch <-chan Event, timeout time.Duration, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("event channel closed")
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no matching event within %v", timeout)
		}
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	a, err := New(testConfig(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	events, cancel := a.Subscribe()
	defer cancel()
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	is := func(typ EventType, id string) func(Event) bool {
		return func(ev Event) bool { return ev.Type == typ && ev.Member.NodeID == id }
	}
	self := waitEvent(t, events, time.Second, is(EventJoin, "n1"))
	if self.Member.Addr != a.LocalNode().Addr || self.Member.Meta.RaftAddr != "127.0.0.1:2n1" {
		t.Fatalf("own join event %+v", self)
	}

	b := startNode(t, testConfig(t, "n2", a.LocalNode().Addr))
	join := waitEvent(t, events, 5*time.Second, is(EventJoin, "n2"))
	if join.Member.State != StateAlive || join.Member.Addr != b.LocalNode().Addr || join.Member.Meta.HTTPAddr != "127.0.0.1:3n2" {
		t.Fatalf("join event %+v", join)
	}

	newMeta := b.cfg.Meta
	newMeta.Version = "v2"
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := b.UpdateMeta(ctx, newMeta); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	upd := waitEvent(t, events, 5*time.Second, is(EventUpdate, "n2"))
	if upd.Member.Meta.Version != "v2" || upd.Member.Meta.NodeID != "n2" {
		t.Fatalf("update event %+v", upd)
	}
	if m, _ := stateOf(a, "n2"); m.Meta.Version != "v2" {
		t.Fatalf("n1 sees n2's meta %+v after the update event", m.Meta)
	}

	if err := b.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	leave := waitEvent(t, events, 5*time.Second, is(EventLeave, "n2"))
	if leave.Member.State != StateLeft || leave.Member.Meta.Version != "v2" {
		t.Fatalf("leave event %+v", leave)
	}

	// A node that comes back after leaving is a join again.
	c := startNode(t, testConfig(t, "n2", a.LocalNode().Addr))
	if again := waitEvent(t, events, 5*time.Second, is(EventJoin, "n2")); again.Member.Addr != c.LocalNode().Addr {
		t.Fatalf("rejoin event %+v", again)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for range events { // Close closes subscriptions
	}
}

// TestPartitionHeals isolates one node of three for longer than
// GossipToTheDeadTime, so that memberlist on both sides forgets the other,
// then heals the network. With the rejoin loop the cluster is whole again
// within a bounded time; without it (the control) it stays split.
func TestPartitionHeals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rejoin   time.Duration
		wantHeal bool
	}{
		{"rejoin loop heals", 300 * time.Millisecond, true},
		{"control: memberlist alone stays split", time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fn := &faultNet{}
			a, b, c := threeNodes(t, func(cfg *Config) {
				fastTimings(cfg)
				cfg.RejoinInterval = tt.rejoin
				cfg.Transport = newFaultTransport(t, fn, cfg.Logger)
				cfg.BindPort = 0 // the transport has bound already
			})
			cut := c.LocalNode().Addr
			fn.isolate(cut, true)
			begin := time.Now()
			for _, n := range []*Cluster{a, b} {
				waitFor(t, 20*time.Second, "n3 dead", wantState(n, "n3", StateDead))
			}
			waitFor(t, 30*time.Second, "n3 sees n1 dead", wantState(c, "n1", StateDead))
			waitFor(t, 30*time.Second, "n3 sees n2 dead", wantState(c, "n2", StateDead))
			// memberlist forgets a dead node GossipToTheDeadTime after its
			// death, at the end of a probe round; allow for both.
			forget := a.cfg.GossipToTheDeadTime + 3*a.cfg.ProbeInterval
			time.Sleep(forget)
			t.Logf("partition held %v (deaths seen on both sides, then %v to be forgotten)",
				time.Since(begin).Round(time.Millisecond), forget)

			fn.isolate(cut, false)
			healed := time.Now()
			if tt.wantHeal {
				for _, n := range []*Cluster{a, b, c} {
					waitFor(t, 10*time.Second, "healed", func() error { return seesAlive(n, "n1", "n2", "n3") })
				}
				t.Logf("whole again %v after the network healed", time.Since(healed).Round(time.Millisecond))
				return
			}
			observe := 3 * time.Second
			for time.Since(healed) < observe {
				if seesAlive(a, "n1", "n2", "n3") == nil || seesAlive(c, "n1", "n2", "n3") == nil {
					t.Fatalf("healed without the rejoin loop after %v: the test no longer shows the problem it guards against", time.Since(healed))
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("still split %v after the network healed, as expected without rejoin", observe)
		})
	}
}

// A gossip port another socket holds is ErrPortInUse, whether Start binds
// it or NewNetTransport does.
func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, "late")
	cfg.BindPort = ln.Addr().(*net.TCPAddr).Port

	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(t.Context()); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start = %v, want ErrPortInUse", err)
	}
	nt, err := NewNetTransport(cfg)
	if !errors.Is(err, ErrPortInUse) {
		if nt != nil {
			_ = nt.Shutdown()
		}
		t.Fatalf("NewNetTransport = %v, want ErrPortInUse", err)
	}
	t.Log(err)
}
