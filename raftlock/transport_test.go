package raftlock

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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

// lockedLog collects log output written from several goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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
	logs := &lockedLog{}
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
