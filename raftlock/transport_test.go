package raftlock

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/internal/safebuf"
	"github.com/loom-mesh/loom/internal/slowloris"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
)

// streamOf is a raft.StreamLayer over a TCP listener, as a wrapper would be.
type streamOf struct{ net.Listener }

func (s streamOf) Dial(a raft.ServerAddress, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), d)
}

// Pipelined replication stays off on a transport built for
// Config.Transport: it can deadlock a follower's replication (see
// replica.TransportConfig; the replica package checks Open's own
// transport).
func TestTransportsDoNotPipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewStreamTransport(streamOf{ln}, FastConfig())
	defer tr.Close()
	if _, err := tr.AppendEntriesPipeline("x", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("NewStreamTransport pipelines: %v", err)
	}
}

// answerVotes answers every RequestVote that reaches tr, as a Raft node
// would (refusing), until the test ends.
func answerVotes(t *testing.T, tr *raft.NetworkTransport) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case rpc := <-tr.Consumer():
				rpc.Respond(&raft.RequestVoteResponse{}, nil)
			case <-done:
				return
			}
		}
	}()
}

// TestTLSAcceptTimeout: a TLS Raft transport closes, within the accept
// timeout, a connection that sends nothing, half a handshake, or a whole
// handshake and then nothing, and logs the handshakes that timed out
// once, whatever their addresses; a connection that has sent a request
// and waits in a peer's pool for longer than that keeps being served.
func TestTLSAcceptTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	pki := tlstest.New(t, "loom")
	src, err := tlsconf.New(pki.NodeOptions("n1"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &safebuf.Buffer{}
	tlsLayer := func(t *testing.T) raft.StreamLayer {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := TLSStreamLayer(TCPStreamLayer(ln), nil, src.ServerConfig("raft", tlsconf.RoleNode), src.ClientConfig(), src.Leaf,
			slog.New(slog.NewTextHandler(logs, nil)))
		s.(*tlsStream).acceptTimeout = timeout
		return s
	}
	server := NewStreamTransport(tlsLayer(t), FastConfig())
	defer server.Close()
	answerVotes(t, server)
	addr := string(server.LocalAddr())

	for _, tc := range []struct {
		name   string
		prefix []byte
	}{
		{"silent", nil},
		// A TLS record header announcing a 512-byte ClientHello that never comes.
		{"half a handshake", []byte{0x16, 0x03, 0x01, 0x02, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, _ := slowloris.Dial(t, addr, tc.prefix).AwaitClose(t, 10*time.Second)
			if took < timeout {
				t.Errorf("closed after %v, before the %v timeout", took, timeout)
			}
		})
	}

	// Both handshakes timed out: one line, which says so.
	if got := logs.String(); strings.Count(got, "refused a Raft connection") != 1 || !strings.Contains(got, "no TLS handshake within 200ms") {
		t.Errorf("want one line about a handshake that timed out; logged:\n%s", got)
	}

	t.Run("a handshake and then nothing", func(t *testing.T) {
		c := slowloris.Dial(t, addr, nil)
		cfg := src.ClientConfig().Clone()
		cfg.ServerName = "127.0.0.1"
		if err := tls.Client(c, cfg).Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.AwaitClose(t, 10*time.Second)
	})

	t.Run("pooled connection idle past the timeout", func(t *testing.T) {
		client := NewStreamTransport(tlsLayer(t), FastConfig())
		defer client.Close()
		vote := func() error {
			var resp raft.RequestVoteResponse
			return client.RequestVote("n1", raft.ServerAddress(addr), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte(client.LocalAddr())},
			}, &resp)
		}
		if err := vote(); err != nil {
			t.Fatal(err)
		}
		// Letting time pass is what this checks, so it sleeps: the
		// pooled connection, idle for three timeouts, must still serve
		// (Raft does not retry an RPC on a pooled connection that the
		// server closed: it would fail).
		time.Sleep(3 * timeout)
		if err := vote(); err != nil {
			t.Fatalf("a request on a pooled connection idle for %v: %v", 3*timeout, err)
		}
	})
}

// DialStreamLayer dials through its dial function, and BoundAccepts
// closes an accepted connection that stays silent past its timeout while
// one that speaks reads on.
func TestDialStreamLayerAndBoundAccepts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dialled atomic.Int32
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		dialled.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	s := BoundAccepts(DialStreamLayer(ln, dial), 100*time.Millisecond)
	defer s.Close()

	silent, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if dialled.Load() != 1 {
		t.Fatalf("dial function called %d times, want 1", dialled.Load())
	}
	c, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection read: %v, want io.EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent connection closed after %v", d)
	}
	c.Close()

	talker, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	c, err = s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := talker.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b, err)
	}
	time.Sleep(200 * time.Millisecond) // past the bound: lifted by the first read
	go func() { _, _ = talker.Write([]byte("y")) }()
	if _, err := c.Read(b); err != nil || b[0] != 'y' {
		t.Fatalf("second read %q, %v", b, err)
	}
}
