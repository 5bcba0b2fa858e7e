package rabbitmq

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/queue"
)

// held is a dead letter taken from the queue and not yet settled.
type held struct {
	tag uint64
	dl  queue.DeadLetter
	raw amqp.Delivery
	ok  bool // decoded
}

// ListDead returns the dead letters f selects, oldest DeadAt first.
//
// Cost: a dead-letter queue can only be read by taking its messages, so
// this takes every message of the queue (basic.get, one round trip each,
// held unacknowledged on one channel, all in memory), then returns them
// all to the queue (one nack with requeue). It is O(n) in the size of the
// queue, whatever f selects; while it runs, the messages it holds are
// invisible to another node's scan. Dead letters of this Broker are
// scanned one operation at a time.
func (b *Broker) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	err := b.scanDead(ctx, f, func(ch *amqp.Channel, sel []*held) error {
		for _, h := range sel {
			out = append(out, h.dl)
		}
		return nil
	})
	return out, err
}

// Replay moves the dead letters f selects back into their queues (each
// published again, confirmed, with Attempts 0, no LastError and due now,
// then taken off the dead-letter queue) and returns how many it moved.
// Its cost is ListDead's. A crash between the publish and the removal
// leaves the message both replayed and dead (at-least-once).
func (b *Broker) Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error) {
	n := 0
	err := b.scanDead(ctx, f, func(ch *amqp.Channel, sel []*held) error {
		for _, h := range sel {
			e := envelope{Message: h.dl.Message}
			e.Attempts, e.LastError, e.NextAt = 0, "", now
			key := b.topo.target(e.Actor, e.Ordered)
			if err := b.publish(ctx, b.topo.exchange, key, encode(e)); err != nil {
				return fmt.Errorf("replay %q: %w", e.ID, err)
			}
			if err := b.settle(ch, h.tag); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Purge deletes the dead letters f selects and returns how many. Its cost
// is ListDead's.
func (b *Broker) Purge(ctx context.Context, f queue.Filter) (int, error) {
	n := 0
	err := b.scanDead(ctx, f, func(ch *amqp.Channel, sel []*held) error {
		for _, h := range sel {
			if err := b.settle(ch, h.tag); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (b *Broker) settle(ch *amqp.Channel, tag uint64) error {
	b.meter.acks.Add(1)
	if err := ch.Ack(tag, false); err != nil {
		b.meter.connErrors.Add(1)
		return fmt.Errorf("%w: ack a dead letter: %w", ErrUnavailable, err)
	}
	return nil
}

// scanDead takes every dead letter on one channel, calls fn with those f
// selects (oldest first, at most f.Limit), and returns the rest to the
// queue. fn acks the ones it settles.
func (b *Broker) scanDead(ctx context.Context, f queue.Filter, fn func(*amqp.Channel, []*held) error) error {
	b.deadMu.Lock()
	defer b.deadMu.Unlock()
	s, err := b.session()
	if err != nil {
		return err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		b.meter.connErrors.Add(1)
		return fmt.Errorf("%w: open channel: %w", ErrUnavailable, err)
	}
	defer ch.Close() // returns whatever is still held
	var all []*held
	var last uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		d, ok, err := ch.Get(b.topo.dead, false)
		b.meter.gets.Add(1)
		if err != nil {
			b.meter.connErrors.Add(1)
			return fmt.Errorf("%w: get a dead letter: %w", ErrUnavailable, err)
		}
		b.meter.answer(time.Since(start))
		if !ok {
			break
		}
		last = d.DeliveryTag
		h := &held{tag: d.DeliveryTag, raw: d}
		if e, err := decode(d); err == nil {
			h.ok = true
			h.dl = b.deadLetter2(e)
		}
		all = append(all, h)
	}
	var sel []*held
	for _, h := range all {
		if h.ok && matches(f, h.dl) {
			sel = append(sel, h)
		}
	}
	slices.SortStableFunc(sel, func(x, y *held) int { return x.dl.DeadAt.Compare(y.dl.DeadAt) })
	if f.Limit > 0 && len(sel) > f.Limit {
		sel = sel[:f.Limit]
	}
	ferr := fn(ch, sel)
	if last > 0 {
		b.meter.nacks.Add(1)
		if err := ch.Nack(last, true, true); err != nil && ferr == nil {
			b.meter.connErrors.Add(1)
			ferr = fmt.Errorf("%w: return the dead letters: %w", ErrUnavailable, err)
		}
	}
	return ferr
}

// deadLetter2 makes the DeadLetter of a decoded dead-queue message. A
// message the broker dead-lettered itself (the delivery limit, a consumer
// crash loop) has no loom-dead-at: its x-death says when and why.
func (b *Broker) deadLetter2(e envelope) queue.DeadLetter {
	dl := queue.DeadLetter{Message: e.Message, DeadAt: e.deadAt}
	if dl.DeadAt.IsZero() {
		dl.DeadAt = e.deathTime
		reason := e.deathReason
		if reason == "" {
			reason = "unknown"
		}
		if reason == "delivery_limit" {
			dl.Attempts += uint32(b.o.DeliveryLimit)
			dl.LastError = fmt.Sprintf("dead-lettered by the broker: delivered %d times without an outcome (a consumer that dies while handling it?)", b.o.DeliveryLimit)
		} else {
			dl.LastError = "dead-lettered by the broker: " + reason
		}
	}
	return dl
}

// matches reports whether f selects dl.
func matches(f queue.Filter, dl queue.DeadLetter) bool {
	if f.Type != "" && !strings.HasPrefix(dl.Actor, f.Type+"/") {
		return false
	}
	if f.Actor != "" && dl.Actor != f.Actor {
		return false
	}
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, dl.ID) {
		return false
	}
	if !f.Before.IsZero() && !dl.DeadAt.Before(f.Before) {
		return false
	}
	return true
}

// Stats are the broker's figures for the queues of one Prefix.
//
// What is knowable over AMQP: a queue's ready messages and its consumers
// (a passive declare). Not knowable without the management plugin: the
// messages delivered and unacknowledged in the whole cluster (InFlight is
// this node's only), and any per-actor-type figure: the messages of all
// types share the queues, and counting them would mean reading them (as
// ListDead does for the dead letters).
type Stats struct {
	Ready     int // ready in the shared and fifo queues
	Delayed   int // waiting on the delay ladder (retries and deliverAt)
	Dead      int // dead letters
	Consumers int // on the shared and fifo queues, all nodes
	InFlight  int // deliveries this node holds unsettled
	Queues    []QueueStats
}

// QueueStats is one queue's figures.
type QueueStats struct {
	Name      string
	Kind      string // "std", "fifo", "delay" or "dead"
	Ready     int
	Consumers int
}

// Stats returns the queues' figures, one passive declare per queue. They
// are a moment's view: a quorum queue applies settlements asynchronously,
// so messages a dead-letter scan has just returned may be missing from
// Dead for a few milliseconds.
func (b *Broker) Stats(ctx context.Context) (Stats, error) {
	s, err := b.session()
	if err != nil {
		return Stats{}, err
	}
	type q struct{ name, kind string }
	qs := []q{{b.topo.std, "std"}}
	for _, n := range b.topo.fifo {
		qs = append(qs, q{n, "fifo"})
	}
	for _, n := range b.topo.delay {
		qs = append(qs, q{n, "delay"})
	}
	qs = append(qs, q{b.topo.dead, "dead"})
	st := Stats{InFlight: b.InFlight()}
	err = s.withChannel(ctx, &b.meter, func(ch *amqp.Channel) error {
		for _, x := range qs {
			info, err := ch.QueueDeclarePassive(x.name, true, false, false, false, nil)
			if err != nil {
				return fmt.Errorf("queue %s: %w", x.name, err)
			}
			st.Queues = append(st.Queues, QueueStats{Name: x.name, Kind: x.kind, Ready: info.Messages, Consumers: info.Consumers})
			switch x.kind {
			case "std", "fifo":
				st.Ready += info.Messages
				st.Consumers += info.Consumers
			case "delay":
				st.Delayed += info.Messages
			case "dead":
				st.Dead += info.Messages
			}
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}
