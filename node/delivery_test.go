package node_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

// Probe is the "probe" actor type: its note method records in its state
// the delivery each turn runs under, and fails while probeRefuses is set.
var Probe = runtime.NewType("probe", func(string) *struct{} { return &struct{}{} })

var probeRefuses atomic.Bool

// ProbeTurn is a turn of probe.note that committed.
type ProbeTurn struct {
	Msg      string            `json:"msg"`
	Attempts uint32            `json:"attempts"`
	Headers  map[string]string `json:"headers"`
}

var _ = runtime.AddMethod(Probe, "note", func(ctx runtime.Context, _ *struct{}, _ struct{}) (struct{}, error) {
	if probeRefuses.Load() {
		return struct{}{}, errors.New("probe: refusing for now")
	}
	turns, _, err := runtime.GetState[[]ProbeTurn](ctx.State(), "turns")
	if err != nil {
		return struct{}{}, err
	}
	turns = append(turns, ProbeTurn{runtime.DeliveryID(ctx), runtime.DeliveryAttempts(ctx), runtime.MessageHeaders(ctx)})
	return struct{}{}, runtime.SetState(ctx.State(), "turns", turns)
})

// ProbeTurns returns the turns of note that committed.
var ProbeTurns = runtime.AddMethod0(Probe, "turns", func(ctx runtime.Context, _ *struct{}) ([]ProbeTurn, error) {
	turns, _, err := runtime.GetState[[]ProbeTurn](ctx.State(), "turns")
	return turns, err
})

// A delivery made through a node that does not hold the actor is
// forwarded to the holder as a delivery, not as a plain call: the
// holder's turn sees the message's id, attempts and headers and
// acknowledges the message in its journal append, so the message leaves
// its queue and a second delivery of it is refused (ErrMessageSettled,
// across the wire) and applies nothing.
//
// The message is first delivered by the dispatcher of its owner, where
// the handler fails; the retry waits an hour, so that the test's own
// deliveries, the dispatcher's way (runtime.WithDelivery, then Invoke),
// are the only ones.
func TestForwardedDeliveryIsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) {
		cfg.Messaging.Default.MaxRetries = 10
		cfg.Messaging.Default.InitialBackoff = time.Hour
		cfg.Messaging.Default.MaxBackoff = time.Hour
		cfg.Messaging.Default.Jitter = 0
	}, Probe)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	probeRefuses.Store(true)
	defer probeRefuses.Store(false)

	const id = "p1"
	actor := "probe/" + id
	acc, err := c.Nodes[0].Send(ctx, runtime.Envelope{ActorType: "probe", ActorID: id, Method: "note", Payload: []byte(`{}`), Headers: map[string]string{"origin": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	// The owner's dispatcher delivers it once, the handler fails, and the
	// retry is an hour away.
	var holder *node.Node
	nodetest.WaitFor(t, 20*time.Second, "the first delivery to fail", func() bool {
		due, err := c.Nodes[0].MessageStore().Due(ctx, actor, time.Now().Add(2*time.Hour), 10)
		if err != nil || len(due) != 1 || due[0].Attempts != 1 {
			return false
		}
		for _, nd := range c.Nodes {
			if nd.Runtime().Hosts("probe", id) {
				holder = nd
			}
		}
		return holder != nil
	})
	var via *node.Node
	for _, nd := range c.Nodes {
		if nd != holder {
			via = nd
			break
		}
	}
	probeRefuses.Store(false)

	deliver := func() error {
		dctx := runtime.WithDelivery(ctx, acc.ID, 1, map[string]string{"origin": "test"})
		_, err := via.Runtime().Invoke(dctx, "probe", id, "note", []byte(`{}`))
		return err
	}
	if err := deliver(); err != nil {
		t.Fatalf("delivery through %s to %s's holder %s: %v", via.ID(), actor, holder.ID(), err)
	}
	if via.Runtime().Hosts("probe", id) {
		t.Fatalf("%s ran the turn itself; the test needs it forwarded", via.ID())
	}
	turns, err := ProbeTurns.Call(ctx, via, id)
	if err != nil || len(turns) != 1 || turns[0].Msg != acc.ID || turns[0].Attempts != 1 || turns[0].Headers["origin"] != "test" {
		t.Fatalf("turns %+v, %v; want one delivering %s, attempts 1, origin header", turns, err, acc.ID)
	}
	// Each node reads its own replica of the queues, which may trail the
	// commit by a moment.
	for _, nd := range c.Nodes {
		nodetest.WaitFor(t, 10*time.Second, nd.ID()+" to see the message acknowledged", func() bool {
			due, err := nd.MessageStore().Due(ctx, actor, time.Now().Add(2*time.Hour), 10)
			return err == nil && len(due) == 0
		})
	}

	err = deliver()
	if !errors.Is(err, runtime.ErrMessageSettled) {
		t.Fatalf("second delivery: %v, want ErrMessageSettled", err)
	}
	if turns, err := ProbeTurns.Call(ctx, via, id); err != nil || len(turns) != 1 {
		t.Fatalf("turns %+v, %v; want the message applied once", turns, err)
	}
}
