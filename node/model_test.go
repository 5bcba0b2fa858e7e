package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

// Hop is bouncer.hit's argument: the actors to call next, in order.
type Hop struct {
	Next []runtime.Ref `json:"next"`
}

// HopResult is what the last actor of a hop chain saw.
type HopResult struct {
	Chain       []string `json:"chain"`
	Correlation string   `json:"correlation"`
}

// Bouncer's hit calls the first actor of its argument's list with the
// rest: a chain of actor-to-actor calls, across nodes.
var (
	Bouncer = runtime.NewType("bouncer", func(string) *struct{} { return &struct{}{} })
	Hit     runtime.Method[Hop, HopResult]
)

func init() {
	Hit = runtime.AddMethod(Bouncer, "hit", func(ctx runtime.Context, _ *struct{}, in Hop) (HopResult, error) {
		if len(in.Next) == 0 {
			return HopResult{Chain: runtime.CallChain(ctx), Correlation: ctx.CorrelationID()}, nil
		}
		return Hit.CallRef(ctx, ctx.Actors(), in.Next[0], Hop{Next: in.Next[1:]})
	})
}

func TestActorCallsAcrossNodesAndCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := nodetest.Start(t, 3, Bouncer)
	ids := []string{"n1", "n2", "n3"}
	nodetest.WaitFor(t, 20*time.Second, "a ring of 3", func() bool {
		return len(c.Nodes[0].Info().Ring.Members) == 3 && len(c.Nodes[2].Info().Ring.Members) == 3
	})
	b1 := runtime.Ref{Type: "bouncer", ID: keyOwnedBy(t, ids, "bouncer", "b", "n1")}
	b2 := runtime.Ref{Type: "bouncer", ID: keyOwnedBy(t, ids, "bouncer", "b", "n2")}
	b3 := runtime.Ref{Type: "bouncer", ID: keyOwnedBy(t, ids, "bouncer", "b", "n3")}

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	cl, err := client.Dial(dctx, []string{c.Nodes[2].GRPCAddr()}, client.Options{})
	dcancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// n1 → n2 → n3, called through a node and through the cluster client:
	// the last actor sees the whole chain and the caller's correlation id.
	for _, via := range []struct {
		name string
		inv  runtime.Invoker
	}{{"node", c.Nodes[2]}, {"client", cl}} {
		ctx, cancel := context.WithTimeout(runtime.WithCorrelationID(context.Background(), "corr-"+via.name), 20*time.Second)
		res, err := Hit.CallRef(ctx, via.inv, b1, Hop{Next: []runtime.Ref{b2, b3}})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", via.name, err)
		}
		want := []string{b1.String(), b2.String(), b3.String()}
		if !slices.Equal(res.Chain, want) || res.Correlation != "corr-"+via.name {
			t.Errorf("%s: the last actor saw chain %v and correlation %q; want %v and corr-%s", via.name, res.Chain, res.Correlation, want, via.name)
		}
	}
	for i, id := range []runtime.Ref{b1, b2, b3} {
		if !c.Nodes[i].Runtime().IsActive("bouncer", id.ID) {
			t.Errorf("%s is not active on its owner n%d", id, i+1)
		}
	}

	// b1 (n1) → b2 (n2) → b1: refused at once, over the client (gRPC) and
	// HTTP alike, naming the cycle.
	cycle := b1.String() + " → " + b2.String() + " → " + b1.String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Hit.CallRef(ctx, cl, b1, Hop{Next: []runtime.Ref{b2, b1}})
	if !errors.Is(err, runtime.ErrCallCycle) || !strings.Contains(err.Error(), cycle) {
		t.Errorf("client: %v; want ErrCallCycle naming %s", err, cycle)
	}
	body, _ := json.Marshal(Hop{Next: []runtime.Ref{b2, b1}})
	resp, err := http.Post("http://"+c.Nodes[2].HTTPAddr()+"/v1/actors/bouncer/"+b1.ID+"/hit", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var eb gateway.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || eb.Error.Code != "call_cycle" || !strings.Contains(eb.Error.Message, cycle) {
		t.Errorf("HTTP: %d %+v; want 409 call_cycle naming %s", resp.StatusCode, eb.Error, cycle)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the cycles took %v to fail", took)
	}
}
