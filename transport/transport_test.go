package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// checkLeaks fails the test if goroutines started during it are still
// running once its cleanups ran. Call it first, so its cleanup runs last.
func checkLeaks(t testing.TB) {
	t.Helper()
	before := goruntime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := goruntime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:goruntime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// echo is the test ActorHandler: it answers with the payload, or as the
// method says.
type echo struct {
	mu       sync.Mutex
	lastCID  string
	lastIdem string
	lastDL   bool
	lastTID  trace.TraceID
	calls    map[string]int // by payload
	gate     chan struct{}  // "block" waits on it (or ctx)
	entered  chan struct{}  // "block" and "wait" signal their start
	canceled chan error     // "wait" reports its ctx error
	failWith error          // "fail" returns it

	lastMsg      string // the delivered message's id, attempts and headers
	lastAttempts uint32
	lastExternal bool
	lastHeaders  map[string]string
}

func newEcho() *echo {
	return &echo{gate: make(chan struct{}), entered: make(chan struct{}, 64), canceled: make(chan error, 64), calls: map[string]int{}}
}

func (e *echo) HandleInvoke(ctx context.Context, c transport.Call) ([]byte, error) {
	_, hasDL := ctx.Deadline()
	e.mu.Lock()
	e.lastCID, e.lastIdem, e.lastDL = runtime.CorrelationID(ctx), runtime.IdempotencyKey(ctx), hasDL
	e.lastMsg, e.lastAttempts, e.lastHeaders = runtime.DeliveryID(ctx), runtime.DeliveryAttempts(ctx), runtime.MessageHeaders(ctx)
	e.lastExternal = runtime.DeliveryExternal(ctx)
	e.lastTID = trace.SpanContextFromContext(ctx).TraceID()
	e.calls[string(c.Payload)]++
	failWith := e.failWith
	e.mu.Unlock()
	switch c.Method {
	case "block":
		e.entered <- struct{}{}
		select {
		case <-e.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "wait": // until ctx ends
		e.entered <- struct{}{}
		<-ctx.Done()
		e.canceled <- ctx.Err()
		return nil, ctx.Err()
	case "fail":
		return nil, failWith
	case "big":
		return make([]byte, 1<<20), nil
	}
	return c.Payload, nil
}

func (e *echo) HandleForward(ctx context.Context, group int, batch []byte) ([]byte, error) {
	if string(batch) == "fenced" {
		return nil, fmt.Errorf("apply: %w", journal.ErrFenced)
	}
	return fmt.Appendf(nil, "ok%d:%s", group, batch), nil
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

type server struct {
	addr string
	srv  *transport.Server
	done chan struct{}
}

// stop stops the server, graceful for grace.
func (s *server) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.srv.Stop(ctx)
	<-s.done
}

func serveOn(t testing.TB, addr string, opts transport.ServerOptions) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), srv: transport.NewServer(opts), done: make(chan struct{})}
	go func() {
		if err := s.srv.Serve(ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(100 * time.Millisecond) })
	return s
}

func serve(t testing.TB, e *echo) *server {
	return serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: e, Forward: e})
}

