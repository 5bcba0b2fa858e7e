//go:build loomchaos

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// ChaosOptions turn on the chaos hook (package faultnet) in a clustered
// node. TEST ONLY: it lets anyone who reaches the node's HTTP port cut its
// network, skew its lease clock and fail its disk. `loom-node run
// --chaos-hook` sets it; nothing else does, and a node without it builds
// none of this.
//
// With a hook the node
//
//   - serves the hook's control API under /chaos/ (GET/PUT/DELETE
//     /chaos/faults) on its HTTP port;
//   - sends gossip through the hook's memberlist transport, Raft through
//     its StreamLayer and gRPC between nodes through its listener and
//     dialer, all bound to node.bind, which must be an IP of this node's
//     own (the hook tells peers apart by source IP: give every node its own
//     127.0.0.x);
//   - runs its session keeper and its Raft store's clocks (raftlock's
//     Config.Now and Monotonic: as leader, the node stamps every entry
//     from them, and sessions expire by those stamps) on the hook's clock:
//     the rate skews both the wall and the monotonic clock, the offset
//     steps only the wall clock (Hook.Now), as a real step does;
//   - calls the hook's BeforeSync before every Raft log write (slow fsync,
//     "no space left");
//   - writes its activation log to Events, when set (see ChaosEvent).
type ChaosOptions struct {
	Hook *faultnet.Hook
	// Events, if not nil, receives one ChaosEvent as a JSON line per lock
	// grant, activation, deactivation, journal write and fenced write.
	// Each event is one Write: give an unbuffered file opened with
	// O_APPEND, so that a kill -9 loses nothing written.
	Events io.Writer
}

// chaosState is a node's chaos hook at work; nil when the hook is off,
// and every method is then a no-op that returns its input.
type chaosState struct {
	hook   *faultnet.Hook
	node   string
	events *eventLog
}

func newChaosState(o *ChaosOptions, nodeID string) (*chaosState, error) {
	if o == nil || o.Hook == nil {
		return nil, nil
	}
	c := &chaosState{hook: o.Hook, node: nodeID}
	if o.Events != nil {
		c.events = &eventLog{w: o.Events, node: nodeID, pid: os.Getpid()}
	}
	return c, nil
}

// checkBind refuses a bind address the hook cannot attribute traffic by.
func (c *chaosState) checkBind(bind string) error {
	if c == nil {
		return nil
	}
	if ip := net.ParseIP(bind); ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("node: the chaos hook needs node.bind to be one IP of this node's own (127.0.0.x), not %q", bind)
	}
	return nil
}

// grpcListener wraps the gRPC listener.
func (c *chaosState) grpcListener(ln net.Listener) net.Listener {
	if c == nil {
		return ln
	}
	return c.hook.Listener(ln, faultnet.GRPC)
}

// grpcDialer is the dialer of the node's connection pool (nil: gRPC's).
func (c *chaosState) grpcDialer() func(context.Context, string) (net.Conn, error) {
	if c == nil {
		return nil
	}
	return c.hook.Dialer(faultnet.GRPC)
}

// raftStream is the base of the Raft transports (see Node.raftTransports)
// through the hook's StreamLayer on rc.BindAddr, and gives the Raft store
// the hook's disk failpoint and the hook's clock: a skewed leader decides
// when every node's session expires.
func (c *chaosState) raftStream(rc *raftlock.Config) (raft.StreamLayer, error) {
	if c == nil {
		return nil, nil
	}
	rc.Now, rc.Monotonic = c.hook.Now, c.hook.Monotonic
	ln, err := net.Listen("tcp", rc.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("node: raft listen on %s: %w", rc.BindAddr, err)
	}
	rc.BeforeSync = c.hook.BeforeSync
	return c.hook.StreamLayer(ln), nil
}

