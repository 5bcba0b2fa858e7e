package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/loomtest"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// TestClientSendsDurableMessages: messages sent through the client are
// applied once each on a three-node cluster, a resend of an id answers
// its first acceptance, and messages sent after a node left are delivered
// by the survivors, with every counter's state intact.
func TestClientSendsDurableMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := loomtest.Start(t, loomtest.Options{})
	ctx := context.Background()
	cl := c.Client()

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
			c.WaitFor(fmt.Sprintf("%s to reach %d", id, want), func() error {
				v, err := builtin.CounterGet.Call(ctx, cl, id)
				if err == nil && v.Value != want {
					err = fmt.Errorf("%s = %d", id, v.Value)
				}
				return err
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

	c.Stop(2)
	c.WaitSettled() // the client too sees 2 members
	send(3)
	until(3)
}

// store is a message store shared by two fake nodes: it accepts an id
// once and answers a resend with the first acceptance, as queue.Store
// does. The first send it sees blocks until its node is cut off, as if
// the node accepted the message and died before answering.
type store struct {
	mu      sync.Mutex
	byID    map[string]queue.Accepted
	sends   []sent
	blocked chan int // receives the index of the node the first send blocked on
}

type sent struct {
	node int
	e    runtime.Envelope
	cid  string
}

func (s *store) send(ctx context.Context, node int, e runtime.Envelope) (queue.Accepted, error) {
	s.mu.Lock()
	s.sends = append(s.sends, sent{node, e, runtime.CorrelationID(ctx)})
	acc, dup := s.byID[e.MessageID]
	if dup {
		acc.Duplicate = true
	} else {
		acc = queue.Accepted{ID: e.MessageID, Seq: uint64(len(s.byID) + 1), AcceptedAt: time.Now()}
		s.byID[e.MessageID] = acc
	}
	first := len(s.sends) == 1
	s.mu.Unlock()
	if first {
		s.blocked <- node
		<-ctx.Done()
		return queue.Accepted{}, ctx.Err()
	}
	return acc, nil
}

// fakeNode serves one node's Messages and the two nodes' topology.
type fakeNode struct {
	i     int
	st    *store
	addrs []string
}

func (f *fakeNode) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	return f.st.send(ctx, f.i, e)
}

func (f *fakeNode) Topology() *loompb.ClusterTopology {
	t := &loompb.ClusterTopology{Version: 1}
	for i, a := range f.addrs {
		t.Members = append(t.Members, &loompb.Member{NodeId: fmt.Sprintf("n%d", i+1), GrpcAddr: a, State: "alive"})
	}
	return t
}

func (f *fakeNode) Changed() <-chan struct{} { return make(chan struct{}) }

// TestSendResendsUnderTheSameID: a send whose node accepted it and was cut
// off before answering (an unknown outcome, the request was written) is
// sent again, to the other node, under the same message id and
// correlation id, and answered with the first acceptance: the store
// accepted the message once. The client names the message itself when
// the caller did not, and keeps the caller's id when it did. No option is
// needed: resending a message is always safe.
func TestSendResendsUnderTheSameID(t *testing.T) {
	for _, callerID := range []string{"", "mine"} {
		t.Run("id="+callerID, func(t *testing.T) {
			st := &store{byID: map[string]queue.Accepted{}, blocked: make(chan int, 1)}
			var lns []net.Listener
			var addrs []string
			for range 2 {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				lns, addrs = append(lns, ln), append(addrs, ln.Addr().String())
			}
			var srvs []*transport.Server
			for i, ln := range lns {
				f := &fakeNode{i: i, st: st, addrs: addrs}
				srv := transport.NewServer(transport.ServerOptions{Messages: f, Topology: f})
				srvs = append(srvs, srv)
				go func() { _ = srv.Serve(ln) }()
			}
			t.Cleanup(func() {
				for _, srv := range srvs {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					srv.Stop(ctx)
					cancel()
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cl, err := client.Dial(ctx, addrs, client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			nodetest.WaitFor(t, 10*time.Second, "the client to learn 2 members", func() bool { return len(cl.Members()) == 2 })

			type result struct {
				acc queue.Accepted
				err error
			}
			res := make(chan result, 1)
			go func() {
				acc, err := builtin.CounterAdd.Send(ctx, cl, "c1", builtin.CounterDelta{Delta: 1}, runtime.WithMessageID(callerID))
				res <- result{acc, err}
			}()
			dead := <-st.blocked
			stopCtx, stop := context.WithCancel(context.Background())
			stop()
			srvs[dead].Stop(stopCtx) // hard: the accepted send's answer is lost
			r := <-res
			if r.err != nil || !r.acc.Duplicate {
				t.Fatalf("Send: %+v, %v; want the first acceptance, duplicate", r.acc, r.err)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if len(st.sends) != 2 || len(st.byID) != 1 {
				t.Fatalf("%d sends, %d messages accepted; want 2 sends of 1 message", len(st.sends), len(st.byID))
			}
			a, b := st.sends[0], st.sends[1]
			if a.node != dead || b.node == dead {
				t.Errorf("sent to node %d then %d; node %d was cut off", a.node, b.node, dead)
			}
			if a.e.MessageID == "" || a.e.MessageID != b.e.MessageID || (callerID != "" && a.e.MessageID != callerID) || r.acc.ID != a.e.MessageID {
				t.Errorf("message ids %q then %q, acceptance of %q; the caller gave %q", a.e.MessageID, b.e.MessageID, r.acc.ID, callerID)
			}
			if a.cid == "" || a.cid != b.cid {
				t.Errorf("correlation ids %q then %q", a.cid, b.cid)
			}
			if cl.Retries() != 1 {
				t.Errorf("Retries() = %d, want 1", cl.Retries())
			}
		})
	}
}

// Refusals come back as their sentinels and are not resent.
func TestSendRefusals(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &refuser{addr: ln.Addr().String()}
	srv := transport.NewServer(transport.ServerOptions{Messages: r, Topology: r})
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{r.addr}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, want := range []error{runtime.ErrUnknownType, runtime.ErrUnknownMethod, runtime.ErrPayloadTooLarge, runtime.ErrDeliverAtTooFar, runtime.ErrMessagingDisabled} {
		r.refuse.Store(&want)
		if _, err := cl.Send(ctx, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}); !errors.Is(err, want) {
			t.Errorf("refused with %v: got %v", want, err)
		}
	}
	if n := r.calls.Load(); n != 5 || cl.Retries() != 0 {
		t.Errorf("%d sends and %d retries for 5 refusals", n, cl.Retries())
	}
}

type refuser struct {
	addr   string
	refuse atomic.Pointer[error]
	calls  atomic.Int32
}

func (r *refuser) Send(context.Context, runtime.Envelope) (queue.Accepted, error) {
	r.calls.Add(1)
	return queue.Accepted{}, fmt.Errorf("no: %w", *r.refuse.Load())
}

func (r *refuser) Topology() *loompb.ClusterTopology {
	return &loompb.ClusterTopology{Version: 1, Members: []*loompb.Member{{NodeId: "n1", GrpcAddr: r.addr, State: "alive"}}}
}

func (r *refuser) Changed() <-chan struct{} { return make(chan struct{}) }