func newPool(t testing.TB, opts transport.PoolOptions) *transport.Pool {
	p := transport.NewPool(opts)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type invokeFunc func(context.Context, string, transport.Call) ([]byte, error)

func paths(p *transport.Pool) map[string]invokeFunc {
	return map[string]invokeFunc{"stream": p.Invoke, "unary": p.InvokeUnary}
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestInvokeRoundTrip(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	for name, call := range paths(p) {
		ctx := runtime.WithIdempotencyKey(runtime.WithCorrelationID(context.Background(), "cid-"+name), "idem-"+name)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := call(ctx, s.addr, transport.Call{ActorType: "t", ActorID: "1", Method: "echo", Payload: []byte(name), Hops: 1})
		cancel()
		if err != nil || string(out) != name {
			t.Fatalf("%s: %q, %v", name, out, err)
		}
		e.mu.Lock()
		cid, idem, dl := e.lastCID, e.lastIdem, e.lastDL
		e.mu.Unlock()
		if cid != "cid-"+name || idem != "idem-"+name || !dl {
			t.Fatalf("%s: handler saw correlation id %q, idempotency key %q, deadline %v", name, cid, idem, dl)
		}
		// No deadline on the caller's side: none in the handler.
		if _, err := call(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		dl = e.lastDL
		e.mu.Unlock()
		if dl {
			t.Fatalf("%s: handler saw a deadline the caller did not set", name)
		}
	}
}

// TestDeliveryTravels: a call that delivers a durable message reaches the
// owner with the message's id, attempts, headers and whether it is kept
// in a broker (external) on every path, so the owner's turn acknowledges
// or records it; a plain call carries none.
func TestDeliveryTravels(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	for name, call := range paths(p) {
		for _, external := range []bool{false, true} {
			ctx := runtime.WithDelivery(context.Background(), "msg-"+name, 2, map[string]string{"k": name})
			if external {
				ctx = runtime.WithExternalDelivery(context.Background(), "msg-"+name, 2, map[string]string{"k": name})
			}
			if _, err := call(ctx, s.addr, transport.Call{ActorType: "t", ActorID: "1", Method: "echo", Payload: []byte(name)}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			e.mu.Lock()
			id, attempts, headers, ext := e.lastMsg, e.lastAttempts, e.lastHeaders, e.lastExternal
			e.mu.Unlock()
			if id != "msg-"+name || attempts != 2 || headers["k"] != name || ext != external {
				t.Fatalf("%s: handler saw message %q, attempts %d, headers %v, external %v (sent external %v)", name, id, attempts, headers, ext, external)
			}
		}
		if _, err := call(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		id := e.lastMsg
		e.mu.Unlock()
		if id != "" {
			t.Fatalf("%s: a plain call arrived as a delivery of %q", name, id)
		}
	}
}

func TestConcurrentCallersGetTheirOwnResults(t *testing.T) {
	checkLeaks(t)
	s := serve(t, newEcho())
	p := newPool(t, transport.PoolOptions{StreamsPerAddr: 3})
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				want := fmt.Sprintf("%d-%d", g, i)
				ctx := runtime.WithCorrelationID(context.Background(), want)
				out, err := p.Invoke(ctx, s.addr, transport.Call{Method: "echo", Payload: []byte(want)})
				if err != nil || string(out) != want {
					t.Errorf("got %q, %v; want %q", out, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestErrorTable sends every row of the error table through both paths:
// the caller gets an error matching the same sentinel, with the remote
// message, and MaybeApplied as the table says.
func TestErrorTable(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	for _, row := range transport.ErrorRows() {
		var sent error
		switch {
		case row.Err == nil: // method_error
			sent = &runtime.MethodError{Actor: "t/1", Method: "fail", Err: errors.New("insufficient funds")}
		case row.Code == "not_owner":
			sent = transport.NotOwner("node-b", "t/1")
		default:
			sent = fmt.Errorf("remote detail: %w", row.Err)
		}
		e.mu.Lock()
		e.failWith = sent
		e.mu.Unlock()
		for name, call := range paths(p) {
			_, err := call(context.Background(), s.addr, transport.Call{ActorType: "t", ActorID: "1", Method: "fail"})
			if err == nil {
				t.Fatalf("%s/%s: no error", row.Code, name)
			}
			if err.Error() != sent.Error() {
				t.Errorf("%s/%s: message %q, want the remote %q", row.Code, name, err, sent)
			}
			if row.Err != nil && !errors.Is(err, row.Err) {
				t.Errorf("%s/%s: %v does not match its sentinel", row.Code, name, err)
			}
			if row.Err == nil {
				var me *runtime.MethodError
				if !errors.As(err, &me) {
					t.Errorf("%s/%s: %T is not a *runtime.MethodError", row.Code, name, err)
				}
			}
			if got := transport.MaybeApplied(err); got != row.MaybeApplied {
				t.Errorf("%s/%s: MaybeApplied = %v, want %v", row.Code, name, got, row.MaybeApplied)
			}
			var re *transport.RemoteError
			if !errors.As(err, &re) || re.Code != row.Code {
				t.Errorf("%s/%s: remote code %+v", row.Code, name, re)
			}
			if row.Code == "not_owner" && transport.OwnerHint(err) != "node-b" {
				t.Errorf("%s/%s: owner hint %q", row.Code, name, transport.OwnerHint(err))
			}
		}
	}
	// An error the table does not know: "internal", maybe applied.
	e.mu.Lock()
	e.failWith = errors.New("disk on fire")
	e.mu.Unlock()
	for name, call := range paths(p) {
		_, err := call(context.Background(), s.addr, transport.Call{Method: "fail"})
		var re *transport.RemoteError
		if !errors.As(err, &re) || re.Code != "internal" || err.Error() != "disk on fire" || !transport.MaybeApplied(err) {
			t.Errorf("%s: unknown error came back as %v (%+v)", name, err, re)
		}
	}
}

func TestEncodeDecodeEveryRow(t *testing.T) {
	for _, row := range transport.ErrorRows() {
		var err error = &runtime.MethodError{Actor: "a/b", Method: "m", Err: errors.New("x")}
		if row.Err != nil {
			err = fmt.Errorf("ctx: %w", row.Err)
		}
		pe := transport.EncodeError(err)
		if pe.Code != row.Code || pe.MaybeApplied != row.MaybeApplied || pe.Message != err.Error() {
			t.Errorf("%s: encoded as %+v", row.Code, pe)
		}
		back := transport.DecodeError(pe)
		if row.Err != nil && !errors.Is(back, row.Err) {
			t.Errorf("%s: decoded %v does not match", row.Code, back)
		}
		if again := transport.EncodeError(back); again.Code != row.Code {
			t.Errorf("%s: re-encoded (forwarded again) as %s", row.Code, again.Code)
		}
	}
	if transport.EncodeError(nil) != nil || transport.DecodeError(nil) != nil {
		t.Fatal("nil must stay nil")
	}
}

func TestDeadlineExceeded(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	for name, call := range paths(p) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		_, err := call(ctx, s.addr, transport.Call{Method: "wait"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: %v, want DeadlineExceeded", name, err)
		}
		if !transport.MaybeApplied(err) {
			t.Fatalf("%s: a call that ran out of time after it was sent may have been applied", name)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: took %v", name, time.Since(start))
		}
		select {
		case herr := <-e.canceled: // the handler's context ended too
			if !errors.Is(herr, context.DeadlineExceeded) && !errors.Is(herr, context.Canceled) {
				t.Fatalf("%s: handler ctx ended with %v", name, herr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: handler's context did not end", name)
		}
	}
	// Already expired: not sent, not applied.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Invoke(ctx, s.addr, transport.Call{Method: "echo"})
	if !errors.Is(err, context.Canceled) || transport.MaybeApplied(err) {
		t.Fatalf("expired ctx: %v, maybe applied %v", err, transport.MaybeApplied(err))
	}
}

// A caller that stops waiting on a stream call gets its context's error
// at once, and the server cancels the call.
func TestCallerCancelReachesServer(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Invoke(ctx, s.addr, transport.Call{Method: "wait"})
		done <- err
	}()
	<-e.entered
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !errors.Is(err, transport.ErrUnknownOutcome) {
		t.Fatalf("err = %v, want Canceled and unknown outcome", err)
	}
	select {
	case herr := <-e.canceled:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler ctx: %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not cancel the call")
	}
}

func TestCorrelationIDAndTraceContext(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	prop := propagation.TraceContext{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: e, Propagator: prop})
	p := newPool(t, transport.PoolOptions{Propagator: prop})
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := runtime.WithCorrelationID(trace.ContextWithRemoteSpanContext(context.Background(), sc), "corr-1")
	for name, call := range paths(p) {
		if _, err := call(ctx, s.addr, transport.Call{Method: "echo"}); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		got, cid := e.lastTID, e.lastCID
		e.mu.Unlock()
		if got != tid || cid != "corr-1" {
			t.Fatalf("%s: handler saw trace %s, correlation id %q", name, got, cid)
		}
	}
}

func TestServerStoppedMidCall(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	for name, call := range paths(p) {
		// Warm the connection.
		if _, err := call(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
			t.Fatal(err)
		}
		_ = name
	}
	done := make(chan error, 2)
	for _, call := range paths(p) {
		go func() {
			_, err := call(context.Background(), s.addr, transport.Call{Method: "block"})
			done <- err
		}()
	}
	<-e.entered
	<-e.entered
	s.stop(50 * time.Millisecond) // graceful for 50ms, then cut: the blocked calls are in flight
	for range 2 {
		if err := <-done; !errors.Is(err, transport.ErrUnknownOutcome) || errors.Is(err, runtime.ErrUnavailable) || !transport.MaybeApplied(err) {
			t.Fatalf("in-flight call: %v, want ErrUnknownOutcome only", err)
		}
	}
	for name, call := range paths(p) {
		start := time.Now()
		_, err := call(context.Background(), s.addr, transport.Call{Method: "echo"})
		if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
			t.Fatalf("%s: new call to a stopped server: %v, want ErrUnavailable", name, err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("%s: took %v to fail", name, el)
		}
	}
}

func TestDeadAddressFailsFast(t *testing.T) {
	checkLeaks(t)
	p := newPool(t, transport.PoolOptions{})
	addr := deadAddr(t)
	calls := paths(p)
	calls["forward"] = func(ctx context.Context, addr string, _ transport.Call) ([]byte, error) {
		return p.Forward(ctx, addr, 0, []byte("x"))
	}
	for name, call := range calls {
		for range 3 { // the first dial and the ones in gRPC's backoff
			start := time.Now()
			_, err := call(context.Background(), addr, transport.Call{Method: "echo"})
			if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
				t.Fatalf("%s: %v, want ErrUnavailable (not applied)", name, err)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("%s: took %v to fail", name, el)
			}
		}
	}
}

// An address that accepts TCP but never speaks: calls fail after
// ConnectTimeout (or the caller's deadline), as never sent.
func TestSilentAddressIsBounded(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var accepted []net.Conn
	var mu sync.Mutex
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
	})
	p := newPool(t, transport.PoolOptions{ConnectTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = p.Invoke(context.Background(), ln.Addr().String(), transport.Call{Method: "echo"})
	if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
		t.Fatalf("stream: %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("stream: took %v", el)
	}
	// Unary: whichever ends first, the connect timeout or the caller's
	// deadline, the call was never sent.
	for _, timeout := range []time.Duration{200 * time.Millisecond, 10 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		_, err = p.InvokeUnary(ctx, ln.Addr().String(), transport.Call{Method: "echo"})
		cancel()
		if !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, runtime.ErrUnavailable)) || transport.MaybeApplied(err) {
			t.Fatalf("unary: %v, want not sent", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("unary: took %v", el)
		}
	}
}

// Server.Stop drains: calls running when it starts are answered, and Stop
// returns as soon as they are, long before its context ends.
func TestGracefulStopAnswersRunningCalls(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{StreamsPerAddr: 1})
	if _, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	done := make(chan error, n)
	for range n {
		go func() {
			out, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "block", Payload: []byte("x")})
			if err == nil && string(out) != "x" {
				err = fmt.Errorf("got %q", out)
			}
			done <- err
		}()
	}
	for range n {
		<-e.entered
	}
	stopped := make(chan struct{})
	start := time.Now()
	go func() { s.stop(30 * time.Second); close(stopped) }()
	time.Sleep(50 * time.Millisecond) // let the drain notice reach the client
	close(e.gate)
	for range n {
		if err := <-done; err != nil {
			t.Fatalf("call running during a graceful stop: %v", err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the calls were answered")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("graceful stop took %v", el)
	}
	_, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"})
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
}

// A node that comes back on the same address is called again, soon.
func TestReconnectAfterRestart(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := newPool(t, transport.PoolOptions{})
	if _, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
		t.Fatal(err)
	}
	s.stop(0)
	// A call racing with the client noticing the cut may have been written
	// to the dying connection (unknown outcome); after that, unavailable.
	_, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"})
	if !errors.Is(err, runtime.ErrUnavailable) && !errors.Is(err, transport.ErrUnknownOutcome) {
		t.Fatalf("while down: %v", err)
	}
	if _, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("while down: %v", err)
	}
	s2 := serveOn(t, s.addr, transport.ServerOptions{Actors: e})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := p.Invoke(context.Background(), s2.addr, transport.Call{Method: "echo"})
		if err == nil {
			break
		}
		if !errors.Is(err, runtime.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A stream that breaks before its queued calls were written: they go to a
// new stream and run exactly once.
func TestBrokenStreamRetriesUnsentCalls(t *testing.T) {
	checkLeaks(t)
	var broke atomic.Int32
	restore := transport.SetSendHooks(func(breakStream func(error)) {
		if broke.Add(1) <= 2 {
			breakStream(errors.New("injected: stream broke before send"))
		}
	}, nil)
	e := newEcho()
	s := serve(t, e)
	p := transport.NewPool(transport.PoolOptions{StreamsPerAddr: 1})
	defer func() { _ = p.Close(); restore() }()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprint(i)
			out, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo", Payload: []byte(want)})
			if err != nil || string(out) != want {
				t.Errorf("call %d: %q, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	if broke.Load() < 2 {
		t.Fatalf("the hook broke %d streams, want 2", broke.Load())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range 16 {
		if n := e.calls[fmt.Sprint(i)]; n != 1 {
			t.Errorf("call %d ran %d times", i, n)
		}
	}
}

// A stream that breaks after a call was written: ErrUnknownOutcome.
func TestBrokenStreamAfterSendIsUnknown(t *testing.T) {
	checkLeaks(t)
	var broke atomic.Int32
	restore := transport.SetSendHooks(nil, func(breakStream func(error)) {
		if broke.Add(1) == 1 {
			breakStream(errors.New("injected: connection lost"))
		}
	})
	s := serve(t, newEcho())
	p := transport.NewPool(transport.PoolOptions{StreamsPerAddr: 1})
	defer func() { _ = p.Close(); restore() }()
	// "block" answers only when its stream ends, so no answer can come
	// back before the stream breaks (an echo under load sometimes did).
	_, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "block"})
	if !errors.Is(err, transport.ErrUnknownOutcome) || errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if _, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
		t.Fatalf("next call, on a new stream: %v", err)
	}
}

func TestPayloadLimits(t *testing.T) {
	checkLeaks(t)
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho(), MaxMessageBytes: 1 << 20})
	p := newPool(t, transport.PoolOptions{MaxMessageBytes: 1 << 20})
	for name, call := range paths(p) {
		_, err := call(context.Background(), s.addr, transport.Call{Method: "echo", Payload: make([]byte, 900<<10)})
		if !errors.Is(err, runtime.ErrPayloadTooLarge) || transport.MaybeApplied(err) {
			t.Fatalf("%s: large payload: %v", name, err)
		}
		// A result too large to carry: the call ran, the stream survives.
		_, err = call(context.Background(), s.addr, transport.Call{Method: "big"})
		if err == nil || !transport.MaybeApplied(err) {
			t.Fatalf("%s: large result: %v", name, err)
		}
		if out, err := call(context.Background(), s.addr, transport.Call{Method: "echo", Payload: []byte("ok")}); err != nil || string(out) != "ok" {
			t.Fatalf("%s: after: %q, %v", name, out, err)
		}
	}
}

func TestForward(t *testing.T) {
	checkLeaks(t)
	s := serve(t, newEcho())
	p := newPool(t, transport.PoolOptions{})
	for _, group := range []int{0, 3} {
		out, err := p.Forward(context.Background(), s.addr, group, []byte("cmd"))
		if want := fmt.Sprintf("ok%d:cmd", group); err != nil || string(out) != want {
			t.Fatalf("forward to group %d = %q, %v; want %q", group, out, err, want)
		}
	}
	_, err := p.Forward(context.Background(), s.addr, 0, []byte("fenced"))
	if !errors.Is(err, journal.ErrFenced) || !strings.Contains(err.Error(), "apply:") {
		t.Fatalf("forward error = %v, want ErrFenced with the remote message", err)
	}
	noCoord := serveOn(t, "127.0.0.1:0", transport.ServerOptions{})
	if _, err := p.Forward(context.Background(), noCoord.addr, 0, nil); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("no coordinator: %v", err)
	}
	if _, err := p.Invoke(context.Background(), noCoord.addr, transport.Call{}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("no actors: %v", err)
	}
}

func TestTopologyWatch(t *testing.T) {
	checkLeaks(t)
	tp := &topo{t: &loompb.ClusterTopology{Version: 1}, changed: make(chan struct{})}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Topology: tp})
	p := newPool(t, transport.PoolOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := p.WatchTopology(ctx, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	next := func() *loompb.ClusterTopology {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			return got
		case <-time.After(5 * time.Second):
			t.Fatal("no topology")
		}
		return nil
	}
	if got := next(); got.Version != 1 {
		t.Fatalf("first topology version %d", got.Version)
	}
	tp.set(&loompb.ClusterTopology{Version: 2, Leader: "n1", Members: []*loompb.Member{{NodeId: "n1", GrpcAddr: "a:1", State: "alive"}}})
	if got := next(); got.Version != 2 || len(got.Members) != 1 || got.Members[0].GrpcAddr != "a:1" {
		t.Fatalf("second topology %v", got)
	}
	// Canceling ctx closes the channel.
	cancel()
	for range ch {
	}
	// Stopping the server ends a watch, too.
	ch2, err := p.WatchTopology(context.Background(), s.addr)
	if err != nil {
		t.Fatal(err)
	}
	<-ch2
	s.stop(5 * time.Second)
	for range ch2 {
	}
}

