package rabbitmq

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/queue"
)

// Publish accepts m: it returns only after the broker has confirmed the
// message (persistent, mandatory, into a quorum queue), with AcceptedAt
// stamped by Options.Now. Seq is 0 (the broker keeps no sequence) and
// Duplicate is never set: the broker does not deduplicate ids; a message
// published twice is delivered twice and the journal applies its id once.
//
// Errors: queue.ErrInvalid for a message queue.CheckMessage refuses
// (nothing sent); ErrUnavailable when there is no connection (nothing
// sent); ErrUnconfirmed when it was sent but not confirmed (it may or may
// not have been stored: publishing it again with the same id is safe).
func (b *Broker) Publish(ctx context.Context, m queue.Message) (queue.Accepted, error) {
	if err := queue.CheckMessage(m); err != nil {
		return queue.Accepted{}, err
	}
	now := b.o.Now()
	e := envelope{Message: m}
	e.Seq, e.Attempts, e.LastError = 0, 0, ""
	e.AcceptedAt = now
	e.NextAt = now
	if m.DeliverAt.After(now) {
		e.NextAt = m.DeliverAt
	}
	key := b.topo.target(m.Actor, m.Ordered)
	if err := b.publish(ctx, b.topo.route(key, e.NextAt.Sub(now)), key, encode(e)); err != nil {
		return queue.Accepted{}, fmt.Errorf("publish %q: %w", m.ID, err)
	}
	return queue.Accepted{ID: m.ID, AcceptedAt: now}, nil
}

// startConsumers starts the consumers of every work queue on s. b.mu is
// held. A consumer that cannot start closes the connection, so that the
// supervisor starts over.
func (b *Broker) startConsumers(s *session) {
	h := b.handler
	b.wg.Go(func() {
		if err := b.consume(s, b.topo.std, b.o.Prefetch, func(d amqp.Delivery) {
			b.wg.Go(func() { b.deliverStd(s, h, d) })
		}); err != nil {
			b.consumerFailed(s, b.topo.std, err)
		}
	})
	for _, q := range b.topo.fifo {
		b.wg.Go(func() {
			if err := b.consume(s, q, 1, func(d amqp.Delivery) { b.deliverFIFO(s, h, d) }); err != nil {
				b.consumerFailed(s, q, err)
			}
		})
	}
}

func (b *Broker) consumerFailed(s *session, q string, err error) {
	if s.ctx.Err() != nil || b.ctx.Err() != nil {
		return
	}
	b.log.Warn("rabbitmq: consumer failed; reconnecting", "queue", q, "err", b.redact(err))
	s.close()
}

// consume runs one consumer of q with prefetch on a channel of its own
// and calls fn for each delivery, until the channel closes.
func (b *Broker) consume(s *session, q string, prefetch int, fn func(amqp.Delivery)) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return err
	}
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				if b.ctx.Err() != nil || s.ctx.Err() != nil {
					return nil
				}
				// The broker cancelled the consumer (its queue was
				// deleted...): start over, declaring the topology again.
				return fmt.Errorf("consumer of %s cancelled by the broker", q)
			}
			fn(d)
		case <-b.ctx.Done():
			_ = ch.Close()
			return nil
		case e, ok := <-closed:
			if ok && e != nil {
				return e // the broker closed the channel (a consumer timeout...)
			}
			return nil
		}
	}
}

