package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// minRung is the shortest rung of the delay ladder; each next one is twice
// as long.
const minRung = 100 * time.Millisecond

// Routing keys of the main exchange.
const (
	keyStd  = "std"
	keyDead = "dead"
)

// topology names the exchanges and queues of one Prefix.
type topology struct {
	prefix   string
	exchange string   // direct: routes by key to std, fifo.N and dead
	std      string   // shared quorum queue of unordered messages
	fifo     []string // single-active-consumer quorum queues
	dead     string   // dead letters
	rungs    []time.Duration
	delay    []string // queue and fanout exchange of each rung (same name)
	limit    int      // x-delivery-limit
}

func newTopology(o Options) topology {
	t := topology{prefix: o.Prefix, exchange: o.Prefix, std: o.Prefix + "." + keyStd, dead: o.Prefix + "." + keyDead, limit: o.DeliveryLimit}
	for i := range o.FIFOQueues {
		t.fifo = append(t.fifo, o.Prefix+".fifo."+strconv.Itoa(i))
	}
	for r := minRung; r <= o.MaxDelay; r *= 2 {
		t.rungs = append(t.rungs, r)
		t.delay = append(t.delay, o.Prefix+".delay."+strconv.FormatInt(r.Milliseconds(), 10)+"ms")
	}
	return t
}

// fifoKey is the routing key (and queue suffix) of an ordered actor.
func (t topology) fifoKey(actor string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(actor))
	return "fifo." + strconv.Itoa(int(h.Sum32()%uint32(len(t.fifo))))
}

// target is the routing key of the queue a message is delivered from.
func (t topology) target(actor string, ordered bool) string {
	if ordered {
		return t.fifoKey(actor)
	}
	return keyStd
}

// route is where to publish a message for key that is due in delay: the
// main exchange when it is due in less than the shortest rung, else the
// longest rung not longer than delay (its queue dead-letters it into the
// main exchange with key when its TTL expires; a consumer that receives it
// before it is due sends it down the ladder again).
func (t topology) route(key string, delay time.Duration) (exchange string) {
	if delay < minRung || len(t.rungs) == 0 {
		return t.exchange
	}
	i := len(t.rungs) - 1
	for i > 0 && t.rungs[i] > delay {
		i--
	}
	return t.delay[i]
}

func (t topology) workArgs() amqp.Table {
	return amqp.Table{
		"x-queue-type":              "quorum",
		"x-delivery-limit":          int64(t.limit),
		"x-dead-letter-exchange":    t.exchange,
		"x-dead-letter-routing-key": keyDead,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}
}

func (t topology) fifoArgs() amqp.Table {
	a := t.workArgs()
	a["x-single-active-consumer"] = true
	return a
}

func (t topology) deadArgs() amqp.Table { return amqp.Table{"x-queue-type": "quorum"} }

func (t topology) delayArgs(rung time.Duration) amqp.Table {
	return amqp.Table{
		"x-queue-type":           "quorum",
		"x-message-ttl":          rung.Milliseconds(),
		"x-dead-letter-exchange": t.exchange, // the original routing key: the target queue
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}
}

// declare declares every exchange, queue and binding (idempotent).
func (t topology) declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.exchange, err)
	}
	q := func(name string, args amqp.Table, key string) error {
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %s: %w", name, err)
		}
		if err := ch.QueueBind(name, key, t.exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", name, err)
		}
		return nil
	}
	if err := q(t.dead, t.deadArgs(), keyDead); err != nil {
		return err
	}
	if err := q(t.std, t.workArgs(), keyStd); err != nil {
		return err
	}
	for i, name := range t.fifo {
		if err := q(name, t.fifoArgs(), "fifo."+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	for i, name := range t.delay {
		if err := ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", name, err)
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, t.delayArgs(t.rungs[i])); err != nil {
			return fmt.Errorf("declare queue %s: %w", name, err)
		}
		if err := ch.QueueBind(name, "", name, false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", name, err)
		}
	}
	return nil
}

// pubChannels is how many confirm-mode channels a session publishes on,
// and pubInflight how many publishes each may have awaiting a confirm.
const (
	pubChannels = 4
	pubInflight = 256
)

// session is one connection and what lives on it.
type session struct {
	conn   *amqp.Connection
	ctx    context.Context // ends when the connection closes (or close is called)
	cancel context.CancelFunc
	pubs   []*pubChan
	next   atomic.Uint32
	mu     sync.Mutex
	cause  error
}

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

func (s *session) close() {
	s.cancel()
	_ = s.conn.Close()
}

// pubChan is a channel in confirm mode.
type pubChan struct {
	ch       *amqp.Channel
	slots    chan struct{} // bounds the publishes awaiting a confirm
	returns  chan amqp.Return
	mu       sync.Mutex
	returned map[string]int // message ids returned unroutable, not yet claimed
}

