package raftlock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// NewStreamTransport builds a Raft transport over stream with the settings
// Open gives its own TCP transport (cfg's TransportMaxPool,
// TransportTimeout and Logger), for Config.Transport: a node whose Raft
// traffic goes through a wrapper (the chaos hook's StreamLayer) runs the
// same transport as one without.
func NewStreamTransport(stream raft.StreamLayer, cfg Config) *raft.NetworkTransport {
	var log hclog.Logger = hclog.NewNullLogger()
	if cfg.Logger != nil {
		log = NewHCLogger(cfg.Logger)
	}
	return raft.NewNetworkTransportWithConfig(replica.TransportConfig(stream, cfg.TransportMaxPool, cfg.TransportTimeout, log))
}

// TLSStreamLayer is a raft.StreamLayer that runs TLS over base: accepted
// connections use server (which should require a node certificate), and
// dialed ones client, whose handshake completes inside Dial so that a
// refused or foreign certificate fails the dial with the reason (logged
// by Raft with the peer's address). advertise, if not nil, is the address
// Addr reports (Raft's configuration stores it); else base's. log
// receives the reason an accepted connection's handshake failed (once per
// reason per minute: a peer retries many times a second), naming this
// node's certificate (leaf, if not nil) when the peer refused it.
//
// An accepted connection must finish its handshake and send the first
// bytes of a request within replica.AcceptTimeout (10 s) of its accept,
// or it is closed: a peer that connects and sends nothing, or half a
// handshake, cannot hold it. The handshake is bounded by the same time,
// writes included.
func TLSStreamLayer(base raft.StreamLayer, advertise net.Addr, server, client *tls.Config, leaf func() *x509.Certificate, log *slog.Logger) raft.StreamLayer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &tlsStream{StreamLayer: base, advertise: advertise, server: server, client: client, leaf: leaf, log: log, logged: map[string]time.Time{},
		acceptTimeout: replica.AcceptTimeout}
}

type tlsStream struct {
	raft.StreamLayer
	advertise      net.Addr
	server, client *tls.Config
	leaf           func() *x509.Certificate
	log            *slog.Logger
	acceptTimeout  time.Duration // replica.AcceptTimeout, shorter in tests

	mu     sync.Mutex
	logged map[string]time.Time // reason → when it was last logged
}

// refused logs why an accepted connection's handshake failed, once per
// reason per refusalLogEvery.
func (s *tlsStream) refused(from net.Addr, err error) {
	reason := s.reason(err)
	s.mu.Lock()
	last, seen := s.logged[reason]
	now := time.Now()
	if seen && now.Sub(last) < refusalLogEvery {
		s.mu.Unlock()
		return
	}
	if len(s.logged) >= maxRefusalReasons {
		// Reasons can carry what a peer sent (its certificate's names):
		// forget the old ones rather than grow without bound.
		for r, at := range s.logged {
			if now.Sub(at) >= refusalLogEvery || len(s.logged) >= maxRefusalReasons {
				delete(s.logged, r)
			}
		}
	}
	s.logged[reason] = now
	s.mu.Unlock()
	attrs := []any{"from", from.String(), "err", reason}
	if strings.Contains(reason, "remote error: tls:") && s.leaf != nil {
		if l := s.leaf(); l != nil {
			attrs = append(attrs, "why", fmt.Sprintf("the peer refused this node's certificate (%s, issued by %q): does the peer trust another CA?", l.Subject.CommonName, l.Issuer.CommonName))
		}
	}
	s.log.Warn("refused a Raft connection (repeats are not logged for a minute)", attrs...)
}

// refusalLogEvery spaces the log lines of one handshake failure;
// maxRefusalReasons bounds the reasons remembered for it.
const (
	refusalLogEvery   = time.Minute
	maxRefusalReasons = 256
)

// reason is what refused logs and rate-limits by: err's text without the
// connection's addresses (the log line has the peer's), so that every
// peer that times out or resets counts as one reason.
func (s *tlsStream) reason(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no TLS handshake within %v of the accept", s.acceptTimeout)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.StreamLayer.Addr()
}

// Accept returns at once; the handshake runs on the connection's first
// read, in Raft's goroutine for that connection. The handshake and the
// first bytes of the first request must come within acceptTimeout.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return replica.BoundFirstRead(&handshakeOnRead{Conn: tls.Server(c, s.server), s: s}, s.acceptTimeout), nil
}

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	cfg := s.client
	if host, _, err := net.SplitHostPort(string(addr)); err == nil && cfg.ServerName == "" {
		cfg = cfg.Clone() // names the session-cache entry; not checked (roles are)
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// handshakeOnRead completes an accepted connection's TLS handshake on its
// first read and logs why it failed.
type handshakeOnRead struct {
	*tls.Conn
	s    *tlsStream
	once sync.Once
	err  error
}

func (c *handshakeOnRead) Read(p []byte) (int, error) {
	c.once.Do(func() {
		// The read deadline BoundFirstRead set bounds the handshake's
		// reads; this bounds its writes too.
		ctx, cancel := context.WithTimeout(context.Background(), c.s.acceptTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			c.err = err
			c.s.refused(c.RemoteAddr(), err)
		}
	})
	if c.err != nil {
		// Logged above; io.EOF keeps Raft from logging it again, as an
		// error, on every retry.
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// TCPStreamLayer is a raft.StreamLayer over plain TCP on ln, as
// raft.NewTCPTransport builds for itself: the base of a TLSStreamLayer,
// which bounds the connections it accepts (this one does not: two
// deadlines on one socket would undo each other). Open's own transport,
// without Config.Transport, bounds its own (replica.AcceptTimeout).
func TCPStreamLayer(ln net.Listener) raft.StreamLayer { return tcpStream{ln} }

type tcpStream struct{ net.Listener }

func (s tcpStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// DialStreamLayer is a raft.StreamLayer that accepts on ln and dials
// through dial (a node's own network wrapper, say), bounded by Raft's
// timeout. Like TCPStreamLayer it does not bound the connections it
// accepts, so that it can be a TLSStreamLayer's base; without TLS, wrap it
// in BoundAccepts.
func DialStreamLayer(ln net.Listener, dial func(ctx context.Context, addr string) (net.Conn, error)) raft.StreamLayer {
	return dialStream{Listener: ln, dial: dial}
}

type dialStream struct {
	net.Listener
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (s dialStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(addr))
}

// BoundAccepts bounds the connections s accepts as Open's own TCP
// transport bounds its own: a connection must send its first bytes within
// timeout (0: replica.AcceptTimeout, 10 s) of its accept, or it reads as
// closed (io.EOF).
func BoundAccepts(s raft.StreamLayer, timeout time.Duration) raft.StreamLayer {
	if timeout <= 0 {
		timeout = replica.AcceptTimeout
	}
	return boundStream{StreamLayer: s, timeout: timeout}
}

type boundStream struct {
	raft.StreamLayer
	timeout time.Duration
}

func (s boundStream) Accept() (net.Conn, error) {
	c, err := s.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return replica.BoundFirstRead(c, s.timeout), nil
}
