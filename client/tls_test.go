package client_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
)

// A client with the cluster's CA, a client certificate and a token calls
// the actors of a node that requires all three: the Dial of
// docs/security.md, step 6, whose token the nodes require from step 9.
func TestDialWithTLSAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	const secret = "orders-api-secret-0123456789"
	pki := tlstest.New(t, "loom") // loom-ca.pem
	pki.Client("orders-api")      // client-orders-api.pem, client-orders-api-key.pem
	c := nodetest.StartConfigured(t, 1, func(cfg *config.Config) {
		cert, key := pki.Node(cfg.Node.ID)
		cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key = pki.CA, cert, key
		cfg.TLS.VerifyIncoming, cfg.TLS.VerifyOutgoing = true, true
		cfg.Auth.Tokens = map[string]config.TokenConfig{"orders-api": {Secret: secret, Scopes: []string{"actors:call"}}}
	})
	addr := c.Nodes[0].GRPCAddr()
	t.Setenv("ORDERS_API_TOKEN", secret)
	t.Chdir(pki.Dir) // where the files the client names are
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cl, err := client.Dial(ctx, []string{addr}, client.Options{ // addr: a node's gRPC address, such as 10.0.0.5:7421
		TLS:   client.TLSOptions{CA: "loom-ca.pem", Cert: "client-orders-api.pem", Key: "client-orders-api-key.pem"},
		Token: os.Getenv("ORDERS_API_TOKEN"), // once the nodes require tokens (step 9)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if v, err := builtin.CounterAdd.Call(ctx, cl, "c1", builtin.CounterDelta{Delta: 1}); err != nil || v.Value != 1 {
		t.Fatalf("calling through the client: %+v, %v; want 1", v, err)
	}

	// Without the token, the node refuses the client at Dial.
	_, err = client.Dial(ctx, []string{addr}, client.Options{
		TLS: client.TLSOptions{CA: "loom-ca.pem", Cert: "client-orders-api.pem", Key: "client-orders-api-key.pem"},
	})
	if !errors.Is(err, transport.ErrUnauthenticated) {
		t.Fatalf("dialing without the token: %v; want unauthenticated", err)
	}
}
