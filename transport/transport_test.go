package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// echo answers with the payload, or with the error its method names.
type echo struct {
	mu      sync.Mutex
	lastCID string
	gate    chan struct{} // "block" waits on it
	entered chan struct{}
}

var errByMethod = map[string]error{
	"unknown_type":   fmt.Errorf("%w: %q", runtime.ErrUnknownType, "x"),
	"unknown_method": runtime.ErrUnknownMethod,
	"bad_payload":    runtime.ErrBadPayload,
	"too_large":      runtime.ErrPayloadTooLarge,
	"invalid":        runtime.ErrInvalidArgument,
	"invalid_id":     runtime.ErrInvalidID,
	"shutting_down":  runtime.ErrShuttingDown,
	"unavailable":    runtime.ErrUnavailable,
	"pool_full":      runtime.ErrPoolFull,
	"not_local":      runtime.ErrNotLocal,
	"panic":          runtime.ErrActorPanic,
	"fenced":         fmt.Errorf("commit: %w", journal.ErrFenced),
	"conflict":       journal.ErrConflict,
	"deadline":       context.DeadlineExceeded,
	"not_owner":      transport.ErrNotOwner,
}

var errMine = errors.New("my own error")

func (e *echo) HandleInvoke(ctx context.Context, c transport.Call) ([]byte, error) {
	e.mu.Lock()
	e.lastCID = runtime.CorrelationID(ctx)
	e.mu.Unlock()
	switch c.Method {
	case "block":
		e.entered <- struct{}{}
		select {
		case <-e.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "method_error":
		return nil, &runtime.MethodError{Actor: c.ActorType + "/" + c.ActorID, Method: c.Method, Err: errMine}
	case "wait_deadline":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err, ok := errByMethod[c.Method]; ok {
		return nil, err
	}
	return c.Payload, nil
}

func (e *echo) HandleForward(ctx context.Context, batch []byte) ([]byte, error) {
	if string(batch) == "fail" {
		return nil, errors.New("not the leader")
	}
	return append([]byte("ok:"), batch...), nil
}

type topo struct {
	mu      sync.Mutex
	t       *loompb.ClusterTopology
	changed chan struct{}
}

func (t *topo) Topology() *loompb.ClusterTopology {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.t
}

func (t *topo) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func (t *topo) set(nt *loompb.ClusterTopology) {
	t.mu.Lock()
	t.t = nt
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func serve(t testing.TB, e *echo, tp transport.TopologySource) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerOptions{Actors: e, Forward: e, Topology: tp})
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			srv.Stop(ctx)
			<-done
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func newEcho() *echo { return &echo{gate: make(chan struct{}), entered: make(chan struct{}, 16)} }

func newPool(t testing.TB) *transport.Pool {
	p := transport.NewPool(transport.PoolOptions{})
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestRoundTripBothPaths(t *testing.T) {
	e := newEcho()
	addr, _ := serve(t, e, nil)
	p := newPool(t)
	ctx := runtime.WithCorrelationID(context.Background(), "cid-7")
	for name, call := range map[string]func(context.Context, string, transport.Call) ([]byte, error){"stream": p.Invoke, "unary": p.InvokeUnary} {
		out, err := call(ctx, addr, transport.Call{ActorType: "t", ActorID: "1", Method: "echo", Payload: []byte(name)})
		if err != nil || string(out) != name {
			t.Fatalf("%s: %q, %v", name, out, err)
		}
		e.mu.Lock()
		cid := e.lastCID
		e.mu.Unlock()
		if cid != "cid-7" {
			t.Fatalf("%s: correlation id %q arrived", name, cid)
		}
	}
}

func TestManyConcurrentCallersGetTheirOwnResults(t *testing.T) {
	addr, _ := serve(t, newEcho(), nil)
	p := newPool(t)
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				want := fmt.Sprintf("%d-%d", g, i)
				out, err := p.Invoke(context.Background(), addr, transport.Call{Method: "echo", Payload: []byte(want)})
				if err != nil || string(out) != want {
					t.Errorf("got %q, %v; want %q", out, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestErrorsMapBackToSentinels(t *testing.T) {
	addr, _ := serve(t, newEcho(), nil)
	p := newPool(t)
	cases := map[string]error{}
	for m, e := range errByMethod {
		cases[m] = e
	}
	for method, want := range cases {
		for _, path := range []string{"stream", "unary"} {
			call := p.Invoke
			if path == "unary" {
				call = p.InvokeUnary
			}
			_, err := call(context.Background(), addr, transport.Call{Method: method})
			var sentinel error = want
			for {
				u := errors.Unwrap(sentinel)
				if u == nil {
					break
				}
				sentinel = u
			}
			if !errors.Is(err, sentinel) {
				t.Errorf("%s/%s: %v does not match %v", path, method, err, sentinel)
			}
		}
	}
	_, err := p.Invoke(context.Background(), addr, transport.Call{ActorType: "t", ActorID: "9", Method: "method_error"})
	var me *runtime.MethodError
	if !errors.As(err, &me) || err.Error() != "t/9.method_error: my own error" {
		t.Fatalf("method error = %v", err)
	}
}

func TestDeadlinePropagates(t *testing.T) {
	addr, _ := serve(t, newEcho(), nil)
	p := newPool(t)
	for _, call := range []func(context.Context, string, transport.Call) ([]byte, error){p.Invoke, p.InvokeUnary} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := call(ctx, addr, transport.Call{Method: "wait_deadline"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	}
}

func TestServerStoppedMidCall(t *testing.T) {
	e := newEcho()
	addr, stop := serve(t, e, nil)
	p := newPool(t)
	done := make(chan error, 1)
	go func() {
		_, err := p.Invoke(context.Background(), addr, transport.Call{Method: "block"})
		done <- err
	}()
	<-e.entered
	stop() // graceful for 100ms, then hard: the blocked call is cut
	if err := <-done; !errors.Is(err, transport.ErrUnknownOutcome) {
		t.Fatalf("in-flight call: %v, want ErrUnknownOutcome", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Invoke(ctx, addr, transport.Call{Method: "echo"})
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("call to a stopped server: %v, want ErrUnavailable", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v to fail", time.Since(start))
	}
}

func TestForwardAndTopology(t *testing.T) {
	tp := &topo{t: &loompb.ClusterTopology{Version: 1}, changed: make(chan struct{})}
	addr, _ := serve(t, newEcho(), tp)
	p := newPool(t)
	out, err := p.Forward(context.Background(), addr, []byte("cmd"))
	if err != nil || string(out) != "ok:cmd" {
		t.Fatalf("forward = %q, %v", out, err)
	}
	if _, err := p.Forward(context.Background(), addr, []byte("fail")); err == nil {
		t.Fatal("a failed forward must return an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := p.WatchTopology(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got.Version != 1 {
		t.Fatalf("first topology version %d", got.Version)
	}
	tp.set(&loompb.ClusterTopology{Version: 2, Members: []*loompb.Member{{NodeId: "n1"}}})
	if got := <-ch; got.Version != 2 || len(got.Members) != 1 {
		t.Fatalf("second topology %v", got)
	}
}

func TestClosedPool(t *testing.T) {
	addr, _ := serve(t, newEcho(), nil)
	p := transport.NewPool(transport.PoolOptions{})
	if _, err := p.Invoke(context.Background(), addr, transport.Call{Method: "echo"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Invoke(context.Background(), addr, transport.Call{Method: "echo"}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
