package transport_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
)

// TestTokens: a server that checks bearer tokens serves a node
// certificate without one, a client only with a token of the right
// scope, on every path (unary, stream, send); no token opens the
// node-internal Forward.
func TestTokens(t *testing.T) {
	checkLeaks(t)
	pki := tlstest.New(t, "loom")
	tokens, err := auth.New([]auth.Token{
		{Name: "app", Secret: "app-secret-0123456789", Scopes: []auth.Scope{auth.ActorsCall}},
		{Name: "orders", Secret: "orders-secret-0123456789", Scopes: []auth.Scope{auth.CallScope("order")}},
		{Name: "ops", Secret: "ops-secret-0123456789", Scopes: []auth.Scope{auth.Admin, auth.Metrics}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho(), Forward: newEcho(), Messages: mb,
		TLS: source(t, pki.NodeOptions("n1")).ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient), CheckRoles: true, Tokens: tokens})

	nodeCert, nodeKey := pki.Node("n2")
	clientCert, clientKey := pki.Client("app")
	for _, tc := range []struct {
		name          string
		cert, key     string
		token         string
		actorType     string
		want, forward error
		why           string
	}{
		{"node without a token", nodeCert, nodeKey, "", "counter", nil, nil, ""},
		{"client without a token", clientCert, clientKey, "", "counter", transport.ErrUnauthenticated, transport.ErrPermissionDenied, "no token"},
		{"client with an unknown token", clientCert, clientKey, "not-a-token-0123456789", "counter", transport.ErrUnauthenticated, transport.ErrPermissionDenied, "the token is not valid here"},
		{"client with a token", clientCert, clientKey, "app-secret-0123456789", "counter", nil, transport.ErrPermissionDenied, ""},
		{"token for the type", clientCert, clientKey, "orders-secret-0123456789", "order", nil, transport.ErrPermissionDenied, ""},
		{"token for another type", clientCert, clientKey, "orders-secret-0123456789", "counter", transport.ErrPermissionDenied, transport.ErrPermissionDenied,
			`token "orders" lacks the scope actors:call:counter (or actors:call) (it has actors:call:order)`},
		{"token without actors:call", clientCert, clientKey, "ops-secret-0123456789", "counter", transport.ErrPermissionDenied, transport.ErrPermissionDenied,
			`token "ops" lacks the scope actors:call:counter`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := source(t, tlsconf.Options{CA: pki.CA, Cert: tc.cert, Key: tc.key, VerifyOutgoing: true})
			for _, unary := range []bool{false, true} {
				p := newPool(t, transport.PoolOptions{TLS: src.ClientConfig(), Token: tc.token, Unary: unary})
				for name, invoke := range paths(p) {
					out, err := invoke(context.Background(), s.addr, transport.Call{ActorType: tc.actorType, ActorID: "a", Method: "m", Payload: []byte("hi")})
					check(t, name, err, tc.want, tc.why)
					if tc.want == nil && string(out) != "hi" {
						t.Errorf("%s: %q", name, out)
					}
				}
				_, err := p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: tc.actorType, ActorID: "a", Method: "m", Payload: []byte("hi")})
				check(t, map[bool]string{true: "unary send", false: "stream send"}[unary], err, tc.want, tc.why)
				_, err = p.Forward(context.Background(), s.addr, 0, []byte("cmd"))
				check(t, "forward", err, tc.forward, "")
			}
		})
	}
}

func check(t *testing.T, what string, err, want error, why string) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: %v, want %v", what, err, want)
	case want != nil && transport.MaybeApplied(err):
		t.Errorf("%s: %v may have been applied; a refusal is not", what, err)
	case want != nil && !strings.Contains(err.Error(), why):
		t.Errorf("%s: %v, want it to say %q", what, err, why)
	}
	if err != nil && strings.Contains(err.Error(), "secret-0123456789") {
		t.Errorf("%s: the error repeats a token: %v", what, err)
	}
}

// TestTokenNeedsTLS: a pool never sends a token in the clear.
func TestTokenNeedsTLS(t *testing.T) {
	checkLeaks(t)
	s := serve(t, newEcho())
	p := newPool(t, transport.PoolOptions{Token: "app-secret-0123456789"})
	_, err := p.Invoke(context.Background(), s.addr, transport.Call{ActorType: "t", ActorID: "a", Method: "m"})
	if err == nil || !strings.Contains(err.Error(), "transport level security") {
		t.Fatalf("a token over plaintext: %v", err)
	}
}
