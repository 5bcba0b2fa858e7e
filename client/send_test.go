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

	"google.golang.org/grpc/peer"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/faultnet"
	"github.com/loom-mesh/loom/transport/loompb"
)

// acceptor is a node's message side, as a store answers: an id is accepted
// once, a resend answers its first acceptance. It records every send.
type acceptor struct {
	node string
	mu   sync.Mutex
	sent []runtime.Envelope // every send, in order
	cids []string
	acc  map[string]queue.Accepted
	// accepted, when set, is called with the lock held after a first
	// acceptance, before the answer is sent.
	accepted func(ctx context.Context)
}

func (s *acceptor) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, e)
	s.cids = append(s.cids, runtime.CorrelationID(ctx))
	if a, ok := s.acc[e.MessageID]; ok {
		a.Duplicate = true
		return a, nil
	}
	a := queue.Accepted{ID: e.MessageID, Seq: uint64(len(s.acc) + 1), AcceptedAt: time.Now()}
	s.acc[e.MessageID] = a
	if s.accepted != nil {
		s.accepted(ctx)
	}
	return a, nil
}

// first is the first acceptance of id.
func (s *acceptor) first(id string) queue.Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acc[id]
}

func (s *acceptor) sends() ([]runtime.Envelope, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]runtime.Envelope(nil), s.sent...), append([]string(nil), s.cids...)
}

// fixedTopo is a fixed topology whose Changed can be fired, to make a
// server write on its watch streams.
type fixedTopo struct {
	mu      sync.Mutex
	m       []*loompb.Member
	changed chan struct{}
}

func newFixedTopo() *fixedTopo { return &fixedTopo{changed: make(chan struct{})} }

func (ms *fixedTopo) add(id, addr string) {
	ms.mu.Lock()
	ms.m = append(ms.m, &loompb.Member{NodeId: id, GrpcAddr: addr, State: "alive"})
	ms.mu.Unlock()
}

func (ms *fixedTopo) Topology() *loompb.ClusterTopology {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return &loompb.ClusterTopology{Version: 1, Members: ms.m}
}

func (ms *fixedTopo) Changed() <-chan struct{} {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.changed
}

func (ms *fixedTopo) fire() {
	ms.mu.Lock()
	close(ms.changed)
	ms.changed = make(chan struct{})
	ms.mu.Unlock()
}

// serveAcceptor serves st and ms on ln (a fresh loopback listener if nil).
func serveAcceptor(t *testing.T, ln net.Listener, st *acceptor, ms *fixedTopo) {
	t.Helper()
	srv := transport.NewServer(transport.ServerOptions{Messages: st, Topology: ms})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		<-done
	})
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestSendGoesToTheOwner: each message goes to the node the ring places
// its actor on, whole, with a message id the client made (a 32-hex one)
// or the caller's, and to another node when its owner cannot be reached.
func TestSendGoesToTheOwner(t *testing.T) {
	ms := newFixedTopo()
	stores := map[string]*acceptor{}
	for _, id := range []string{"n1", "n2"} {
		ln := listen(t)
		stores[id] = &acceptor{node: id, acc: map[string]queue.Accepted{}}
		ms.add(id, ln.Addr().String())
		serveAcceptor(t, ln, stores[id], ms)
	}
	// n3 is listed alive, but nothing listens at its address.
	dead := listen(t)
	ms.add("n3", dead.Addr().String())
	dead.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{ms.m[0].GrpcAddr}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	at := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	owners := map[string]string{}
	for i := range 24 {
		id := fmt.Sprintf("c%d", i)
		owner, ok := cl.Owner("counter", id)
		if !ok {
			t.Fatal("no owner")
		}
		owners[id] = owner
		var opts []runtime.SendOption
		if i%2 == 0 {
			opts = append(opts, runtime.WithMessageID("mine-"+id))
		}
		opts = append(opts, runtime.WithDeliverAt(at), runtime.WithHeaders(map[string]string{"i": id}))
		acc, err := builtin.CounterAdd.Send(runtime.WithCorrelationID(ctx, "cid-"+id), cl, id, builtin.CounterDelta{Delta: int64(i)}, opts...)
		if err != nil || acc.Duplicate || acc.ID == "" {
			t.Fatalf("%s: %+v, %v", id, acc, err)
		}
		if i%2 == 0 && acc.ID != "mine-"+id || i%2 == 1 && len(acc.ID) != 32 {
			t.Fatalf("%s: accepted as %q", id, acc.ID)
		}
	}
	seen := map[string]bool{}
	for node, st := range stores {
		sent, cids := st.sends()
		for i, e := range sent {
			id := e.ActorID
			if seen[id] {
				t.Errorf("%s sent twice", id)
			}
			seen[id] = true
			if owners[id] != node && owners[id] != "n3" {
				t.Errorf("%s went to %s, its owner is %s", id, node, owners[id])
			}
			if e.ActorType != "counter" || e.Method != "add" || e.Headers["i"] != id || !e.DeliverAt.Equal(at) || cids[i] != "cid-"+id {
				t.Errorf("%s arrived as %+v (correlation id %q)", id, e, cids[i])
			}
		}
	}
	if len(seen) != 24 {
		t.Fatalf("%d of 24 messages arrived", len(seen))
	}
	var onDead int
	for _, o := range owners {
		if o == "n3" {
			onDead++
		}
	}
	if onDead == 0 {
		t.Error("the ring placed no actor on the dead node: failover not exercised; use more actors")
	}
}

