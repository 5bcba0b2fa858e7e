package raftlock

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Raft logs some values as hclog.Fmt; they reach slog formatted.
func TestHCLoggerFormatsFmtValues(t *testing.T) {
	var buf bytes.Buffer
	l := NewHCLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []string{"a", "b"}))
	out := buf.String()
	if !strings.Contains(out, `servers="[a b]"`) || strings.Contains(out, "%+v") {
		t.Fatalf("log line %q does not carry the formatted value", out)
	}
}
