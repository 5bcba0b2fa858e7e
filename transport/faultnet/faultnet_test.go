package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Two "nodes" on their own loopback IPs, as under the hook.
const ipA, ipB = "127.0.0.21", "127.0.0.22"

func peers() map[string][]string { return map[string][]string{"a": {ipA}, "b": {ipB}} }

func hooks(t *testing.T) (a, b *Hook) {
	t.Helper()
	a, b = New("a", ipA, 1), New("b", ipB, 2)
	for _, h := range []*Hook{a, b} {
		if err := h.Set(Faults{Peers: peers()}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func set(t *testing.T, h *Hook, rules ...Rule) {
	t.Helper()
	if err := h.Set(Faults{Peers: peers(), Rules: rules}); err != nil {
		t.Fatal(err)
	}
}

// pipe connects a (dialing) to b (accepting) on channel GRPC.
func pipe(t *testing.T, a, b *Hook) (ac, bc net.Conn, ln net.Listener) {
	t.Helper()
	raw, err := net.Listen("tcp", ipB+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ipB, err)
	}
	ln = b.Listener(raw, GRPC)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ac, err = a.Dialer(GRPC)(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bc = <-accepted
	t.Cleanup(func() { ac.Close(); bc.Close() })
	return ac, bc, ln
}

// exchange writes msg on from and reports whether to reads it within d.
func exchange(t *testing.T, from, to net.Conn, msg string, d time.Duration) (bool, error) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		return false, err
	}
	_ = to.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(to, buf)
	if err != nil {
		return false, err
	}
	return string(buf) == msg, nil
}

func TestValidateListsEveryProblem(t *testing.T) {
	err := Faults{Rules: []Rule{{Dir: "sideways", Loss: 2, Channels: []Channel{"smoke"}}}, Clock: ClockFault{Rate: -1}}.Validate()
	for _, want := range []string{"no peer", "sideways", "smoke", "loss 2", "negative rate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	if err := New("a", "", 1).Set(Faults{Rules: []Rule{{}}}); err == nil {
		t.Error("Set took an invalid rule")
	}
}

func TestPeerAttribution(t *testing.T) {
	h := New("a", ipA, 1)
	_ = h.Set(Faults{Peers: map[string][]string{"b": {ipB}, "c": {"127.0.0.1:7001"}}})
	for addr, want := range map[string]string{ipB + ":4000": "b", ipB: "b", "127.0.0.1:7001": "c", "127.0.0.1:7002": "", "10.1.1.1:1": ""} {
		if got := h.Peer(addr); got != want {
			t.Errorf("Peer(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestPartitionBlackholesAndPoisons(t *testing.T) {
	a, b := hooks(t)
	ac, bc, ln := pipe(t, a, b)
	if ok, err := exchange(t, ac, bc, "hello", time.Second); !ok {
		t.Fatalf("healthy link: %v", err)
	}
	// A symmetric partition, as the suite sets it: each side drops the other.
	set(t, a, Rule{Peer: "b", Drop: true})
	set(t, b, Rule{Peer: "a", Drop: true})
	if ok, err := exchange(t, ac, bc, "lost", 200*time.Millisecond); ok || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a partitioned write arrived (ok=%v err=%v)", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	start := time.Now()
	if _, err := a.Dialer(GRPC)(ctx, ln.Addr().String()); err == nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("a dial across the partition: %v after %v (want a hang until the deadline)", err, time.Since(start))
	}
	cancel()
	// Heal: the connection that lost bytes fails; a new one works.
	set(t, a)
	set(t, b)
	if _, err := ac.Write([]byte("x")); !errors.Is(err, ErrPoisoned) {
		t.Fatalf("write on a poisoned connection: %v", err)
	}
	ac2, bc2, _ := pipe(t, a, b)
	if ok, err := exchange(t, ac2, bc2, "again", time.Second); !ok {
		t.Fatalf("after healing: %v", err)
	}
}

func TestOneWayAndInboundRules(t *testing.T) {
	a, b := hooks(t)
	ac, bc, _ := pipe(t, a, b)
	// b stops hearing a (inbound on b, by a's source IP); b → a still flows.
	set(t, b, Rule{Peer: "a", Dir: In, Channels: []Channel{GRPC}})
	set(t, b, Rule{Peer: "a", Dir: In, Channels: []Channel{GRPC}, Drop: true})
	if ok, err := exchange(t, bc, ac, "b-to-a", time.Second); !ok {
		t.Fatalf("b → a under an inbound rule on b: %v", err)
	}
	if ok, _ := exchange(t, ac, bc, "a-to-b", 200*time.Millisecond); ok {
		t.Fatal("a → b arrived though b drops what comes from a")
	}
	// A rule on another channel does not touch this one.
	set(t, b, Rule{Peer: "a", Drop: true, Channels: []Channel{Raft}})
	ac2, bc2, _ := pipe(t, a, b)
	if ok, err := exchange(t, ac2, bc2, "grpc", time.Second); !ok {
		t.Fatalf("a raft-only rule cut grpc: %v", err)
	}
}

func TestDelay(t *testing.T) {
	a, b := hooks(t)
	ac, bc, _ := pipe(t, a, b)
	set(t, a, Rule{Peer: "*", Delay: Duration(100 * time.Millisecond)})
	start := time.Now()
	if ok, err := exchange(t, ac, bc, "slow", time.Second); !ok || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delayed write: ok=%v err=%v after %v", ok, err, time.Since(start))
	}
}

func TestClock(t *testing.T) {
	h := New("a", "", 1)
	_ = h.Set(Faults{Clock: ClockFault{Rate: 2, Offset: Duration(time.Hour)}})
	s := h.state.Load()
	base := s.realBase
	if got := s.read(base.Add(10 * time.Second)).Sub(s.read(base)); got != 20*time.Second {
		t.Fatalf("rate 2: 10s real read as %v", got)
	}
	if off := h.Now().Sub(time.Now()); off < 59*time.Minute {
		t.Fatalf("offset 1h read as %v", off)
	}
	// Changing the rate carries the clock on; dropping the offset jumps back.
	before := h.Now()
	_ = h.Set(Faults{Clock: ClockFault{Rate: 0.5, Offset: Duration(time.Hour)}})
	if d := h.Now().Sub(before); d < 0 || d > time.Second {
		t.Fatalf("rate change jumped the clock by %v", d)
	}
	_ = h.Set(Faults{})
	if d := time.Until(h.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("healed clock off by %v", d)
	}
}

// An offset steps the wall clock (Now) only; the monotonic clock runs at
// the rate and never steps.
func TestMonotonicClock(t *testing.T) {
	h := New("a", "", 1)
	m0, n0 := h.Monotonic(), h.MonotonicNow()
	_ = h.Set(Faults{Clock: ClockFault{Offset: Duration(time.Hour)}})
	if d := h.Monotonic() - m0; d < 0 || d > time.Second {
		t.Fatalf("an offset of 1h moved the monotonic clock by %v", d)
	}
	if d := h.MonotonicNow().Sub(n0); d < 0 || d > time.Second {
		t.Fatalf("an offset of 1h moved MonotonicNow by %v", d)
	}
	if off := h.Now().Sub(time.Now()); off < 59*time.Minute {
		t.Fatalf("the wall clock did not step: offset read as %v", off)
	}
	_ = h.Set(Faults{Clock: ClockFault{Rate: 2, Offset: Duration(-time.Hour)}})
	s := h.state.Load()
	if got := s.readMono(s.realBase.Add(10*time.Second)) - s.readMono(s.realBase); got != 20*time.Second {
		t.Fatalf("rate 2: 10s real read as %v on the monotonic clock", got)
	}
	if d := h.Monotonic() - m0; d < 0 || d > time.Second {
		t.Fatalf("stepping the wall clock back 2h moved the monotonic clock by %v", d)
	}
}

func TestDisk(t *testing.T) {
	h := New("a", "", 1)
	if err := h.BeforeSync(); err != nil {
		t.Fatal(err)
	}
	_ = h.Set(Faults{Disk: DiskFault{NoSpace: true, SyncDelay: Duration(20 * time.Millisecond)}})
	start := time.Now()
	if err := h.BeforeSync(); !errors.Is(err, syscall.ENOSPC) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("BeforeSync = %v after %v", err, time.Since(start))
	}
}

func TestHandler(t *testing.T) {
	h := New("a", "", 1)
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	do := func(method, body string) int {
		req, _ := http.NewRequest(method, srv.URL+"/chaos/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := do("PUT", `{"rules":[{"peer":"b","drop":true,"dir":"out"}],"peers":{"b":["127.0.0.22"]},"clock":{"offset":"2s"}}`); c != http.StatusNoContent {
		t.Fatalf("PUT: %d", c)
	}
	if f := h.Faults(); len(f.Rules) != 1 || !f.Rules[0].Drop || f.Clock.Offset != Duration(2*time.Second) {
		t.Fatalf("faults after PUT: %+v", f)
	}
	if c := do("PUT", `{"rules":[{"peer":"b","loss":3}]}`); c != http.StatusBadRequest {
		t.Fatalf("PUT of a bad rule: %d", c)
	}
	if c := do("DELETE", ""); c != http.StatusNoContent || len(h.Faults().Rules) != 0 || h.Faults().Peers["b"] == nil {
		t.Fatalf("DELETE: %d, faults %+v (rules gone, address book kept)", c, h.Faults())
	}
}

func TestMemberlistPackets(t *testing.T) {
	a, b := hooks(t)
	mk := func(h *Hook, ip string) memberlist.NodeAwareTransport {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ip}, BindPort: 0})
		if err != nil {
			t.Skipf("memberlist transport on %s: %v", ip, err)
		}
		g := h.Memberlist(nt)
		t.Cleanup(func() { _ = g.Shutdown() })
		return g
	}
	ga, gb := mk(a, ipA), mk(b, ipB)
	_, portB, _ := gb.FinalAdvertiseAddr("", 0)
	to := memberlist.Address{Addr: net.JoinHostPort(ipB, strconv.Itoa(portB)), Name: "b"}
	recv := func() bool {
		select {
		case p := <-gb.PacketCh():
			return strings.HasPrefix(p.From.String(), ipA+":")
		case <-time.After(300 * time.Millisecond):
			return false
		}
	}
	if _, err := ga.WriteToAddress([]byte("ping"), to); err != nil || !recv() {
		t.Fatalf("healthy packet not received from %s (%v)", ipA, err)
	}
	set(t, a, Rule{Peer: "b", Dir: Out, Drop: true})
	if _, _ = ga.WriteToAddress([]byte("ping"), to); recv() {
		t.Fatal("packet crossed an out rule")
	}
	set(t, a)
	set(t, b, Rule{Peer: "a", Dir: In, Drop: true, Channels: []Channel{Gossip}})
	if _, _ = ga.WriteToAddress([]byte("ping"), to); recv() {
		t.Fatal("packet crossed an in rule")
	}
}