// TestSendAfterLostAnswerResendsTheSameID: the node accepts a message and
// its answer is lost on the way (faultnet blackholes the node's writes to
// the client, then the connection breaks): an unknown outcome on the only
// node there is. The client sends the message again, to that node once it
// reconnects, under the same id (its own or the caller's) and correlation
// id, and the store's first acceptance is the answer. A caller who gives
// up first gets the unknown outcome with the id to resend under.
func TestSendAfterLostAnswerResendsTheSameID(t *testing.T) {
	hook := faultnet.New("n1", "", 1)
	ms := newFixedTopo()
	// armed names the client connection whose next write from the node,
	// blackholed, is the lost answer (or later than it): once one was,
	// heal, and make the node write on the poisoned connection, which
	// closes it.
	ln := &watched{Listener: hook.Listener(listen(t), faultnet.GRPC), swallowed: func() {
		go func() {
			_ = hook.Set(faultnet.Faults{})
			ms.fire()
		}()
	}}
	armed := &ln.armed
	var onLoss atomic.Pointer[func()] // set: the next acceptance's answer is lost, then this runs
	st := &acceptor{node: "n1", acc: map[string]queue.Accepted{}, accepted: func(ctx context.Context) {
		p, ok := peer.FromContext(ctx)
		f := onLoss.Swap(nil)
		if !ok || f == nil {
			return
		}
		if err := hook.Set(faultnet.Faults{
			Peers: map[string][]string{"client": {"127.0.0.1"}},
			Rules: []faultnet.Rule{{Peer: "client", Dir: faultnet.Out, Channels: []faultnet.Channel{faultnet.GRPC}, Drop: true}},
		}); err != nil {
			t.Error(err)
		}
		remote := p.Addr.String()
		armed.Store(&remote)
		(*f)()
	}}
	ms.add("n1", ln.Addr().String())
	serveAcceptor(t, ln, st, ms)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{ln.Addr().String()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// send sends through cl, losing the first answer, and returns the
	// result with every send the node saw under the message's id.
	send := func(ctx context.Context, then func(), opts ...runtime.SendOption) (queue.Accepted, error, []runtime.Envelope, []string) {
		before, _ := st.sends()
		onLoss.Store(&then)
		acc, err := builtin.CounterAdd.Send(ctx, cl, "c1", builtin.CounterDelta{Delta: 1}, opts...)
		sent, cids := st.sends()
		return acc, err, sent[len(before):], cids[len(before):]
	}
	check := func(name string, sent []runtime.Envelope, cids []string, want string) string {
		t.Helper()
		if len(sent) == 0 {
			t.Fatalf("%s: nothing reached the node", name)
		}
		id := sent[0].MessageID
		if want != "" && id != want || want == "" && len(id) != 32 {
			t.Fatalf("%s: sent under id %q", name, id)
		}
		for i, e := range sent {
			if e.MessageID != id || cids[i] == "" || cids[i] != cids[0] {
				t.Errorf("%s: send %d under id %q, correlation id %q; the first was %q, %q", name, i, e.MessageID, cids[i], id, cids[0])
			}
		}
		return id
	}

	for _, own := range []string{"", "mine"} {
		retries := cl.Retries()
		var opts []runtime.SendOption
		if own != "" {
			opts = append(opts, runtime.WithMessageID(own))
		}
		acc, err, sent, cids := send(ctx, func() {}, opts...)
		id := check("id="+own, sent, cids, own)
		if err != nil || acc.ID != id || !acc.Duplicate || acc.Seq != st.first(id).Seq || len(sent) < 2 || cl.Retries() == retries {
			t.Fatalf("id=%q: %+v, %v after %d sends, %d retries; want the first acceptance of %q", own, acc, err, len(sent), cl.Retries()-retries, id)
		}
	}

	// The caller gives up while the answer is lost: the unknown outcome
	// comes back with the id the client made, and a resend under it is
	// the same message.
	gctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	acc, err, sent, cids := send(gctx, giveUp)
	id := check("given up", sent, cids, "")
	if !errors.Is(err, transport.ErrUnknownOutcome) || acc.ID != id || len(sent) != 1 {
		t.Fatalf("given up: %+v, %v after %d sends; want the unknown outcome and id %q", acc, err, len(sent), id)
	}
	acc, err = builtin.CounterAdd.Send(ctx, cl, "c1", builtin.CounterDelta{Delta: 1}, runtime.WithMessageID(acc.ID))
	if err != nil || acc.ID != id || !acc.Duplicate || acc.Seq != st.first(id).Seq {
		t.Fatalf("given up: the resend: %+v, %v", acc, err)
	}
}

// watched wraps the connections of a faultnet listener: once armed names
// a connection's peer address, the next write on it that started after,
// and so was blackholed (the drop rule is set before armed is), disarms
// it and calls swallowed.
type watched struct {
	net.Listener
	armed     atomic.Pointer[string]
	swallowed func()
}

func (w *watched) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, w: w}, nil
}

type watchedConn struct {
	net.Conn
	w *watched
}

func (c *watchedConn) Write(b []byte) (int, error) {
	a := c.w.armed.Load()
	n, err := c.Conn.Write(b)
	if a != nil && *a == c.RemoteAddr().String() && c.w.armed.CompareAndSwap(a, nil) {
		c.w.swallowed()
	}
	return n, err
}
