package node

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
)

// messageStore is the node's message store: its journal, which every
// backend makes a queue.Store too (a message is acknowledged in its actor's
// journal append). nil before start.
func (n *Node) messageStore() queue.Store {
	switch j := n.journal.(type) {
	case queue.Store:
		return j
	case interface{ Queues() raftlock.GroupQueues }:
		return j.Queues()
	}
	return nil
}

// MessageStore is the node's message store, nil before Start: for tools
// and tests that need the queues as they are. Sends go through Send,
// which checks them.
func (n *Node) MessageStore() queue.Store { return n.messageStore() }

// configureMessaging gives the runtime the message store and the per-type
// queue modes.
func (n *Node) configureMessaging(ro *runtime.Options) {
	st := n.messageStore()
	if st == nil {
		return
	}
	mc := n.cfg.Messaging
	ro.Messages = st
	if n.broker != nil {
		ro.Publish = n.broker.Publish
	}
	ro.DirectMessages = mc.ApplyOnAccept
	ro.MessageOrdered = func(t string) bool { return mc.For(t).QueueMode != config.QueueModeStandard }
	ro.MaxDelay = mc.MaxDelay
	ro.TraceParent = n.traceParent
}

// traceParent is the W3C traceparent of ctx's span ("" without one).
func (n *Node) traceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// startDispatcher starts delivering the messages of the actors this node
// is responsible for.
func (n *Node) startDispatcher() error {
	st := n.messageStore()
	if st == nil {
		return nil
	}
	mc := n.cfg.Messaging
	d, err := messaging.New(messaging.Options{
		Store:       st,
		Invoker:     n.runtime(),
		Responsible: n.responsible,
		Policy: func(t string) messaging.Policy {
			p := mc.For(t)
			return messaging.Policy{MaxRetries: p.MaxRetries, InitialBackoff: p.InitialBackoff, MaxBackoff: p.MaxBackoff, Jitter: p.Jitter}
		},
		Workers:  mc.Workers,
		Observer: n.obs.messageObserver(),
		Logger:   n.log,
		Now:      n.opts.Clock,
	})
	if err != nil {
		return err
	}
	n.dispatcher.Store(d)
	d.Start()
	return nil
}

// responsible reports whether this node delivers actor's messages: it is
// active here, or the ring places it here (or this is a single node).
func (n *Node) responsible(actor string) bool {
	if n.mesh == nil {
		return true
	}
	typ, id, _ := strings.Cut(actor, "/")
	if rt := n.runtime(); rt != nil && rt.Hosts(typ, id) {
		return true
	}
	_, local, ok := n.mesh.Owner(typ, id)
	return !ok || local
}

// Send sends a durable one-way message; it implements runtime.Sender. The
// message is accepted (durable) when Send returns; see package messaging
// for how it is delivered.
func (n *Node) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	rt := n.runtime()
	if rt == nil {
		return queue.Accepted{}, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	acc, err := rt.Send(ctx, e)
	if err == nil && !acc.Duplicate {
		n.obs.messageSent(e.ActorType)
		if acc.Applied {
			// Accepted and applied in one turn: a delivery that took no
			// time from acceptance.
			n.obs.messageObserver().Delivered(e.ActorType, messaging.OutcomeOK, 0)
		}
	}
	return acc, err
}

var errNoMessaging = fmt.Errorf("%w: this node's journal keeps no queues", runtime.ErrMessagingDisabled)

func (n *Node) store() (queue.Store, error) {
	if st := n.messageStore(); st != nil {
		return st, nil
	}
	return nil, errNoMessaging
}

// DeadLetters lists the dead letters f selects, oldest first.
func (n *Node) DeadLetters(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	st, err := n.store()
	if err != nil {
		return nil, err
	}
	return n.deadLetters(ctx, st, f)
}

// Replay moves the dead letters f selects back into their actors' queues,
// attempts reset. It refuses, moving none, if one of them names an actor
// type or method this node does not have: it could never be delivered.
func (n *Node) Replay(ctx context.Context, f queue.Filter) (int, error) {
	st, err := n.store()
	if err != nil {
		return 0, err
	}
	dead, err := n.deadLetters(ctx, st, f)
	if err != nil {
		return 0, err
	}
	if len(dead) == 0 {
		return 0, nil
	}
	types := n.runtime().Types()
	ids := make([]string, 0, len(dead))
	var bad []error
	for _, d := range dead {
		typ, _, _ := strings.Cut(d.Actor, "/")
		methods, ok := types[typ]
		switch {
		case !ok:
			bad = append(bad, fmt.Errorf("%w: message %s is to %q", runtime.ErrUnknownType, d.ID, typ))
		case !contains(methods, d.Method):
			bad = append(bad, fmt.Errorf("%w: message %s is to %s.%s", runtime.ErrUnknownMethod, d.ID, typ, d.Method))
		}
		ids = append(ids, d.ID)
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("node: replay refused, %d of the %d dead letters could never be delivered (purge them, or narrow the filter): %w", len(bad), len(dead), errors.Join(bad[:min(len(bad), 5)]...))
	}
	return n.replayDead(ctx, st, ids, time.Now())
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Purge deletes the dead letters f selects.
func (n *Node) Purge(ctx context.Context, f queue.Filter) (int, error) {
	st, err := n.store()
	if err != nil {
		return 0, err
	}
	return n.purgeDead(ctx, st, f)
}

// Reminders lists an actor's durable reminders. With Raft groups on some
// of the nodes, those of an actor whose group this node is outside of are
// read on the group's leader.
func (n *Node) Reminders(ctx context.Context, actorType, id string) ([]queue.Reminder, error) {
	st, err := n.store()
	if err != nil {
		return nil, err
	}
	key := actorType + "/" + id
	rs, err := st.Reminders(ctx, key)
	if g, ok := n.outsideGroupOf(key, err); ok {
		return askGroup[[]queue.Reminder](ctx, n, g, "reminders", url.Values{"actor": {key}}, "listing the reminders")
	}
	return rs, err
}

// DeleteReminder removes an actor's reminder.
func (n *Node) DeleteReminder(ctx context.Context, actorType, id, name string) error {
	st, err := n.store()
	if err != nil {
		return err
	}
	return st.DeleteReminder(ctx, actorType+"/"+id, name)
}

// MessageQueues returns the queues' figures per actor type, of the whole
// cluster: with Raft groups on some of the nodes, those of the groups this
// node is outside of are read on their leaders.
func (n *Node) MessageQueues(ctx context.Context) ([]queue.Stats, error) {
	if n.mesh != nil && n.mesh.groups != nil && n.mesh.partialGroups() {
		return n.clusterQueues(ctx)
	}
	return n.localQueues(ctx)
}

// localQueues returns the queues' figures per actor type from this node's
// store: with Raft groups on some of the nodes, of the groups it
// replicates only.
func (n *Node) localQueues(ctx context.Context) ([]queue.Stats, error) {
	st, err := n.store()
	if err != nil {
		return nil, err
	}
	return st.Stats(ctx)
}
