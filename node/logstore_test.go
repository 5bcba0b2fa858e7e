package node_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/raftlock"
)

// A node on the raft-wal log store keeps its actors' state across a
// restart, and a data dir made with one log store refuses the other with
// the key to set.
func TestRaftLogStoreWAL(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(store string) (*node.Node, error) {
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
	for i, want := range []int64{2, 4} {
		n, err := open(config.RaftLogWAL)
		if err != nil {
			t.Fatalf("start %d on wal: %v", i+1, err)
		}
		v, err := builtin.CounterAdd.Call(ctx, n, "c", builtin.CounterDelta{Delta: 2})
		if err != nil || v.Value != want {
			t.Fatalf("start %d: add = %v, %v; want %d", i+1, v.Value, err, want)
		}
		if err := n.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n, err := open(config.RaftLogBolt)
	if err == nil {
		_ = n.Shutdown(ctx)
		t.Fatal("a wal data dir opened with boltdb")
	}
	if !errors.Is(err, raftlock.ErrLogStoreMismatch) || !strings.Contains(err.Error(), "cluster.raftLogStore") {
		t.Fatalf("boltdb on a wal data dir: %v; want ErrLogStoreMismatch naming cluster.raftLogStore", err)
	}
}
