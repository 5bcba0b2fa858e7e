package transport_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
)

func source(t *testing.T, o tlsconf.Options) *tlsconf.Source {
	t.Helper()
	s, err := tlsconf.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTLSRoles: over mutual TLS, a node certificate may forward Raft
// commands and call actors; a client certificate may call actors, and
// is refused the node-internal Forward with PermissionDenied.
func TestTLSRoles(t *testing.T) {
	checkLeaks(t)
	pki := tlstest.New(t, "loom")
	srvSrc := source(t, pki.NodeOptions("n1"))
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho(), Forward: newEcho(),
		TLS: srvSrc.ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient), CheckRoles: true})

	nodeCert, nodeKey := pki.Node("n2")
	clientCert, clientKey := pki.Client("app")
	for _, tc := range []struct {
		name       string
		cert, key  string
		forwardErr error
	}{
		{"node", nodeCert, nodeKey, nil},
		{"client", clientCert, clientKey, transport.ErrPermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := source(t, tlsconf.Options{CA: pki.CA, Cert: tc.cert, Key: tc.key, VerifyOutgoing: true})
			p := newPool(t, transport.PoolOptions{TLS: src.ClientConfig()})
			for name, invoke := range paths(p) {
				out, err := invoke(context.Background(), s.addr, transport.Call{ActorType: "t", ActorID: "a", Method: "m", Payload: []byte("hi")})
				if err != nil || string(out) != "hi" {
					t.Errorf("%s invoke = %q, %v", name, out, err)
				}
			}
			out, err := p.Forward(context.Background(), s.addr, 0, []byte("cmd"))
			switch {
			case tc.forwardErr == nil && (err != nil || string(out) != "ok0:cmd"):
				t.Errorf("forward = %q, %v", out, err)
			case tc.forwardErr != nil && !errors.Is(err, tc.forwardErr):
				t.Errorf("forward error = %v, want %v", err, tc.forwardErr)
			case tc.forwardErr != nil && !strings.Contains(err.Error(), `node-internal: it needs a node certificate, and the caller presented client certificate "app"`):
				t.Errorf("forward error = %v, want it to say why", err)
			}
		})
	}
}

// TestTLSMismatchIsExplained: a plaintext pool at a TLS port, a TLS pool
// at a plaintext port, and a pool whose certificate the server refuses
// get errors that say what to fix.
func TestTLSMismatchIsExplained(t *testing.T) {
	checkLeaks(t)
	pki := tlstest.New(t, "loom")
	other := tlstest.New(t, "other")
	tlsSrv := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho(),
		TLS: source(t, pki.NodeOptions("n1")).ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient), CheckRoles: true})
	plainSrv := serve(t, newEcho())
	foreignCert, foreignKey := other.Client("app")
	foreign := source(t, tlsconf.Options{CA: pki.CA, Cert: foreignCert, Key: foreignKey, VerifyOutgoing: true})
	// An expired client certificate (loaded while it was valid; with that
	// clock, the server is not checked).
	expCert, expKey := pki.Expired(tlsconf.RoleClient, "old")
	then := time.Now().Add(-90 * time.Minute)
	expired := source(t, tlsconf.Options{CA: pki.CA, Cert: expCert, Key: expKey, Now: func() time.Time { return then }})
	expiry := expired.Leaf().NotAfter.UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name string
		opts transport.PoolOptions
		addr string
		want string
	}{
		{"plaintext to TLS", transport.PoolOptions{}, tlsSrv.addr, "is the node serving TLS?"},
		{"TLS to plaintext", transport.PoolOptions{TLS: source(t, pki.NodeOptions("n2")).ClientConfig()}, plainSrv.addr, "the node does not serve TLS"},
		{"no client certificate", transport.PoolOptions{TLS: source(t, tlsconf.Options{CA: pki.CA, VerifyOutgoing: true}).ClientConfig()}, tlsSrv.addr, "the node requires a client certificate"},
		{"certificate of another CA", transport.PoolOptions{TLS: foreign.ClientConfig(), TLSLeaf: foreign.Leaf}, tlsSrv.addr, "the node refused this side's certificate"},
		{"expired certificate", transport.PoolOptions{TLS: expired.ClientConfig(), TLSLeaf: expired.Leaf}, tlsSrv.addr, "(ours: client.old, expires " + expiry + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, tc.opts)
			for name, invoke := range paths(p) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := invoke(ctx, tc.addr, transport.Call{ActorType: "t", ActorID: "a", Method: "m", Payload: []byte("hi")})
				cancel()
				if !errors.Is(err, runtime.ErrUnavailable) || !errors.Is(err, transport.ErrTLSMismatch) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v; want ErrUnavailable and ErrTLSMismatch saying %q", name, err, tc.want)
				}
			}
		})
	}
}