// connect dials, declares the topology and opens the publishing channels.
func (b *Broker) connect(ctx context.Context) (*session, error) {
	b.meter.dials.Add(1)
	cfg := amqp.Config{
		Heartbeat:       10 * time.Second,
		Locale:          "en_US",
		Properties:      amqp.Table{"connection_name": "loom " + b.o.Prefix},
		Dial:            amqp.DefaultDial(10 * time.Second),
		TLSClientConfig: b.o.TLS,
	}
	type res struct {
		c   *amqp.Connection
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := amqp.DialConfig(b.o.URL, cfg)
		done <- res{c, err}
	}()
	var conn *amqp.Connection
	select {
	case r := <-done:
		if r.err != nil {
			b.meter.dialErrors.Add(1)
			return nil, fmt.Errorf("%w: connect to %s: %w", ErrUnavailable, b.where, b.redact(r.err))
		}
		conn = r.c
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				_ = r.c.Close()
			}
		}()
		b.meter.dialErrors.Add(1)
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrUnavailable, b.where, ctx.Err())
	}
	s := &session{conn: conn}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-closes; ok && e != nil {
			s.mu.Lock()
			s.cause = e
			s.mu.Unlock()
		}
		s.cancel()
	}()
	fail := func(err error) (*session, error) {
		s.close()
		return nil, b.redact(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("%w: open channel: %w", ErrUnavailable, err))
	}
	start := time.Now()
	if err := b.topo.declare(ch); err != nil {
		b.meter.errorReplies.Add(1)
		return fail(err)
	}
	b.meter.answer(time.Since(start))
	b.meter.declares.Add(1)
	_ = ch.Close()
	for range pubChannels {
		ch, err := conn.Channel()
		if err != nil {
			return fail(fmt.Errorf("%w: open channel: %w", ErrUnavailable, err))
		}
		if err := ch.Confirm(false); err != nil {
			return fail(fmt.Errorf("%w: confirm mode: %w", ErrUnavailable, err))
		}
		p := &pubChan{ch: ch, slots: make(chan struct{}, pubInflight), returns: make(chan amqp.Return, pubInflight+1), returned: map[string]int{}}
		ch.NotifyReturn(p.returns)
		s.pubs = append(s.pubs, p)
	}
	return s, nil
}

// withChannel runs fn on a new channel of s, waiting at most until ctx
// ends, and closes the channel.
func (s *session) withChannel(ctx context.Context, m *Meter, fn func(ch *amqp.Channel) error) error {
	ch, err := s.conn.Channel()
	if err != nil {
		m.connErrors.Add(1)
		return fmt.Errorf("%w: open channel: %w", ErrUnavailable, err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- fn(ch) }()
	select {
	case err = <-done:
		_ = ch.Close()
	case <-ctx.Done():
		_ = ch.Close() // fn returns with an error
		m.connErrors.Add(1)
		return ctx.Err()
	}
	if err == nil {
		m.answer(time.Since(start))
		return nil
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Server {
		m.errorReplies.Add(1)
		return err
	}
	m.connErrors.Add(1)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// publish sends one message and waits for the broker's confirm. It fails
// with ErrUnavailable before sending, ErrUnconfirmed after.
func (b *Broker) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	p := s.pubs[int(s.next.Add(1))%len(s.pubs)]
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-s.ctx.Done():
		return fmt.Errorf("%w: connection lost", ErrUnavailable)
	}
	defer func() { <-p.slots }()
	start := time.Now()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		b.meter.connErrors.Add(1)
		return fmt.Errorf("%w: publish: %w", ErrUnavailable, b.redact(err))
	}
	b.meter.publishes.Add(1)
	select {
	case <-dc.Done():
	case <-ctx.Done():
		b.meter.connErrors.Add(1)
		return fmt.Errorf("%w: waiting for the confirm: %w", ErrUnconfirmed, ctx.Err())
	}
	if !dc.Acked() {
		if s.ctx.Err() != nil || p.ch.IsClosed() {
			b.meter.connErrors.Add(1)
			return fmt.Errorf("%w: the connection was lost before the confirm", ErrUnconfirmed)
		}
		b.meter.errorReplies.Add(1)
		return fmt.Errorf("%w: the broker refused the message (negative confirm)", ErrUnconfirmed)
	}
	if p.claimReturn(msg.MessageId) {
		b.meter.errorReplies.Add(1)
		return fmt.Errorf("%w: the broker returned the message as unroutable (exchange %q, key %q): is the topology intact?", ErrUnconfirmed, exchange, key)
	}
	b.meter.answer(time.Since(start))
	return nil
}

// claimReturn reports whether a message of this id was returned (and
// forgets one such return). A return reaches p.returns before the confirm
// of the same message is processed, so draining here after the confirm
// sees it.
func (p *pubChan) claimReturn(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		select {
		case r, ok := <-p.returns:
			if ok {
				p.returned[r.MessageId]++
				continue
			}
		default:
		}
		break
	}
	if p.returned[id] > 0 {
		p.returned[id]--
		if p.returned[id] == 0 {
			delete(p.returned, id)
		}
		return true
	}
	return false
}
