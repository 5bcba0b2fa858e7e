package raftlock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/internal/slowloris"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
)

// muxNode is one node's Raft port split into groups, with a Raft
// transport per group.
type muxNode struct {
	addr    raft.ServerAddress
	streams []raft.StreamLayer // as MuxStreams returned them
	trans   []*raft.NetworkTransport
	votes   chan vote // the RequestVotes the transports answered
}

// vote is a RequestVote that reached group g.
type vote struct {
	g    int
	term uint64
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newMuxNode splits a new listener into groups streams, each wrapped by
// wrap when not nil (TLS), builds a transport on each, and answers every
// RequestVote that reaches group g with Term 100+g, Granted, until the
// test ends.
func newMuxNode(t *testing.T, groups int, headerTimeout time.Duration, wrap func(raft.StreamLayer) raft.StreamLayer) *muxNode {
	t.Helper()
	ln := listenLocal(t)
	n := &muxNode{addr: raft.ServerAddress(ln.Addr().String()), streams: MuxStreams(TCPStreamLayer(ln), groups, headerTimeout),
		votes: make(chan vote, 64)}
	for _, s := range n.streams {
		if wrap != nil {
			s = wrap(s)
		}
		n.trans = append(n.trans, NewStreamTransport(s, FastConfig()))
	}
	t.Cleanup(n.close)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for g, tr := range n.trans {
		go func() {
			for {
				select {
				case rpc := <-tr.Consumer():
					req := rpc.Command.(*raft.RequestVoteRequest)
					n.votes <- vote{g: g, term: req.Term}
					rpc.Respond(&raft.RequestVoteResponse{Term: 100 + uint64(g), Granted: true}, nil)
				case <-done:
					return
				}
			}
		}()
	}
	return n
}

// close closes the node's transports, and so its streams and listener.
func (n *muxNode) close() {
	for _, tr := range n.trans {
		_ = tr.Close()
	}
}

// serveVotes answers every RequestVote that reaches tr as group 0 of a
// muxNode does, reporting them on a channel, until the test ends.
func serveVotes(t *testing.T, tr *raft.NetworkTransport) <-chan vote {
	votes := make(chan vote, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case rpc := <-tr.Consumer():
				votes <- vote{g: 0, term: rpc.Command.(*raft.RequestVoteRequest).Term}
				rpc.Respond(&raft.RequestVoteResponse{Term: 100, Granted: true}, nil)
			case <-done:
				return
			}
		}
	}()
	return votes
}

// requestVote sends a RequestVote of term from tr to addr.
func requestVote(tr *raft.NetworkTransport, to raft.ServerAddress, term uint64) (raft.RequestVoteResponse, error) {
	var resp raft.RequestVoteResponse
	err := tr.RequestVote("peer", to, &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("from"), Addr: []byte(tr.LocalAddr())},
		Term:      term,
	}, &resp)
	return resp, err
}

// checkVote sends a RequestVote of term from tr to addr and checks that
// it reached group g of the node whose answered votes are votes (and
// nothing else did), and that g's answer came back.
func checkVote(t *testing.T, tr *raft.NetworkTransport, to raft.ServerAddress, votes <-chan vote, g int, term uint64) {
	t.Helper()
	resp, err := requestVote(tr, to, term)
	if err != nil {
		t.Fatalf("RequestVote to group %d: %v", g, err)
	}
	select {
	case v := <-votes:
		if v != (vote{g: g, term: term}) {
			t.Errorf("the RequestVote of term %d for group %d reached group %d as term %d", term, g, v.g, v.term)
		}
	default:
		t.Fatalf("a RequestVote for group %d was answered, but no group consumed it", g)
	}
	select {
	case v := <-votes:
		t.Errorf("group %d also consumed a RequestVote of term %d", v.g, v.term)
	default:
	}
	if want := (raft.RequestVoteResponse{Term: 100 + uint64(g), Granted: true}); resp.Term != want.Term || !resp.Granted {
		t.Errorf("reply %+v, want %+v", resp, want)
	}
}

// awaitMuxDone waits until the accept loop and header readers of the mux
// that made s have ended.
func awaitMuxDone(t *testing.T, s raft.StreamLayer) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		s.(*muxStream).m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the mux's goroutines still run 5s after its streams were closed")
	}
}

// awaitReading waits until n connections of the mux that made s are
// having their header read.
func awaitReading(t *testing.T, s raft.StreamLayer, n int) {
	t.Helper()
	m := s.(*muxStream).m
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		m.mu.Lock()
		got := len(m.reading)
		m.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections awaiting their header, want %d", got, n)
		}
	}
}