func TestRaftStreamLayer(t *testing.T) {
	a, b := hooks(t)
	raw, err := net.Listen("tcp", ipB+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ipB, err)
	}
	sb := b.StreamLayer(raw)
	defer sb.Close()
	sa := a.StreamLayer(nil)
	go func() {
		if c, err := sb.Accept(); err == nil {
			_, _ = io.Copy(c, c) // echo
		}
	}()
	c, err := sa.Dial(raft.ServerAddress(sb.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, err := exchange(t, c, c, "vote", time.Second); !ok {
		t.Fatalf("echo over the stream layer: %v", err)
	}
	set(t, a, Rule{Peer: "b", Drop: true, Channels: []Channel{Raft}})
	start := time.Now()
	if _, err := sa.Dial(raft.ServerAddress(sb.Addr().String()), 100*time.Millisecond); err == nil || time.Since(start) < 90*time.Millisecond {
		t.Fatalf("raft dial across a partition: %v after %v", err, time.Since(start))
	}
}

// A connection made before the address book named its peer (a node's
// connections at start, before the suite sets the book) obeys the rules
// set later, on both sides.
func TestConnectionsMadeBeforeTheAddressBook(t *testing.T) {
	a, b := New("a", ipA, 1), New("b", ipB, 2)
	ac, bc, _ := pipe(t, a, b)
	if ok, err := exchange(t, ac, bc, "hello", time.Second); !ok {
		t.Fatalf("healthy link: %v", err)
	}
	for _, h := range []*Hook{a, b} {
		if err := h.Set(Faults{Peers: peers()}); err != nil {
			t.Fatal(err)
		}
	}
	set(t, b, Rule{Peer: "a", Dir: In, Drop: true})
	if ok, _ := exchange(t, ac, bc, "lost", 200*time.Millisecond); ok {
		t.Fatal("b heard a through a connection made before its book named a")
	}
	set(t, b)
	set(t, a, Rule{Peer: "b", Dir: Out, Drop: true})
	if ok, _ := exchange(t, ac, bc, "lost", 200*time.Millisecond); ok {
		t.Fatal("a reached b through a connection made before its book named b")
	}
}

// Shutdown returns even when packets keep arriving that nobody reads:
// memberlist's NetTransport sends to its channels with no way out, so the
// wrapper must drain them until the inner transport is down (a node once
// hung on SIGTERM this way).
func TestMemberlistShutdownWithUnreadPackets(t *testing.T) {
	b := New("b", ipB, 2)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ipB}, BindPort: 0})
	if err != nil {
		t.Skipf("memberlist transport on %s: %v", ipB, err)
	}
	g := b.Memberlist(nt)
	_, port, _ := g.FinalAdvertiseAddr("", 0)
	conn, err := net.Dial("udp", net.JoinHostPort(ipB, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 200 { // more than the wrapper buffers: its pump blocks
		_, _ = conn.Write([]byte("ping"))
	}
	time.Sleep(100 * time.Millisecond) // let them arrive: the state under test, not an event
	done := make(chan error, 1)
	go func() { done <- g.Shutdown() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hangs with unread packets")
	}
}
