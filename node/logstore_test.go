package node_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/raftlock"
)

// A node keeps its actors' state across restarts on either Raft log
// store; the default, auto, opens the store its data dir holds (raft-wal
// for a new one); and a data dir made with one store refuses the other
// with the key to set.
func TestRaftLogStore(t *testing.T) {
	ctx := context.Background()
	open := func(dir, store string) (*node.Node, error) {
		cfg := config.Dev()
		cfg.Node.DataDir = dir
		cfg.Node.HTTPPort = 0
		cfg.Cluster.RaftLogStore = store
		n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, err
		}
		return n, n.Start(ctx)
	}
	for _, tc := range []struct {
		made, other string
		layout      string // what the data dir holds
	}{
		{config.RaftLogAuto, config.RaftLogBolt, "raft/wal"},
		{config.RaftLogBolt, config.RaftLogWAL, "raft/raft.db"},
	} {
		t.Run(tc.made, func(t *testing.T) {
			dir := t.TempDir()
			for i, store := range []string{tc.made, config.RaftLogAuto} {
				n, err := open(dir, store)
				if err != nil {
					t.Fatalf("start %d (%s): %v", i+1, store, err)
				}
				v, err := builtin.CounterAdd.Call(ctx, n, "c", builtin.CounterDelta{Delta: 2})
				if want := int64(2 * (i + 1)); err != nil || v.Value != want {
					t.Fatalf("start %d (%s): add = %v, %v; want %d", i+1, store, v.Value, err, want)
				}
				if err := n.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, tc.layout)); err != nil {
				t.Fatalf("a data dir made with %s: %v", tc.made, err)
			}
			n, err := open(dir, tc.other)
			if err == nil {
				_ = n.Shutdown(ctx)
				t.Fatalf("a data dir made with %s opened with %s", tc.made, tc.other)
			}
			if !errors.Is(err, raftlock.ErrLogStoreMismatch) || !strings.Contains(err.Error(), "cluster.raftLogStore") {
				t.Fatalf("%s on a %s data dir: %v; want ErrLogStoreMismatch naming cluster.raftLogStore", tc.other, tc.made, err)
			}
		})
	}
}
