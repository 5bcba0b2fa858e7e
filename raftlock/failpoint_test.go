package raftlock

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestBeforeSyncFullDisk: with the leader's log store failing as a full
// disk does, the leader steps down, a node whose disk works takes over and
// the write commits; once space returns, the full node catches up.
func TestBeforeSyncFullDisk(t *testing.T) {
	full := make([]atomic.Bool, 3)
	var calls atomic.Int64
	c := newClusterWith(t, 3, nil, func(cfg *Config) {
		i := int(cfg.NodeID[1] - '1')
		cfg.BeforeSync = func() error {
			calls.Add(1)
			if full[i].Load() {
				return syscall.ENOSPC
			}
			return nil
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader()
	if _, err := c.nodes[l].Append(ctx, "t/a", 1, 0, entry("1")); err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 {
		t.Fatal("BeforeSync was never called")
	}
	full[l].Store(true)
	// Written through the full node: it cannot log the write, fails it
	// (its outcome is unknown to the caller: nothing says whether a log
	// entry went out) and steps down; a retry is forwarded to the new
	// leader.
	var err error
	for try := 0; ; try++ {
		if _, err = c.nodes[l].Append(ctx, "t/a", 1, 1, entry("2")); err == nil {
			break
		}
		if !errors.Is(err, ErrUnknownOutcome) || ctx.Err() != nil {
			t.Fatalf("append %d with the leader's disk full: %v", try, err)
		}
		time.Sleep(50 * time.Millisecond) // a new election, not an event this test can wait on
	}
	if nl := c.leader(); nl == l {
		t.Fatalf("the node with a full disk still leads")
	}
	other := (l + 1) % 3
	wantReplica(t, c.nodes[other], "t/a", []string{"1", "2"})
	full[l].Store(false)
	wantReplica(t, c.nodes[l], "t/a", []string{"1", "2"})
}
