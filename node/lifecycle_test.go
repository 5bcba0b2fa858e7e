package node_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

// signalOn is a slog handler that closes seen when a record's message
// contains msg.
type signalOn struct {
	msg  string
	once *sync.Once
	seen chan struct{}
}

func (h signalOn) Enabled(context.Context, slog.Level) bool { return true }
func (h signalOn) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
func (h signalOn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalOn) WithGroup(string) slog.Handler      { return h }

// Shutdown, called while Start waits for a Raft leader that cannot come
// (one node of a cluster that expects three), ends the wait at once: Start
// fails with ErrShutDown, everything it opened is closed (a node on the
// same data dir starts afterwards), and Shutdown returns.
func TestShutdownWhileStarting(t *testing.T) {
	dir := t.TempDir()
	cfg := nodetest.Config(dir, "n1", nodetest.FreePort(t), "", 3)
	waiting := signalOn{msg: "waiting for a Raft leader", once: &sync.Once{}, seen: make(chan struct{})}
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(waiting)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- n.Start(context.Background()) }()
	select {
	case <-waiting.seen:
	case err := <-started:
		t.Fatalf("Start returned %v without a leader", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Start never reached the wait for a Raft leader")
	}
	// Runtime and Invoke are safe to call meanwhile.
	if n.Runtime() != nil {
		t.Fatal("a runtime before Start finished")
	}
	if _, err := n.Invoke(context.Background(), "counter", "c", "get", nil); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("Invoke while starting: %v, want ErrUnavailable", err)
	}
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- n.Shutdown(ctx)
	}()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown while starting: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown is stuck behind a Start that waits for a Raft leader")
	}
	if err := <-started; !errors.Is(err, node.ErrShutDown) {
		t.Fatalf("Start ended by Shutdown returned %v, want ErrShutDown", err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, node.ErrShutDown) {
		t.Fatalf("Start after Shutdown: %v, want ErrShutDown", err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("a second Shutdown: %v", err)
	}
	// Nothing is left holding the data dir or the ports.
	cfg.Cluster.BootstrapExpect = 1
	again, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: nodetest.Logger("n1")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := again.Start(ctx); err != nil {
		t.Fatalf("a node on the same data dir and ports: %v", err)
	}
	_ = again.Shutdown(ctx)
}

// Start, Shutdown, Runtime and Invoke may be called from any goroutine at
// any time (run with -race).
func TestLifecycleCallsFromManyGoroutines(t *testing.T) {
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = n.Runtime()
				_, err := builtin.CounterAdd.Call(ctx, n, "c", builtin.CounterDelta{Delta: 1})
				if err != nil && !errors.Is(err, runtime.ErrUnavailable) && !errors.Is(err, runtime.ErrShuttingDown) {
					t.Errorf("a call during start or shutdown: %v", err)
				}
			}
		})
	}
	starts := make(chan error, 2)
	for range 2 {
		go func() { starts <- n.Start(ctx) }()
	}
	first, second := <-starts, <-starts
	if (first == nil) == (second == nil) || !(errors.Is(first, node.ErrAlreadyStarted) || errors.Is(second, node.ErrAlreadyStarted)) {
		t.Fatalf("two concurrent Starts returned %v and %v, want one nil and one ErrAlreadyStarted", first, second)
	}
	var stops sync.WaitGroup
	for range 2 {
		stops.Go(func() {
			if err := n.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
	stops.Wait()
	close(stop)
	wg.Wait()
}
