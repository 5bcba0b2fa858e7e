package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/transport"
)

func TestClientRoutesToOwnersAndFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := nodetest.Start(t, 3)
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, []string{c.Nodes[1].GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nodetest.WaitFor(t, 10*time.Second, "the client to learn 3 members", func() bool { return len(cl.Members()) == 3 })

	const actors = 12
	for round := 1; round <= 3; round++ {
		for i := 0; i < actors; i++ {
			v, err := builtin.CounterAdd.Call(ctx, cl, fmt.Sprintf("k%d", i), builtin.CounterDelta{Delta: 1})
			if err != nil || v.Value != int64(round) {
				t.Fatalf("round %d k%d = %d, %v", round, i, v.Value, err)
			}
		}
	}
	// Each actor is active on the node the client sent it to (one hop).
	byID := map[string]int{}
	for i, nd := range c.Nodes {
		byID[nd.ID()] = i
	}
	for i := 0; i < actors; i++ {
		owner, ok := cl.Owner("counter", fmt.Sprintf("k%d", i))
		if !ok {
			t.Fatal("no owner")
		}
		if c.Nodes[byID[owner]].Runtime().Active("counter") == 0 {
			t.Fatalf("k%d: owner %s has no activation", i, owner)
		}
	}

	// One node goes away: every actor answers again with its state.
	stopped := c.Nodes[2]
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	if err := stopped.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	for i := 0; i < actors; i++ {
		id := fmt.Sprintf("k%d", i)
		var v builtin.CounterValue
		nodetest.WaitFor(t, 3*nodetest.SessionTTL+10*time.Second, "k to answer after a node left", func() bool {
			var err error
			v, err = builtin.CounterGet.Call(ctx, cl, id)
			if err != nil && !errors.Is(err, runtime.ErrUnavailable) {
				t.Fatalf("%s: %v is not retryable", id, err)
			}
			return err == nil
		})
		if v.Value != 3 {
			t.Fatalf("%s = %d after failover, want 3", id, v.Value)
		}
	}
}

func TestDialNowhereFails(t *testing.T) {
	port := nodetest.FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := client.Dial(ctx, []string{fmt.Sprintf("127.0.0.1:%d", port)}, client.Options{})
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// TestDialRemembersErrorsOfEveryKind: the seeds fail in different ways
// (one refuses the client's missing token, one is not there), and Dial
// keeps the last failure of any kind for its error without panicking,
// then reports the refusal.
func TestDialRemembersErrorsOfEveryKind(t *testing.T) {
	tokens, err := auth.New([]auth.Token{{Name: "app", Secret: "app-secret-0123456789", Scopes: []auth.Scope{auth.ActorsCall}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerOptions{Tokens: tokens})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(context.Background()) })
	dead := fmt.Sprintf("127.0.0.1:%d", nodetest.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, seeds := range [][]string{{dead, ln.Addr().String()}, {ln.Addr().String(), dead}} {
		_, err := client.Dial(ctx, seeds, client.Options{})
		if !errors.Is(err, transport.ErrUnauthenticated) {
			t.Fatalf("Dial(%v) = %v, want the refusal", seeds, err)
		}
	}
}
