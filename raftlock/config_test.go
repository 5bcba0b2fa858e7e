package raftlock

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]Config{"DefaultConfig": DefaultConfig(), "FastConfig": FastConfig()} {
		c.NodeID, c.DataDir, c.BindAddr = "n1", t.TempDir(), "127.0.0.1:0"
		if err := c.Validate(); err != nil {
			t.Errorf("%s with NodeID, DataDir and BindAddr: %v", name, err)
		}
	}
	// The zero Config reports every missing piece at once.
	err := Config{}.Validate()
	for _, want := range []string{"NodeID", "DataDir", "BindAddr", "Now", "HeartbeatTimeout", "LeaderLeaseTimeout",
		"CommitTimeout", "MaxAppendEntries", "SnapshotInterval", "SnapshotThreshold", "SnapshotRetain", "MaxBatch ",
		"MaxBatchBytes", "ReapInterval", "TransportMaxPool", "TransportTimeout", "MessageIDRetention"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Config{}.Validate() does not mention %s: %v", want, err)
		}
	}
	c := FastConfig()
	c.NodeID, c.DataDir, c.BindAddr = "n1", "d", "no-port"
	c.ElectionTimeout = c.HeartbeatTimeout / 2
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "BindAddr") || !strings.Contains(err.Error(), "ElectionTimeout") {
		t.Errorf("Validate = %v; want BindAddr and ElectionTimeout reported", err)
	}
	if _, err := Open(c); err == nil {
		t.Error("Open accepted an invalid config")
	}
}

func TestHCLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := NewHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Named("raft").With("node", "n1").Named("net").Warn("heartbeat failed", "peer", "n2", "err", errors.New("boom"))
	l.Trace("not shown")
	l.Log(hclog.Error, "bad", "k", 1)
	if !l.IsDebug() || l.IsTrace() || l.GetLevel() != hclog.Debug {
		t.Errorf("levels: IsDebug %v IsTrace %v GetLevel %v", l.IsDebug(), l.IsTrace(), l.GetLevel())
	}
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] from std")
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="heartbeat failed" node=n1 logger=raft.net peer=n2 err=boom`,
		`level=ERROR msg=bad k=1`,
		`level=ERROR msg="from std"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not shown") {
		t.Errorf("a trace line was logged at debug level:\n%s", out)
	}
	NewHCLogger(nil).Error("discarded") // must not panic
}
