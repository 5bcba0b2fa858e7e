package transport_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// remaining answers the time its context has left, in nanoseconds (-1
// without a deadline).
type remaining struct{ echo }

func (r *remaining) HandleInvoke(ctx context.Context, _ transport.Call) ([]byte, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return []byte("-1"), nil
	}
	return []byte(strconv.FormatInt(int64(time.Until(d)), 10)), nil
}

// A call on a stream carries the time its caller had left, and the node
// starts that much on its own clock when the call arrives: what it gets
// does not depend on the two nodes' wall clocks agreeing. The request
// below is what a caller whose wall clock runs an hour off sends: the
// same duration; an absolute deadline would have been an hour early or
// late here.
func TestStreamCallTimeoutIsADuration(t *testing.T) {
	checkLeaks(t)
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: &remaining{}})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := loompb.NewActorsClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 1500 * time.Millisecond
	sent := time.Now()
	if err := stream.Send(&loompb.InvokeBatch{Calls: []*loompb.InvokeRequest{
		{CallId: 1, ActorType: "t", ActorId: "a", Method: "m", TimeoutNanos: int64(timeout)},
		{CallId: 2, ActorType: "t", ActorId: "a", Method: "m"},
	}}); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]time.Duration{}
	for len(got) < 2 {
		rb, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rb.Results {
			ns, err := strconv.ParseInt(string(r.Payload), 10, 64)
			if err != nil {
				t.Fatalf("call %d: %q (%v)", r.CallId, r.Payload, r.Error)
			}
			got[r.CallId] = time.Duration(ns)
		}
	}
	if rtt := time.Since(sent); got[1] > timeout || got[1] < timeout-rtt {
		t.Errorf("a call sent with %v left had %v on the node (round trip %v)", timeout, got[1], rtt)
	}
	if got[2] != -1 {
		t.Errorf("a call sent without a timeout had a deadline on the node (%v left)", got[2])
	}
	_ = stream.CloseSend()
}

// Through the pool: a call with 2 s left has at most 2 s, and close to it,
// on the node, on either path.
func TestPoolSendsTimeLeft(t *testing.T) {
	checkLeaks(t)
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: &remaining{}})
	p := newPool(t, transport.PoolOptions{})
	for name, call := range paths(p) {
		const timeout = 2 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		out, err := call(ctx, s.addr, transport.Call{ActorType: "t", ActorID: "a", Method: "m"})
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ns, _ := strconv.ParseInt(string(out), 10, 64)
		if left := time.Duration(ns); left > timeout || left < timeout-took {
			t.Errorf("%s: a call with %v left had %v on the node (call took %v)", name, timeout, left, took)
		}
	}
}
