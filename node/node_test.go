package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

func startNode(t *testing.T, dataDir string) *node.Node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.DataDir = dataDir
	cfg.Node.HTTPPort = 0
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n
}

func TestRestartKeepsStateAndRaisesTokens(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := startNode(t, dir)
	for i := 0; i < 3; i++ {
		if _, err := builtin.CounterAdd.Call(ctx, n, "c", builtin.CounterDelta{Delta: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := builtin.CounterGet.Call(ctx, n, "c"); !errors.Is(err, runtime.ErrShuttingDown) {
		t.Fatalf("call after Shutdown: %v, want ErrShuttingDown", err)
	}

	n2 := startNode(t, dir)
	v, err := builtin.CounterAdd.Call(ctx, n2, "c", builtin.CounterDelta{Delta: 1})
	if err != nil || v.Value != 7 {
		t.Fatalf("after restart = %+v, %v; want 7", v, err)
	}
	if err := n2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The second run wrote under a higher token than the first.
	j, err := journal.OpenFile(filepath.Join(dir, "journal.db"), journal.DefaultFileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	es, err := j.Read(ctx, "counter/c", 1)
	if err != nil || len(es) != 4 {
		t.Fatalf("journal: %d entries, %v", len(es), err)
	}
	if !(es[3].Token > es[2].Token) {
		t.Fatalf("token after restart %d not above %d", es[3].Token, es[2].Token)
	}
}

func TestHTTPAndHealth(t *testing.T) {
	n := startNode(t, t.TempDir())
	resp, err := http.Get("http://" + n.HTTPAddr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"healthy"`) {
		t.Fatalf("/health = %d %s", resp.StatusCode, b)
	}
	resp, err = http.Post("http://"+n.HTTPAddr()+"/v1/actors/counter/h/add", "application/json", strings.NewReader(`{"delta":4}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"value":4}` {
		t.Fatalf("add = %d %s", resp.StatusCode, b)
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	cfg := config.Default()
	cfg.Node.HTTPPort = -5
	cfg.Coordination.RenewInterval = cfg.Coordination.SessionTTL
	_, err := node.New(node.Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "node.httpPort") || !strings.Contains(err.Error(), "coordination.renewInterval") {
		t.Fatalf("err = %v", err)
	}
}

func TestReentrantFlagNeedsARegisteredType(t *testing.T) {
	cfg := config.Default()
	cfg.ActorPools.Types = map[string]config.PoolOverride{"countr": {Reentrant: new(true)}}
	_, err := node.New(node.Options{Config: cfg, Builtins: true})
	if err == nil || !strings.Contains(err.Error(), `actorPools.types.countr.reentrant: no actor type "countr" is registered (registered: counter, kv, register)`) {
		t.Fatalf("err = %v", err)
	}
	cfg.ActorPools.Types = map[string]config.PoolOverride{"counter": {Reentrant: new(true)}}
	if _, err := node.New(node.Options{Config: cfg, Builtins: true}); err != nil {
		t.Fatalf("reentrant counter: %v", err)
	}
}