// configureGossip gives memberlist a transport through the hook, bound to
// the node's own address so that its packets name it.
func (c *chaosState) configureGossip(cc *cluster.Config) error {
	if c == nil {
		return nil
	}
	nt, err := cluster.NewNetTransport(*cc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	cc.Transport = c.hook.Memberlist(nt)
	return nil
}

// configureKeeper puts the session keeper on the hook's clock.
func (c *chaosState) configureKeeper(kc *lock.KeeperConfig) {
	if c == nil {
		return
	}
	// The keeper times its lease by differences of Now: the monotonic
	// clock, which the rate skews and an offset (a wall-clock step) does
	// not move, as time.Now's monotonic reading is not moved by one.
	kc.Now, kc.AfterFunc = c.hook.MonotonicNow, c.hook.AfterFunc
}

// configureRuntime routes the runtime's coordinator, journal and observer
// through the activation log.
func (c *chaosState) configureRuntime(ro *runtime.Options) {
	if c == nil || c.events == nil {
		return
	}
	l := c.events
	ro.Coordinator = eventCoordinator{Coordinator: ro.Coordinator, l: l}
	ro.Journal = eventJournal{Journal: ro.Journal, l: l}
	ro.Observer = eventObserver{next: ro.Observer, l: l}
}

// routes serves the hook's control API.
func (c *chaosState) routes(mux *http.ServeMux) {
	if c == nil {
		return
	}
	mux.Handle("/chaos/", c.hook.Handler())
}

// eventLog writes ChaosEvents, one Write each.
type eventLog struct {
	w    io.Writer
	node string
	pid  int

	mu     sync.Mutex
	tokens map[string]uint64 // actor → the token of its latest grant here
	failed bool              // a write failed once: said in the node's log
}

func (l *eventLog) emit(e ChaosEvent) {
	e.Time, e.Node, e.PID = time.Now().UnixNano(), l.node, l.pid
	b, _ := json.Marshal(e)
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(b); err != nil && !l.failed {
		l.failed = true
		fmt.Fprintf(os.Stderr, "node %s: chaos: writing the activation log: %v\n", l.node, err)
	}
}

func (l *eventLog) setToken(actor string, token uint64) {
	l.mu.Lock()
	if l.tokens == nil {
		l.tokens = map[string]uint64{}
	}
	l.tokens[actor] = token
	l.mu.Unlock()
}

func (l *eventLog) token(actor string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tokens[actor]
}

type eventCoordinator struct {
	lock.Coordinator
	l *eventLog
}

func (c eventCoordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	tok, err := c.Coordinator.Acquire(ctx, s, key)
	if err == nil {
		c.l.setToken(key, tok)
		c.l.emit(ChaosEvent{Event: EventAcquired, Actor: key, Token: tok})
	}
	return tok, err
}

type eventJournal struct {
	journal.Journal
	l *eventLog
}

func (j eventJournal) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	tail, err := j.Journal.Append(ctx, actor, token, expectedSeq, entries)
	switch {
	case err == nil:
		j.l.emit(ChaosEvent{Event: EventWrite, Actor: actor, Token: token, First: expectedSeq + 1, Last: tail})
	case errors.Is(err, journal.ErrFenced):
		j.l.emit(ChaosEvent{Event: EventFenced, Actor: actor, Token: token, Reason: err.Error()})
	}
	return tail, err
}

// eventObserver logs activations and deactivations and passes everything
// on to the node's own observer (next, may be nil).
type eventObserver struct {
	next runtime.Observer
	l    *eventLog
}

func noop(error) {}

func (o eventObserver) StartCall(ctx context.Context, typ, id, method string, hops int) (context.Context, func(error)) {
	if o.next == nil {
		return ctx, noop
	}
	return o.next.StartCall(ctx, typ, id, method, hops)
}

func (o eventObserver) StartTurn(ctx context.Context, typ, id, method string, hops int) (context.Context, func(error)) {
	if o.next == nil {
		return ctx, noop
	}
	return o.next.StartTurn(ctx, typ, id, method, hops)
}

func (o eventObserver) StartActivation(ctx context.Context, typ, id string) (context.Context, func(error)) {
	done := noop
	if o.next != nil {
		ctx, done = o.next.StartActivation(ctx, typ, id)
	}
	key := typ + "/" + id
	return ctx, func(err error) {
		if err == nil {
			o.l.emit(ChaosEvent{Event: EventActivated, Actor: key, Token: o.l.token(key)})
		} else {
			o.l.emit(ChaosEvent{Event: EventFailed, Actor: key, Token: o.l.token(key), Reason: firstLine(err.Error())})
		}
		done(err)
	}
}

func (o eventObserver) Deactivated(typ, id, reason string) {
	key := typ + "/" + id
	o.l.emit(ChaosEvent{Event: EventDeactivated, Actor: key, Token: o.l.token(key), Reason: reason})
	if o.next != nil {
		o.next.Deactivated(typ, id, reason)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
