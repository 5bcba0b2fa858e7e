package raftlock

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestMembership grows a one-node cluster by a voter and a non-voter (as
// node/ does after bootstrap_expect), writes through the non-voter, and
// removes it again.
func TestMembership(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	fwd := newMemForwarder()
	open := func(i int) *Store {
		cfg := testConfig(t, nodeID(i), t.TempDir(), "127.0.0.1:0", nil, false)
		cfg.Forwarder = fwd
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fwd.set(nodeID(i), s)
		t.Cleanup(func() { fwd.set(nodeID(i), nil); _ = s.Close() })
		return s
	}
	a, b, c := open(0), open(1), open(2)
	for _, s := range []*Store{a, b, c} {
		if s.HasState() {
			t.Fatalf("%s: HasState on a fresh data dir", s.LocalID())
		}
	}
	if err := a.Bootstrap([]raft.Server{a.LocalServer()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a leads", func() error {
		if !a.IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})
	if err := a.Bootstrap([]raft.Server{a.LocalServer()}); !errors.Is(err, raft.ErrCantBootstrap) {
		t.Fatalf("second Bootstrap: %v; want ErrCantBootstrap", err)
	}
	if err := a.AddVoter(ctx, b.LocalID(), b.Addr()); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	if err := a.AddNonvoter(ctx, c.LocalID(), c.Addr()); err != nil {
		t.Fatalf("AddNonvoter: %v", err)
	}
	if err := b.AddVoter(ctx, "x", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a follower: %v; want ErrNotLeader", err)
	}
	cfg, err := a.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	got := map[raft.ServerID]raft.ServerSuffrage{}
	for _, srv := range cfg.Servers {
		got[srv.ID] = srv.Suffrage
	}
	if len(got) != 3 || got[a.LocalID()] != raft.Voter || got[b.LocalID()] != raft.Voter || got[c.LocalID()] != raft.Nonvoter {
		t.Fatalf("configuration %+v", cfg.Servers)
	}
	if id, addr := c.Leader(); id != a.LocalID() || addr != a.Addr() {
		waitFor(t, 5*time.Second, "c knows the leader", func() error {
			if id, _ := c.Leader(); id != a.LocalID() {
				return fmt.Errorf("leader %q", id)
			}
			return nil
		})
	}
	if _, err := c.Append(ctx, "t/m", 1, 0, entry("via-nonvoter")); err != nil {
		t.Fatalf("Append through the non-voter: %v", err)
	}
	for _, s := range []*Store{a, b, c} {
		wantReplica(t, s, "t/m", []string{"via-nonvoter"})
	}
	if st := c.Stats(); st["state"] != "Follower" || st["fsm_applied_index"] == "0" {
		t.Errorf("non-voter stats: state %s applied %s", st["state"], st["fsm_applied_index"])
	}
	if err := a.RemoveServer(ctx, c.LocalID()); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	// (A removed server is not told: hashicorp/raft stops replicating to
	// it, so it may never see its removal. node/ closes it.)
	if cfg, _ := a.Configuration(); len(cfg.Servers) != 2 {
		t.Fatalf("configuration after removal %+v", cfg.Servers)
	}
}