// A RequestVote sent by group g's transport on one node reaches group g's
// transport on the other, and only it, and its answer comes back; closing
// every transport of a node ends its mux and closes its port.
func TestMuxRoutesRPCsToTheirGroup(t *testing.T) {
	const groups = 3
	a := newMuxNode(t, groups, 0, nil)
	b := newMuxNode(t, groups, 0, nil)
	for _, tc := range []struct {
		g        int
		from, to *muxNode
	}{
		{0, a, b}, {1, a, b}, {2, a, b},
		{0, b, a}, {1, b, a}, {2, b, a},
	} {
		dir := "a to b"
		if tc.from == b {
			dir = "b to a"
		}
		t.Run(fmt.Sprintf("group %d %s", tc.g, dir), func(t *testing.T) {
			for i := range 2 { // the second goes on a pooled connection
				checkVote(t, tc.from.trans[tc.g], tc.to.addr, tc.to.votes, tc.g, uint64(10*tc.g+i+1))
			}
		})
	}

	b.close()
	awaitMuxDone(t, b.streams[0])
	if c, err := net.DialTimeout("tcp", string(b.addr), time.Second); err == nil {
		c.Close()
		t.Fatal("a dial to a node whose transports are all closed connected")
	}
}

// TLS layered on each group's stream handshakes after the header: groups
// route under TLS, and a plain TLS transport (no mux, an earlier release)
// reaches group 0, whose first byte, the ClientHello's, is the group's.
func TestMuxUnderTLS(t *testing.T) {
	pki := tlstest.New(t, "loom")
	src, err := tlsconf.New(pki.NodeOptions("n1"))
	if err != nil {
		t.Fatal(err)
	}
	tlsOver := func(s raft.StreamLayer) raft.StreamLayer {
		return TLSStreamLayer(s, nil, src.ServerConfig("raft", tlsconf.RoleNode), src.ClientConfig(), src.Leaf, nil)
	}
	a := newMuxNode(t, 2, 0, tlsOver)
	b := newMuxNode(t, 2, 0, tlsOver)
	for g := range 2 {
		checkVote(t, a.trans[g], b.addr, b.votes, g, uint64(g+1))
	}

	plain := NewStreamTransport(tlsOver(TCPStreamLayer(listenLocal(t))), FastConfig())
	defer plain.Close()
	plainVotes := serveVotes(t, plain)
	checkVote(t, plain, b.addr, b.votes, 0, 7)
	checkVote(t, b.trans[0], plain.LocalAddr(), plainVotes, 0, 8)
}

// A plain transport (one group, no mux: an earlier release) and group 0 of
// a muxed node serve each other. A group past 0 cannot reach a plain
// transport: its RPC fails (the header is an unknown RPC type there)
// rather than reach the wrong group.
func TestMuxInteropWithPlainTransport(t *testing.T) {
	muxed := newMuxNode(t, 3, 0, nil)
	plain := NewStreamTransport(TCPStreamLayer(listenLocal(t)), FastConfig())
	defer plain.Close()
	plainVotes := serveVotes(t, plain)

	t.Run("plain to muxed group 0", func(t *testing.T) {
		checkVote(t, plain, muxed.addr, muxed.votes, 0, 1)
	})
	t.Run("muxed group 0 to plain", func(t *testing.T) {
		checkVote(t, muxed.trans[0], plain.LocalAddr(), plainVotes, 0, 2)
	})
	t.Run("muxed group 1 to plain", func(t *testing.T) {
		if _, err := requestVote(muxed.trans[1], plain.LocalAddr(), 3); err == nil {
			t.Fatal("a RequestVote from group 1 to a plain transport was answered")
		}
		select {
		case v := <-plainVotes:
			t.Fatalf("the plain transport consumed %+v", v)
		default:
		}
	})
}

// Connections that send nothing, or half a header, hold up no other
// connection's routing, and are closed after the header timeout (or when
// the mux is closed, if that comes first).
func TestMuxSilentConnectionsDoNotHoldOthers(t *testing.T) {
	t.Run("others are routed", func(t *testing.T) {
		b := newMuxNode(t, 2, time.Minute, nil)
		silent := slowloris.Dial(t, string(b.addr), nil)
		half := slowloris.Dial(t, string(b.addr), []byte{muxMagic})
		awaitReading(t, b.streams[0], 2)

		a := newMuxNode(t, 2, time.Minute, nil)
		for g := range 2 {
			checkVote(t, a.trans[g], b.addr, b.votes, g, uint64(g+1))
		}
		awaitReading(t, b.streams[0], 2) // still waiting: routed past

		b.close()
		silent.AwaitClose(t, 5*time.Second)
		half.AwaitClose(t, 5*time.Second)
		awaitMuxDone(t, b.streams[0])
	})

	t.Run("closed after the header timeout", func(t *testing.T) {
		const timeout = 100 * time.Millisecond
		b := newMuxNode(t, 2, timeout, nil)
		for _, prefix := range [][]byte{nil, {muxMagic}, {muxMagic, 0x81}} {
			took, _ := slowloris.Dial(t, string(b.addr), prefix).AwaitClose(t, 5*time.Second)
			if took < timeout {
				t.Errorf("sent % x: closed after %v, before the %v timeout", prefix, took, timeout)
			}
		}
		a := newMuxNode(t, 2, timeout, nil)
		checkVote(t, a.trans[1], b.addr, b.votes, 1, 1)
	})
}

