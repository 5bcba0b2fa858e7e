// Package replicatest has what tests of replica Groups, and of raftlock's
// Stores built on them, share: an in-process Forwarder, a poll, and the
// wait for a leader.
package replicatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Handler is a node's end of forwarding: replica.Group, raftlock.Store.
type Handler interface {
	HandleForward(ctx context.Context, batch []byte) ([]byte, error)
}

// ErrUnreachable is what Forward returns for a node that is not
// registered.
var ErrUnreachable = errors.New("replicatest: unreachable")

// Forwarder forwards in process: it calls the leader's HandleForward
// directly, copying bytes both ways as a network would. Nodes are
// registered by id; an unregistered (stopped) one is unreachable.
type Forwarder struct {
	mu    sync.RWMutex
	nodes map[raft.ServerID]Handler
}

// NewForwarder returns a Forwarder with no node registered.
func NewForwarder() *Forwarder { return &Forwarder{nodes: map[raft.ServerID]Handler{}} }

// Set registers h as node id; a nil h unregisters it.
func (f *Forwarder) Set(id raft.ServerID, h Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h == nil {
		delete(f.nodes, id)
	} else {
		f.nodes[id] = h
	}
}

// Forward implements replica.Forwarder (and raftlock.Forwarder).
func (f *Forwarder) Forward(ctx context.Context, leader raft.ServerID, _ raft.ServerAddress, batch []byte) ([]byte, error) {
	f.mu.RLock()
	h := f.nodes[leader]
	f.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, leader)
	}
	out, err := h.HandleForward(ctx, bytes.Clone(batch))
	return bytes.Clone(out), err
}

// WaitFor polls cond until it returns nil, failing the test with its last
// error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v", what, timeout, err)
		}
		time.Sleep(delay) // polling interval, not synchronisation
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// Leader waits until one of nodes (a zero one is down) is the leader and
// serves (IsLeader), and returns its index.
func Leader[N interface {
	comparable
	IsLeader() bool
}](t testing.TB, nodes []N) int {
	t.Helper()
	var none N
	leader := -1
	WaitFor(t, 15*time.Second, "a leader serves", func() error {
		for i, n := range nodes {
			if n != none && n.IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("no leader")
	})
	return leader
}
