package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

// TestClientSendsDurableMessages: messages sent through the client are
// applied once each on a three-node cluster, a resend of an id answers
// its first acceptance, and messages sent after a node left are delivered
// by the survivors, with every counter's state intact.
func TestClientSendsDurableMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := nodetest.Start(t, 3)
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, []string{c.Nodes[0].GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nodetest.WaitFor(t, 10*time.Second, "the client to learn 3 members", func() bool { return len(cl.Members()) == 3 })

	const actors = 6
	send := func(round int) {
		for i := range actors {
			id := fmt.Sprintf("m%d", i)
			acc, err := builtin.CounterAdd.Send(ctx, cl, id, builtin.CounterDelta{Delta: 1}, runtime.WithMessageID(fmt.Sprintf("r%d-%s", round, id)))
			if err != nil || acc.Duplicate {
				t.Fatalf("round %d %s: %+v, %v", round, id, acc, err)
			}
		}
	}
	until := func(want int64) {
		for i := range actors {
			id := fmt.Sprintf("m%d", i)
			nodetest.WaitFor(t, 3*nodetest.SessionTTL+15*time.Second, fmt.Sprintf("%s to reach %d", id, want), func() bool {
				v, err := builtin.CounterGet.Call(ctx, cl, id)
				return err == nil && v.Value == want
			})
		}
	}
	send(1)
	send(2)
	acc, err := builtin.CounterAdd.Send(ctx, cl, "m0", builtin.CounterDelta{Delta: 100}, runtime.WithMessageID("r1-m0"))
	if err != nil || !acc.Duplicate {
		t.Fatalf("resend of r1-m0: %+v, %v; want the first acceptance", acc, err)
	}
	until(2)

	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	if err := c.Nodes[2].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	nodetest.WaitFor(t, 10*time.Second, "the client to see 2 members", func() bool { return len(cl.Members()) == 2 })
	send(3)
	until(3)
}