// A header that names a group past the last, or is not a uvarint, has its
// connection closed at once (the header timeout is a minute); the mux
// routes on.
func TestMuxClosesBadHeaders(t *testing.T) {
	b := newMuxNode(t, 2, time.Minute, nil)
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"group 2 of 2", []byte{muxMagic, 2}},
		{"group 2^32-1", []byte{muxMagic, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"uvarint overflow", []byte{muxMagic, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"text", []byte{muxMagic, 'h', 'e', 'l', 'l', 'o'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slowloris.Dial(t, string(b.addr), tc.header).AwaitClose(t, 5*time.Second)
		})
	}
	a := newMuxNode(t, 2, time.Minute, nil)
	checkVote(t, a.trans[1], b.addr, b.votes, 1, 1)
}

// roundTrip dials addr through s, and checks that s's Accept returns the
// connection with what was written on it, and what it writes back
// arrives, and that the addresses match.
func roundTrip(t *testing.T, s raft.StreamLayer, addr raft.ServerAddress) {
	t.Helper()
	c, err := s.Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	ac, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if ac.RemoteAddr().String() != c.LocalAddr().String() || ac.LocalAddr().String() != c.RemoteAddr().String() {
		t.Errorf("accepted %v→%v, dialed %v→%v", ac.RemoteAddr(), ac.LocalAddr(), c.LocalAddr(), c.RemoteAddr())
	}
	if err := ac.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(ac, got); err != nil || string(got) != "ping" {
		t.Fatalf("accepted %q, %v; want ping", got, err)
	}
	if _, err := ac.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "pong" {
		t.Fatalf("dialer read %q, %v; want pong", got, err)
	}
}

// awaitEOF checks that the other end closes c.
func awaitEOF(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
		t.Fatalf("read %v, want the connection closed", err)
	}
}

// acceptErr returns the error of s's Accept, failing t if it returns a
// connection or nothing within 5 s.
func acceptErr(t *testing.T, s raft.StreamLayer) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		c, err := s.Accept()
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Accept returned a connection, want an error")
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits after 5s, want an error")
		return nil
	}
}

// Closing a group's stream fails its Accepts (a waiting one too) and
// closes the connections for it that no Accept took; the other groups
// route on; closing the last closes the port, and the mux's goroutines end.
func TestMuxClose(t *testing.T) {
	ln := listenLocal(t)
	addr := raft.ServerAddress(ln.Addr().String())
	streams := MuxStreams(TCPStreamLayer(ln), 3, time.Minute)
	for g, s := range streams {
		if s.Addr().String() != ln.Addr().String() {
			t.Errorf("group %d: Addr %v, want %v", g, s.Addr(), ln.Addr())
		}
	}

	waiting := make(chan error, 1)
	go func() {
		_, err := streams[1].Accept()
		waiting <- err
	}()
	if err := streams[1].Close(); err != nil {
		t.Fatal(err)
	}
	if err := streams[1].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("an Accept waiting on the closed stream returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an Accept waiting on the closed stream still waits 5s after its Close")
	}
	if err := acceptErr(t, streams[1]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the closed stream: %v, want net.ErrClosed", err)
	}
	// A connection for the closed group is closed.
	late, err := streams[1].Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	awaitEOF(t, late)

	for _, g := range []int{0, 2} {
		roundTrip(t, streams[g], addr)
	}

	// A connection for group 2 that nothing accepts is closed with it.
	unaccepted, err := streams[2].Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unaccepted.Close()
	if err := streams[2].Close(); err != nil {
		t.Fatal(err)
	}
	awaitEOF(t, unaccepted)
	roundTrip(t, streams[0], addr)

	if err := streams[0].Close(); err != nil {
		t.Fatalf("closing the last stream: %v", err)
	}
	awaitMuxDone(t, streams[0])
	if c, err := net.DialTimeout("tcp", string(addr), time.Second); err == nil {
		c.Close()
		t.Fatal("a dial to a mux whose streams are all closed connected")
	}
	for g, s := range streams {
		if err := acceptErr(t, s); !errors.Is(err, net.ErrClosed) {
			t.Errorf("group %d: Accept after all closed: %v", g, err)
		}
	}
}

// When base's Accept fails for good (its listener closed under it), every
// group's Accept fails.
func TestMuxBaseClosed(t *testing.T) {
	ln := listenLocal(t)
	streams := MuxStreams(TCPStreamLayer(ln), 2, 0)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	for g, s := range streams {
		if err := acceptErr(t, s); !errors.Is(err, net.ErrClosed) {
			t.Errorf("group %d: Accept: %v, want net.ErrClosed", g, err)
		}
	}
	for _, s := range streams {
		_ = s.Close() // the last returns the listener's second Close's error
	}
	awaitMuxDone(t, streams[0])
}
