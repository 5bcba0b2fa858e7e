package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/loom-mesh/loom/lock"
)

// Crash and PauseLease are what a crash and a stalled lease do to a node,
// on demand, for tests (package loomtest's Kill and PauseLease): the
// failures Loom is built to survive, so neither can break a guarantee,
// and both are in every build. Neither is reachable from a flag, the
// config or the HTTP API.

// Crash stops the node at once, as a crash or kill -9 would: its gRPC and
// HTTP servers close with their connections (calls in flight fail, their
// outcome unknown to their callers), it stops gossiping without leaving
// (the others find it dead by failure detection), its Raft store (or
// coordinator client and journal) closes in the middle of whatever it
// was doing, and its actors are dropped without their OnDeactivate hooks
// and without releasing their locks. Its coordinator session is not
// ended: it lapses by its TTL, and only then may other nodes activate
// its actors, as after a real crash. What was acknowledged is in the
// journal already, so nothing acknowledged is lost.
//
// Then Crash releases what the process would have lost anyway
// (goroutines, files, ports), so that a node with the same data dir can be
// started in its place. Like Shutdown, it may be called at any time and
// ends a Start in progress; after it, Shutdown returns at once.
func (n *Node) Crash() error {
	n.stopMu.Lock()
	defer n.stopMu.Unlock()
	n.mu.Lock()
	state := n.state
	n.state = stateStopped
	cancelStart, startDone := n.startCancel, n.startDone
	n.mu.Unlock()
	switch state {
	case stateNew, stateStopped:
		if startDone != nil {
			<-startDone
		}
		return nil
	case stateStarting:
		cancelStart()
		<-startDone // Start closes what it opened
		return nil
	}
	n.log.Warn("node crashing (on request)")
	n.lease.resume() // so that nothing waits on a paused lease
	if n.srv != nil {
		_ = n.srv.Close()
	}
	if n.grpcSrv != nil {
		now, cancel := context.WithCancel(context.Background())
		cancel()
		n.grpcSrv.Stop(now) // no grace
	}
	if m := n.mesh; m != nil {
		if m.members != nil {
			m.members.Halt()
		}
		if m.groups != nil {
			_ = m.groups.Close()
		}
	}
	if n.coord != nil && !n.ownedByRaft(n.coord) {
		_ = n.coord.Close() // does not end the session: it lapses by TTL
	}
	if n.journal != nil && !n.ownedByRaft(n.journal) {
		_ = n.journal.Close()
	}
	if rt := n.runtime(); rt != nil {
		rt.DropAll("node crashed")
	}
	// What is left finds the coordinator and the journal closed: the
	// session keeper cannot end the session, nothing more is written.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.closeParts(ctx)
	n.log.Info("node crashed")
	if err != nil {
		return fmt.Errorf("node: after the crash: %w", err)
	}
	return nil
}

// PauseLease holds back the node's coordinator session requests (renewal,
// creation, destruction) until ResumeLease, as a stalled process or a
// link to the coordinator that drops only those would: each waits until
// ResumeLease or its timeout. Everything else goes on. So the session
// lapses: by the node's own clock first (SafetyMargin before its TTL), and
// the node drops its actors then and serves none until a new session
// opens; by the coordinator's at the TTL, and other nodes may then take
// the actors the ring gives them. A turn that was running when the
// session lapsed cannot commit under it (the journal fences the old
// token once a new owner has written).
func (n *Node) PauseLease() {
	n.lease.pause()
	n.log.Warn("coordinator session requests paused (on request)")
}

// ResumeLease lets the session requests PauseLease held go on: a
// lapsed session is replaced by a new one, and the node serves again.
func (n *Node) ResumeLease() {
	if n.lease.resume() {
		n.log.Info("coordinator session requests resumed")
	}
}

// leaseGate holds back session requests while paused. The zero value is
// open.
type leaseGate struct {
	mu     sync.Mutex
	paused chan struct{} // closed on resume; nil when open
}

func (g *leaseGate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == nil {
		g.paused = make(chan struct{})
	}
}

// resume opens the gate; it reports whether it was paused.
func (g *leaseGate) resume() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == nil {
		return false
	}
	close(g.paused)
	g.paused = nil
	return true
}

// wait returns once the gate is open, or ctx's error.
func (g *leaseGate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.paused
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: session request held by PauseLease: %w", ctx.Err())
	}
}

// gatedCoordinator is the session keeper's coordinator: its session
// requests pass the lease gate. Locks (the runtime's) do not go through
// it.
type gatedCoordinator struct {
	lock.Coordinator
	g *leaseGate
}

func (c gatedCoordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	if err := c.g.wait(ctx); err != nil {
		return "", err
	}
	return c.Coordinator.CreateSession(ctx, owner, ttl)
}

func (c gatedCoordinator) Renew(ctx context.Context, s lock.SessionID) error {
	if err := c.g.wait(ctx); err != nil {
		return err
	}
	return c.Coordinator.Renew(ctx, s)
}

func (c gatedCoordinator) DestroySession(ctx context.Context, s lock.SessionID) error {
	if err := c.g.wait(ctx); err != nil {
		return err
	}
	return c.Coordinator.DestroySession(ctx, s)
}