// deliveryCtx ends when the broker closes or the delivery's session ends.
func (b *Broker) deliveryCtx(s *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(b.ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (b *Broker) track(n int) {
	b.mu.Lock()
	b.inflight += n
	b.mu.Unlock()
}

// notDue holds a delivery that is not due yet: it reports whether the
// message is due now (after a wait shorter than the shortest rung) or was
// sent down the ladder again (true: handled).
func (b *Broker) notDue(ctx context.Context, d amqp.Delivery, e envelope, key string) (handled bool) {
	wait := e.NextAt.Sub(b.o.Now())
	if wait <= 0 {
		return false
	}
	if wait < minRung {
		if !sleepCtx(ctx, wait) {
			return true // closing: left unacked, redelivered
		}
		return false
	}
	if err := b.publish(ctx, b.topo.route(key, wait), key, encode(e)); err != nil {
		b.nack(d)
		return true
	}
	b.ack(d)
	return true
}

func (b *Broker) ack(d amqp.Delivery) {
	b.meter.acks.Add(1)
	if err := d.Ack(false); err != nil {
		b.meter.connErrors.Add(1)
	}
}

// nack returns d to its queue (it counts towards the delivery limit).
func (b *Broker) nack(d amqp.Delivery) {
	b.meter.nacks.Add(1)
	if err := d.Nack(false, true); err != nil {
		b.meter.connErrors.Add(1)
	}
}

// deliverStd delivers one message of the shared queue: a failure is sent
// down the delay ladder (confirmed) and then acked, so it blocks nothing.
func (b *Broker) deliverStd(s *session, h Handler, d amqp.Delivery) {
	b.track(1)
	defer b.track(-1)
	ctx, cancel := b.deliveryCtx(s)
	defer cancel()
	e, err := decode(d)
	if err != nil {
		b.deadPoison(ctx, d, err)
		return
	}
	if b.notDue(ctx, d, e, keyStd) {
		return
	}
	e.Attempts += e.deliveryCount
	herr := h(ctx, e.Message)
	if ctx.Err() != nil {
		return // closing or disconnected: left unacked, redelivered
	}
	class := Done
	if herr != nil {
		class = b.o.Classify(herr)
	}
	now := b.o.Now()
	p := b.o.Policy(actorType(e.Actor))
	switch class {
	case Done:
		b.ack(d)
		return
	case Unavailable:
		e.NextAt = now.Add(b.o.UnavailableRetry)
		b.republish(ctx, d, e, keyStd, b.o.UnavailableRetry)
		return
	case Failed:
		if int(e.Attempts) < p.MaxRetries {
			wait := jitter(p.Backoff(e.Attempts+1), p.Jitter)
			e.Attempts++
			e.LastError = herr.Error()
			e.NextAt = now.Add(wait)
			b.meter.retries.Add(1)
			b.republish(ctx, d, e, keyStd, wait)
			return
		}
	}
	b.deadLetter(ctx, d, e, herr, now)
}

// republish sends e for key after wait, confirmed, then acks d; if it
// cannot, d is returned to its queue.
func (b *Broker) republish(ctx context.Context, d amqp.Delivery, e envelope, key string, wait time.Duration) {
	if err := b.publish(ctx, b.topo.route(key, wait), key, encode(e)); err != nil {
		b.log.Debug("rabbitmq: retry not published; returned to the queue", "id", e.ID, "err", err)
		b.nack(d)
		return
	}
	b.ack(d)
}

// deadLetter publishes e to the dead letters (confirmed) with the failure,
// then acks d.
func (b *Broker) deadLetter(ctx context.Context, d amqp.Delivery, e envelope, herr error, now time.Time) {
	e.Attempts++
	if herr != nil {
		e.LastError = herr.Error()
	}
	e.deadAt = now
	if err := b.publish(ctx, b.topo.exchange, keyDead, encode(e)); err != nil {
		b.log.Debug("rabbitmq: dead letter not published; returned to the queue", "id", e.ID, "err", err)
		b.nack(d)
		return
	}
	b.meter.deadLettered.Add(1)
	b.log.Warn("rabbitmq: message dead-lettered", "actor", e.Actor, "id", e.ID, "method", e.Method, "attempts", e.Attempts, "err", e.LastError)
	b.ack(d)
}

// deadPoison dead-letters a message that does not decode.
func (b *Broker) deadPoison(ctx context.Context, d amqp.Delivery, err error) {
	pub := amqp.Publishing{Headers: d.Headers, ContentType: d.ContentType, DeliveryMode: amqp.Persistent,
		MessageId: d.MessageId, CorrelationId: d.CorrelationId, Body: d.Body}
	if pub.Headers == nil {
		pub.Headers = amqp.Table{}
	}
	pub.Headers[hLastError] = err.Error()
	pub.Headers[hDeadAt] = nanos(b.o.Now())
	if perr := b.publish(ctx, b.topo.exchange, keyDead, pub); perr != nil {
		b.nack(d)
		return
	}
	b.ack(d)
}

// deliverFIFO delivers one message of a fifo queue. It holds the message
// unacked while it retries it in place, so the messages behind it wait.
func (b *Broker) deliverFIFO(s *session, h Handler, d amqp.Delivery) {
	b.track(1)
	defer b.track(-1)
	ctx, cancel := b.deliveryCtx(s)
	defer cancel()
	e, err := decode(d)
	if err != nil {
		b.deadPoison(ctx, d, err)
		return
	}
	key := b.topo.fifoKey(e.Actor)
	if b.notDue(ctx, d, e, key) {
		return
	}
	e.Attempts += e.deliveryCount
	p := b.o.Policy(actorType(e.Actor))
	for {
		herr := h(ctx, e.Message)
		if ctx.Err() != nil {
			return // closing or disconnected: left unacked, redelivered
		}
		class := Done
		if herr != nil {
			class = b.o.Classify(herr)
		}
		var wait time.Duration
		switch class {
		case Done:
			b.ack(d)
			return
		case Unavailable:
			wait = b.o.UnavailableRetry
		case Failed:
			if int(e.Attempts) >= p.MaxRetries {
				b.deadLetter(ctx, d, e, herr, b.o.Now())
				return
			}
			wait = jitter(p.Backoff(e.Attempts+1), p.Jitter)
			e.Attempts++
			e.LastError = herr.Error()
			b.meter.retries.Add(1)
		default:
			b.deadLetter(ctx, d, e, herr, b.o.Now())
			return
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}
