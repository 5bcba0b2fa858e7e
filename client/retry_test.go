package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// lossy is a node's gRPC side whose first answer to each idempotency key
// is lost ("outcome unknown", as when the hop to the owner broke after
// the call ran), and which answers later calls with the same key as the
// actor would: from its record.
type lossy struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // key -> calls
	ages []time.Duration
	ran  int
}

func (l *lossy) Topology() *loompb.ClusterTopology {
	return &loompb.ClusterTopology{Version: 1, Members: []*loompb.Member{{NodeId: "n1", GrpcAddr: l.addr, State: "alive"}}}
}

func (l *lossy) Changed() <-chan struct{} { return make(chan struct{}) }

func (l *lossy) HandleInvoke(ctx context.Context, c transport.Call) ([]byte, error) {
	key := runtime.IdempotencyKey(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[key]++
	l.ages = append(l.ages, runtime.IdempotencyKeyAge(ctx))
	if l.seen[key] == 1 {
		l.ran++
		return nil, fmt.Errorf("%w: the answer was lost", transport.ErrUnknownOutcome)
	}
	return []byte(`"done"`), nil
}

func TestIdempotentRetriesResendWithTheSameKey(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lossy{addr: ln.Addr().String(), seen: map[string]int{}}
	srv := transport.NewServer(transport.ServerOptions{Actors: l, Topology: l})
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	plain, err := client.Dial(ctx, []string{l.addr}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Invoke(ctx, "t", "a", "m", nil); !errors.Is(err, transport.ErrUnknownOutcome) {
		t.Fatalf("without IdempotentRetries: %v, want the unknown outcome returned", err)
	}

	cl, err := client.Dial(ctx, []string{l.addr}, client.Options{IdempotentRetries: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 3 {
		out, err := cl.Invoke(ctx, "t", "a", "m", nil)
		if err != nil || string(out) != `"done"` {
			t.Fatalf("call %d: %s, %v", i, out, err)
		}
	}
	// The caller's own key is kept.
	if out, err := cl.Invoke(runtime.WithIdempotencyKey(ctx, "mine"), "t", "a", "m", nil); err != nil || string(out) != `"done"` {
		t.Fatalf("with the caller's key: %s, %v", out, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) != 5 || l.seen["mine"] != 2 {
		t.Errorf("keys seen: %v; want the plain client's empty key, 3 generated keys and the caller's, each sent twice", l.seen)
	}
	for k, n := range l.seen {
		if k != "" && (n != 2 || (k != "mine" && !strings.HasPrefix(k, "loom-client/"))) {
			t.Errorf("key %q sent %d times", k, n)
		}
	}
	if cl.Retries() != 4 {
		t.Errorf("Retries() = %d, want 4", cl.Retries())
	}
	for _, age := range l.ages {
		if age < 0 || age > 10*time.Second {
			t.Errorf("a key arrived %v old", age)
		}
	}
}

// full answers every call to actor "hot" as overloaded and counts them.
type full struct {
	lossy
	hot, other atomic.Int64
}

func (f *full) HandleInvoke(_ context.Context, c transport.Call) ([]byte, error) {
	if c.ActorID == "hot" {
		f.hot.Add(1)
		return nil, fmt.Errorf("%w: hot has 1000 calls waiting", runtime.ErrOverloaded)
	}
	f.other.Add(1)
	return []byte(`1`), nil
}

func TestOverloadedActorIsHeldOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &full{lossy: lossy{addr: ln.Addr().String()}}
	srv := transport.NewServer(transport.ServerOptions{Actors: f, Topology: f})
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const holdOff = 200 * time.Millisecond
	cl, err := client.Dial(ctx, []string{f.addr}, client.Options{OverloadHoldOff: holdOff})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	for i := range 50 {
		if _, err := cl.Invoke(ctx, "t", "hot", "m", nil); !errors.Is(err, runtime.ErrOverloaded) {
			t.Fatalf("call %d: %v, want ErrOverloaded", i, err)
		}
		if _, err := cl.Invoke(ctx, "t", "cold", "m", nil); err != nil {
			t.Fatalf("another actor: %v", err)
		}
	}
	within := time.Since(start) < holdOff
	if within && (f.hot.Load() != 1 || cl.HeldOff() != 49) {
		t.Errorf("within the hold-off: the node saw %d calls to hot, the client held %d off; want 1 and 49", f.hot.Load(), cl.HeldOff())
	}
	if f.other.Load() != 50 {
		t.Errorf("the other actor's calls reached the node %d times, want 50", f.other.Load())
	}
	// After the hold-off the next call goes to the node again.
	deadline := time.Now().Add(10 * time.Second)
	sent := f.hot.Load()
	for f.hot.Load() == sent && time.Now().Before(deadline) {
		_, _ = cl.Invoke(ctx, "t", "hot", "m", nil)
		time.Sleep(holdOff / 4)
	}
	if f.hot.Load() == sent {
		t.Error("no call reached the node after the hold-off")
	}
}
