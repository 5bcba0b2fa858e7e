package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// broker keeps durable messages outside the journal (messaging.backend
// rabbitmq). The node hands it the messages sent from outside actors
// (runtime.Options.Publish) and delivers what it consumes as external
// deliveries (runtime.WithExternalDelivery), whose turns record each id in
// the actor's journal: the broker's copy is acknowledged after that
// append, so a message redelivered by the broker applies nothing. Messages
// sent from inside turns and reminders stay in the journal's store and its
// dispatcher, where they commit with their turns.
type broker interface {
	// Publish returns once the broker holds m durably.
	Publish(ctx context.Context, m queue.Message) (queue.Accepted, error)
	// Consume starts delivering the broker's messages to h until Close.
	Consume(h func(ctx context.Context, m queue.Message) error) error
	ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error)
	Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error)
	Purge(ctx context.Context, f queue.Filter) (int, error)
	// Ping reports whether the broker answers, for /health.
	Ping(ctx context.Context) error
	// Stats are the broker's queue depths.
	Stats(ctx context.Context) (BrokerStats, error)
	Close() error
}

// BrokerStats are a message broker's queue depths: messages ready to be
// delivered, waiting for their time in delay queues, dead; and the
// deliveries this node is running.
type BrokerStats struct {
	Ready    int `json:"ready"`
	Delayed  int `json:"delayed"`
	Dead     int `json:"dead"`
	InFlight int `json:"inFlight"`
}

// BrokerStats returns the message broker's queue depths; an error without
// a broker.
func (n *Node) BrokerStats(ctx context.Context) (BrokerStats, error) {
	if n.broker == nil {
		return BrokerStats{}, errors.New("node: no message broker (messaging.backend is not rabbitmq)")
	}
	return n.broker.Stats(ctx)
}

// deliverExternal runs m, consumed from the broker, as a turn of its actor
// wherever the actor lives. It returns the call's error: nil when m was
// applied; runtime.ErrMessageSettled when it had been applied before, and
// the others as messaging.Classify reads them.
func (n *Node) deliverExternal(ctx context.Context, m queue.Message) error {
	rt := n.runtime()
	if rt == nil {
		return fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	typ, id, _ := strings.Cut(m.Actor, "/")
	ctx = runtime.WithCorrelationID(ctx, m.CorrelationID)
	ctx = runtime.WithExternalDelivery(ctx, m.ID, m.Attempts, m.Headers)
	obs := n.obs.messageObserver()
	ctx, end := obs.StartDelivery(ctx, m)
	_, err := rt.Invoke(ctx, typ, id, m.Method, m.Payload)
	outcome := n.externalOutcome(typ, m, err)
	end(outcome, err)
	since := m.NextAt
	if since.IsZero() || since.Before(m.AcceptedAt) {
		since = m.AcceptedAt
	}
	obs.Delivered(typ, outcome, time.Since(since))
	return err
}

// externalOutcome names what the broker will do with m after err, in the
// dispatcher's terms (messaging.Outcome*), for metrics and traces.
func (n *Node) externalOutcome(actorType string, m queue.Message, err error) string {
	if err == nil {
		return messaging.OutcomeOK
	}
	switch messaging.Classify(err) {
	case messaging.Settled:
		return messaging.OutcomeSettled
	case messaging.Permanent:
		return messaging.OutcomeDead
	case messaging.Failed:
		if int(m.Attempts) >= n.cfg.Messaging.For(actorType).MaxRetries {
			return messaging.OutcomeDead
		}
		return messaging.OutcomeRetry
	}
	return messaging.OutcomeUnavailable
}

// deadLetters lists the dead letters f selects in the journal's store and
// in the broker, oldest first, at most f.Limit.
func (n *Node) deadLetters(ctx context.Context, st queue.Store, f queue.Filter) ([]queue.DeadLetter, error) {
	dead, err := st.ListDead(ctx, f)
	if err != nil || n.broker == nil {
		return dead, err
	}
	more, err := n.broker.ListDead(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("node: dead letters in the message broker: %w", err)
	}
	dead = append(dead, more...)
	slices.SortStableFunc(dead, func(a, b queue.DeadLetter) int { return a.DeadAt.Compare(b.DeadAt) })
	if f.Limit > 0 && len(dead) > f.Limit {
		dead = dead[:f.Limit]
	}
	return dead, nil
}

// replayDead moves the dead letters with these ids back into their
// queues: the journal store's own, and the broker's.
func (n *Node) replayDead(ctx context.Context, st queue.Store, ids []string, now time.Time) (int, error) {
	moved, err := st.Replay(ctx, queue.Filter{IDs: ids}, now)
	if err != nil || n.broker == nil {
		return moved, err
	}
	more, err := n.broker.Replay(ctx, queue.Filter{IDs: ids}, now)
	return moved + more, err
}

// purgeDead deletes the dead letters f selects in both places.
func (n *Node) purgeDead(ctx context.Context, st queue.Store, f queue.Filter) (int, error) {
	gone, err := st.Purge(ctx, f)
	if err != nil || n.broker == nil {
		return gone, err
	}
	more, err := n.broker.Purge(ctx, f)
	return gone + more, err
}

// closeBroker stops consuming and closes the broker connection: a delivery
// in progress finishes or is returned to the broker, unacknowledged.
func (n *Node) closeBroker() error {
	if n.broker == nil {
		return nil
	}
	if err := n.broker.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("node: message broker: %w", err)
	}
	return nil
}
