package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/observability"
)

// TestTracesCommandPrintsTheCallTree calls an actor on a node with tracing
// on, then prints the call's trace by its correlation id.
func TestTracesCommandPrintsTheCallTree(t *testing.T) {
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Journal.Backend = config.JournalMemory
	cfg.Tracing.Enabled = true
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	addr := n.HTTPAddr()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"call", "--addr", addr, "--correlation-id", "cli-trace-1", "counter/t1", "add", `{"delta":2}`}, &stdout, &stderr); code != 0 {
		t.Fatalf("call: %d %s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"traces", "--addr", addr, "cli-trace-1"}, &stdout, &stderr); code != 0 {
		t.Fatalf("traces: %d %s", code, stderr.String())
	}
	out := stdout.String()
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "trace ") || !strings.Contains(lines[0], "correlation cli-trace-1") ||
		!strings.HasPrefix(lines[1], "└─ node-1  POST /v1/actors/{type}/{id}/{method}  counter/t1 add  ") {
		t.Fatalf("tree:\n%s", out)
	}
	for _, want := range []string{"   └─ node-1  loom.turn counter.add  counter/t1 add  ", "      ├─ node-1  loom.activate counter  counter/t1", "      └─ node-1  loom.journal.append  counter/t1  ", " ms"} {
		if !strings.Contains(out, want) {
			t.Fatalf("tree has no %q:\n%s", want, out)
		}
	}

	// --json, flags after the id, and a filter that matches nothing.
	stdout.Reset()
	if code := run([]string{"traces", "cli-trace-1", "--addr", addr, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("traces --json: %d %s", code, stderr.String())
	}
	var res observability.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Traces) != 1 || res.Nodes["node-1"] != "ok" {
		t.Fatalf("--json: %v %s", err, stdout.String())
	}
	stderr.Reset()
	if code := run([]string{"traces", "--addr", addr, "--actor", "kv/none"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no matching trace") {
		t.Fatalf("no match: %d %s", code, stderr.String())
	}
	if code := run([]string{"traces", "--addr", addr, "--since", "yesterday"}, &stdout, &stderr); code != 2 {
		t.Fatalf("bad --since: %d", code)
	}
}
