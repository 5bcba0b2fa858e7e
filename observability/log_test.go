package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

func TestLoggerAddsTheCorrelationIDOfACall(t *testing.T) {
	var b bytes.Buffer
	log := NewLogger(config.LoggingConfig{Level: config.LogLevelDebug, Format: config.LogFormatJSON}, &b).With("node", "n1")
	ctx := runtime.WithCorrelationID(context.Background(), "cid-42")
	log.InfoContext(ctx, "about a call", "actor", "counter/c1")
	log.Info("not about a call")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), b.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["node"] != "n1" || first["correlation_id"] != "cid-42" || first["actor"] != "counter/c1" {
		t.Fatalf("line about a call: %v", first)
	}
	if second["node"] != "n1" || second["correlation_id"] != nil {
		t.Fatalf("line not about a call: %v", second)
	}

	b.Reset()
	NewLogger(config.LoggingConfig{Level: config.LogLevelWarn, Format: config.LogFormatText}, &b).InfoContext(ctx, "dropped")
	if b.Len() != 0 {
		t.Fatalf("an info line passed a warn level: %q", b.String())
	}
}