func TestPoolClose(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serve(t, e)
	p := transport.NewPool(transport.PoolOptions{})
	if _, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo"}); err != nil {
		t.Fatal(err)
	}
	tp := &topo{t: &loompb.ClusterTopology{Version: 1}, changed: make(chan struct{})}
	ts := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Topology: tp})
	watch, err := p.WatchTopology(context.Background(), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	<-watch
	inflight := make(chan error, 1)
	go func() {
		_, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "wait"})
		inflight <- err
	}()
	<-e.entered
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-inflight; !errors.Is(err, transport.ErrUnknownOutcome) {
		t.Fatalf("in flight at Close: %v", err)
	}
	for range watch { // closed by Close
	}
	for name, call := range paths(p) {
		if _, err := call(context.Background(), s.addr, transport.Call{Method: "echo"}); !errors.Is(err, transport.ErrClosed) || !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("%s after Close: %v", name, err)
		}
	}
	if _, err := p.WatchTopology(context.Background(), ts.addr); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("watch after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// MaxStreamCalls bounds the calls running at once on a stream; the rest
// wait (unsent from the handler's point of view) and run as slots free up.
func TestMaxStreamCalls(t *testing.T) {
	checkLeaks(t)
	e := newEcho()
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: e, MaxStreamCalls: 2})
	p := newPool(t, transport.PoolOptions{StreamsPerAddr: 1})
	done := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "block"})
			done <- err
		}()
	}
	<-e.entered
	<-e.entered
	select {
	case <-e.entered:
		t.Fatal("a third call ran on a stream limited to 2")
	case <-time.After(200 * time.Millisecond):
	}
	close(e.gate)
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
