package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/transport/loompb"
)

// ErrPermissionDenied: the node refused the call because of who the caller
// is (a client certificate on a node-internal method, a token without the
// scope). Not applied; not worth retrying elsewhere, every node answers
// the same. (auth.ErrPermissionDenied.)
var ErrPermissionDenied = auth.ErrPermissionDenied

// ErrUnauthenticated: the node checks bearer tokens and the call had none,
// or one it does not know. Not applied. (auth.ErrUnauthenticated.)
var ErrUnauthenticated = auth.ErrUnauthenticated

// nodeOnly are the methods only nodes may call when the server checks
// roles or tokens (ServerOptions.CheckRoles, ServerOptions.Tokens): Raft
// commands a follower forwards to the leader. Actor calls (Actors.Invoke
// and Actors.Stream, which also carry calls one node forwards to
// another), Tasks.Run, Messages.Send and Topology.Watch are for clients
// too.
var nodeOnly = map[string]bool{
	loompb.Coordinator_Forward_FullMethodName: true,
}

// NodeOnly reports whether the gRPC method (its full name) is
// node-internal: refused to a client certificate.
func NodeOnly(fullMethod string) bool { return nodeOnly[fullMethod] }

// ErrTLSMismatch wraps runtime.ErrUnavailable: a connection failed on TLS
// itself — one side speaks TLS and the other does not, or the node refused
// this side's certificate (or its lack of one). Nothing was sent. Every
// node of a cluster answers the same until one side's TLS settings or
// files change, so a client need not wait for another node to answer.
var ErrTLSMismatch = errors.New("transport: TLS settings do not match the node's")

// explain adds to a connection error what it probably means when TLS is
// involved: a plaintext client at a TLS port (or the reverse), or a
// certificate the node refused; such an error also matches
// ErrTLSMismatch.
func (p *Pool) explain(cause error) error {
	if cause == nil {
		return nil
	}
	msg := cause.Error()
	if x, mismatch := p.explainMsg(msg); mismatch {
		return &tlsMismatch{msg: x}
	}
	return cause
}

// tlsMismatch is a connection error explainMsg recognised.
type tlsMismatch struct{ msg string }

func (e *tlsMismatch) Error() string { return e.msg }
func (e *tlsMismatch) Unwrap() error { return ErrTLSMismatch }

// explainMsg is explain on a message, and whether it recognised a TLS
// mismatch. The matched texts are gRPC's and crypto/tls's; they only
// decorate the message.
func (p *Pool) explainMsg(msg string) (string, bool) {
	on := p.opts.TLS != nil
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(msg, x) {
				return true
			}
		}
		return false
	}
	switch {
	case !on && has("server preface", "error reading from server: EOF", "http2: frame too large"):
		return msg + " (is the node serving TLS? give the client the cluster's CA, and a client certificate and key: tls.ca, tls.cert, tls.key)", true
	case on && has("first record does not look like a TLS handshake"):
		return msg + " (the node does not serve TLS: turn TLS off on this side, or on in the node's tls section)", true
	case on && has("certificate required"):
		return msg + " (the node requires a client certificate: set tls.cert and tls.key)", true
	case on && has("remote error: tls: bad certificate", "remote error: tls: unknown certificate authority", "remote error: tls: expired certificate"):
		hint := "the node refused this side's certificate: is it signed by the cluster's CA, unexpired, with a node or client role?"
		if leaf := p.opts.TLSLeaf; leaf != nil {
			if l := leaf(); l != nil {
				hint += fmt.Sprintf(" (ours: %s, expires %s)", l.Subject.CommonName, l.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		return msg + " (" + hint + ")", true
	}
	return msg, false
}

// ServerTLS is the gRPC server option of cfg, for a caller that builds its
// own grpc.Server; nil for nil.
func ServerTLS(cfg *tls.Config) grpc.ServerOption {
	if cfg == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(credentials.NewTLS(cfg))
}

// verdictCreds waits, after a TLS handshake, for the server's first bytes
// (gRPC's server sends its settings at once). Under TLS 1.3 the client's
// handshake ends before the server has checked the client's certificate,
// so a refusal would otherwise surface as a broken pipe on the first
// write; reading first turns it into the server's alert ("bad
// certificate", "certificate required") as the connection's error. It
// costs the wait for the server's settings, once per connection.
type verdictCreds struct {
	credentials.TransportCredentials
}

// verdictWait bounds the wait for the server's first bytes; past it the
// connection is used as it is.
const verdictWait = 5 * time.Second

func (c verdictCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return conn, info, err
	}
	deadline := time.Now().Add(verdictWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	var b [1]byte
	n, rerr := conn.Read(b[:])
	_ = conn.SetReadDeadline(time.Time{})
	var ne net.Error
	if rerr != nil && !(errors.As(rerr, &ne) && ne.Timeout()) {
		_ = conn.Close()
		return nil, nil, rerr
	}
	return &peekedConn{Conn: conn, b: b[:n]}, info, nil
}

func (c verdictCreds) Clone() credentials.TransportCredentials {
	return verdictCreds{c.TransportCredentials.Clone()}
}

// peekedConn gives back the bytes read ahead before reading on.
type peekedConn struct {
	net.Conn
	b []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.b) > 0 {
		n := copy(p, c.b)
		c.b = c.b[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// peerSessions keys a shared TLS session cache by the address dialed:
// crypto/tls keys sessions by server name, which gRPC sets to the host
// without its port, so nodes that share a host (a local cluster, several
// nodes behind one address) would overwrite one another's sessions and a
// reconnect would resume only by luck.
type peerSessions struct {
	addr string
	c    tls.ClientSessionCache
}

func (p peerSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return p.c.Get(p.addr + "|" + key)
}

func (p peerSessions) Put(key string, cs *tls.ClientSessionState) {
	p.c.Put(p.addr+"|"+key, cs)
}
