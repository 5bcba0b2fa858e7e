package raftlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The interleaving that loses a committed entry when a wiped voter votes
// under its old identity: voters L, B, W; B is behind (down) while entry E
// commits on {L, W}; W's data dir is wiped and W restarts at its address;
// L is down; B campaigns. hashicorp/raft counts the vote of whoever answers
// at W's address as W's, and an empty log grants it, so B would lead
// without E and overwrite it once L is back. With Config.VoteGate the
// restarted server, a new one (PerDirServerID) outside its own
// configuration, refuses: B cannot win, and when L returns E survives.
func TestWipedVoterCannotElectALaggingCandidate(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	l := c.leader()
	b, w := (l+1)%3, (l+2)%3

	if _, err := c.nodes[l].Append(ctx, "t/before", 1, 0, entry("known to all")); err != nil {
		t.Fatal(err)
	}
	c.stop(b) // B lags from here on
	if _, err := c.nodes[l].Append(ctx, "t/e", 1, 0, entry("E")); err != nil {
		t.Fatalf("E does not commit on {L, W}: %v", err)
	}
	c.stop(w)
	if err := os.RemoveAll(c.dirs[w]); err != nil {
		t.Fatal(err)
	}
	c.stop(l)

	c.restart(b)
	c.tweak = func(cfg *Config) {
		if cfg.NodeID == nodeID(w) {
			cfg.PerDirServerID = true
			cfg.VoteGate = func() bool { return false } // not bootstrapping
		}
	}
	w2 := c.restart(w)
	if w2.LocalID() == nodeID(w) {
		t.Fatalf("the wiped node came back as %s, its old server id", w2.LocalID())
	}
	if NodeOf(w2.LocalID()) != string(nodeID(w)) {
		t.Fatalf("NodeOf(%s) = %q, want %q", w2.LocalID(), NodeOf(w2.LocalID()), nodeID(w))
	}
	// B campaigns and asks W's address for votes; the new server refuses.
	waitFor(t, 15*time.Second, "B to ask the wiped node for a vote", func() error {
		if c.nodes[b].IsLeader() {
			t.Fatalf("%s, which lacks E, leads with the vote of a wiped server", nodeID(b))
		}
		if n := w2.VotesRefused(); n < 2 {
			return fmt.Errorf("%d votes refused", n)
		}
		return nil
	})
	if c.nodes[b].IsLeader() {
		t.Fatalf("%s, which lacks E, leads with the vote of a wiped server", nodeID(b))
	}

	c.restart(l)
	waitFor(t, 20*time.Second, "E readable through the new leader", func() error {
		nl := -1
		for i, s := range c.nodes {
			if s != nil && s.IsLeader() {
				nl = i
			}
		}
		if nl < 0 {
			return errors.New("no leader")
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := c.nodes[nl].Sync(rctx); err != nil {
			return err
		}
		got, err := c.nodes[nl].Read(rctx, "t/e", 1)
		if err != nil {
			return err
		}
		if len(got) != 1 || string(got[0].Payload) != "E" {
			t.Fatalf("leader %s: journal of t/e is %v, want the committed E", nodeID(nl), got)
		}
		return nil
	})
}

func TestNodeOf(t *testing.T) {
	for _, tc := range []struct{ id, node string }{
		{"n1", "n1"},
		{"n1@0123456789abcdef", "n1"},
		{"a@b@0123456789abcdef", "a@b"},
		{"n1@0123456789abcdeg", "n1@0123456789abcdeg"}, // not hex
		{"n1@0123", "n1@0123"},                         // too short
		{"n1@", "n1@"},
	} {
		if got := NodeOf(raft.ServerID(tc.id)); got != tc.node {
			t.Errorf("NodeOf(%q) = %q, want %q", tc.id, got, tc.node)
		}
	}
}
