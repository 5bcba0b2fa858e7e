package raftlock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// hangingForwarder forwards like memForwarder, except to the server in
// hang: a forward to it blocks until its context ends, as one to a
// SIGSTOPped process does (its connection stays open, nothing answers).
type hangingForwarder struct {
	*memForwarder
	mu     sync.Mutex
	hang   raft.ServerID
	hung   map[raft.ServerID]int // forwards blocked now, by the server that sent them
	sender raft.ServerID
}

type senderForwarder struct {
	f    *hangingForwarder
	from raft.ServerID
}

func (s senderForwarder) Forward(ctx context.Context, leader raft.ServerID, addr raft.ServerAddress, batch []byte) ([]byte, error) {
	f := s.f
	f.mu.Lock()
	hang := f.hang != "" && leader == f.hang
	if hang {
		f.hung[s.from]++
	}
	f.mu.Unlock()
	if !hang {
		return f.memForwarder.Forward(ctx, leader, addr, batch)
	}
	<-ctx.Done()
	f.mu.Lock()
	f.hung[s.from]--
	f.mu.Unlock()
	return nil, ctx.Err()
}

func (f *hangingForwarder) hungFrom(id raft.ServerID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hung[id]
}

// After the leader stops answering while followers have every forward
// slot taken by requests to it, the others commit again within an election
// timeout and a second: the forwards end when the followers see the
// leader go, and a committer parked on a forward slot routes again (to
// Raft, on the node that wins).
func TestLeaderPausedWithForwardsInFlight(t *testing.T) {
	f := &hangingForwarder{memForwarder: newMemForwarder(), hung: map[raft.ServerID]int{}}
	c := newClusterWith(t, 3, nil, func(cfg *Config) {
		cfg.Forwarder = senderForwarder{f: f, from: cfg.NodeID}
	})
	f.memForwarder = c.fwd
	l := c.leader()
	followers := []int{(l + 1) % 3, (l + 2) % 3}
	cfg := c.nodes[l].cfg

	f.mu.Lock()
	f.hang = nodeID(l)
	f.mu.Unlock()
	// Fill every forward slot of both followers with requests the leader
	// never answers, one call at a time (a batch takes all that is
	// queued), then queue one more call behind them.
	var pending sync.WaitGroup
	var stuckErrs atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, fi := range followers {
		s := c.nodes[fi]
		for k := range cfg.MaxForwardsInFlight + 1 {
			pending.Go(func() {
				if _, err := s.Append(ctx, fmt.Sprintf("t/stuck-%d-%d", fi, k), 1, 0, entry("x")); err != nil {
					stuckErrs.Add(1)
					t.Errorf("a write queued behind the paused leader on %s failed: %v", nodeID(fi), err)
				}
			})
			if k < cfg.MaxForwardsInFlight {
				waitFor(t, 5*time.Second, "a forward to block", func() error {
					if n := f.hungFrom(nodeID(fi)); n < k+1 {
						return fmt.Errorf("%d forwards blocked from %s", n, nodeID(fi))
					}
					return nil
				})
			}
		}
	}

	// The leader stops: nothing more from it, its forwards never answer.
	paused := time.Now()
	c.stop(l)
	bound := cfg.ElectionTimeout + time.Second
	var wrote time.Duration
	waitFor(t, 20*time.Second, "a write through the majority", func() error {
		for _, fi := range followers {
			wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err := c.nodes[fi].CreateSession(wctx, "probe", time.Minute)
			wcancel()
			if err == nil {
				wrote = time.Since(paused)
				return nil
			}
		}
		return fmt.Errorf("no write committed %v after the pause", time.Since(paused).Round(time.Millisecond))
	})
	t.Logf("the majority committed again %v after the leader paused (bound %v)", wrote.Round(time.Millisecond), bound)
	if wrote > bound {
		t.Errorf("the majority committed again only %v after the leader paused, want within %v (election timeout + 1s)", wrote, bound)
	}
	pending.Wait()
	if n := stuckErrs.Load(); n > 0 {
		t.Fatalf("%d writes queued behind the paused leader failed", n)
	}
}
