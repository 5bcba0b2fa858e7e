package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/queue"
)

// Sentinel errors. They are wrapped with %w; test with errors.Is.
var (
	// ErrUnavailable: the broker could not be reached (no connection, or
	// the connection is being re-established): nothing was sent.
	ErrUnavailable = errors.New("rabbitmq: broker unavailable")
	// ErrUnconfirmed: the message was sent but the broker did not confirm
	// it (the connection was lost while waiting, the broker refused it
	// with a negative confirm, it was returned as unroutable, or ctx
	// ended): it may or may not have been stored. Publishing it again
	// with the same id is safe: the journal applies an id once.
	ErrUnconfirmed = errors.New("rabbitmq: publish not confirmed")
	// ErrClosed: the Broker has been closed.
	ErrClosed = errors.New("rabbitmq: closed")
)

// Policy is how one actor type's failed deliveries are retried.
type Policy struct {
	// Ordered is the default mode of the type's messages; Publish uses
	// the message's own Ordered flag, so the node decides with it.
	Ordered bool
	// MaxRetries: a message whose handler always fails is delivered
	// 1+MaxRetries times, then dead-lettered.
	MaxRetries int
	// InitialBackoff is the wait before the first retry; each retry
	// doubles it, up to MaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// Jitter spreads each wait by ±Jitter of itself (0 to 1).
	Jitter float64
}

// DefaultPolicy: 3 retries, 100 ms doubling to at most 30 s, ±20 %, the
// same as messaging.DefaultPolicy.
func DefaultPolicy() Policy {
	return Policy{MaxRetries: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second, Jitter: 0.2}
}

// Backoff is the wait before the retry that follows failed delivery number
// attempt (1 for the first failure), before jitter.
func (p Policy) Backoff(attempt uint32) time.Duration {
	d := p.InitialBackoff
	for i := uint32(1); i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// Class is what a delivery's outcome means; Options.Classify maps a
// handler's error to one.
type Class int

const (
	// Done: applied, or applied already (the journal knows the id): ack.
	Done Class = iota
	// Failed: an attempt failed: retried with backoff, dead-lettered after
	// Policy.MaxRetries retries.
	Failed
	// Permanent: it can never succeed: dead-lettered at once.
	Permanent
	// Unavailable: not delivered (the owner was unreachable...), not an
	// attempt: delivered again after Options.UnavailableRetry.
	Unavailable
)

func (c Class) String() string {
	switch c {
	case Done:
		return "done"
	case Failed:
		return "failed"
	case Permanent:
		return "permanent"
	case Unavailable:
		return "unavailable"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Handler delivers one message: it runs the message as a turn of its
// actor. It returns nil when the turn's journal append recorded the
// message id, or the journal says the id was applied already. It is
// called from several goroutines at once (never for two messages of one
// fifo queue at once). ctx ends when the Broker is closed.
type Handler func(ctx context.Context, m queue.Message) error

// Options configure a Broker. The zero value of each field but URL means
// its default.
type Options struct {
	// URL of the broker: amqp://user:pass@host:port/vhost. The password is
	// never logged nor put in an error.
	URL string
	// TLS configures an amqps:// connection; nil: amqp091's defaults
	// (the system's roots, or the URL's certfile/keyfile/cacertfile).
	TLS *tls.Config
	// Prefix of every exchange and queue name; default "loom". Brokers
	// that share a virtual host and a prefix share the queues.
	Prefix string
	// FIFOQueues is how many single-active-consumer queues the ordered
	// actors are hashed onto (FNV-1a of the actor key); default 8. Every
	// node must use the same value; changing it moves actors between
	// queues, so drain the fifo queues first.
	FIFOQueues int
	// Prefetch is how many deliveries of the shared (unordered) queue this
	// node holds unacknowledged, and so handles at once; default 32.
	Prefetch int
	// DeliveryLimit is the quorum queues' x-delivery-limit: a message
	// returned to its queue this many times without an outcome (its
	// consumer died, or its channel closed, while holding it) is
	// dead-lettered by the broker; default 20. It guards against a
	// message that crashes its node.
	DeliveryLimit int
	// MaxDelay is the longest rung of the delay ladder (see the package
	// documentation); default 1 h. A longer delay takes several rungs.
	MaxDelay time.Duration
	// Policy returns an actor type's retry policy; nil: DefaultPolicy.
	Policy func(actorType string) Policy
	// Classify maps a handler's error (never nil) to a Class; nil: every
	// error is Failed.
	Classify func(err error) Class
	// UnavailableRetry is the wait after an Unavailable delivery; default
	// 250 ms.
	UnavailableRetry time.Duration
	// ReconnectMin and ReconnectMax bound the wait between reconnection
	// attempts (doubling, ±20 %); default 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger; nil: discard.
	Logger *slog.Logger
	// Now is the clock that stamps messages and decides when they are
	// due; nil: time.Now.
	Now func() time.Time
}

// Validate reports every problem with o (it fills in nothing).
func (o Options) Validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("URL is required"))
	} else if _, err := amqp.ParseURI(o.URL); err != nil {
		errs = append(errs, fmt.Errorf("URL: %s", redactString(err.Error(), o.URL)))
	}
	if strings.ContainsAny(o.Prefix, " \t\n") {
		errs = append(errs, fmt.Errorf("Prefix %q has white space", o.Prefix))
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"FIFOQueues", o.FIFOQueues}, {"Prefetch", o.Prefetch}, {"DeliveryLimit", o.DeliveryLimit}} {
		if c.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", c.name, c.v))
		}
	}
	if o.FIFOQueues > 1024 {
		errs = append(errs, fmt.Errorf("FIFOQueues %d is over 1024", o.FIFOQueues))
	}
	if o.Prefetch > 65535 {
		errs = append(errs, fmt.Errorf("Prefetch %d is over 65535", o.Prefetch))
	}
	for _, c := range []struct {
		name string
		v    time.Duration
	}{{"MaxDelay", o.MaxDelay}, {"UnavailableRetry", o.UnavailableRetry}, {"ReconnectMin", o.ReconnectMin}, {"ReconnectMax", o.ReconnectMax}} {
		if c.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", c.name, c.v))
		}
	}
	if o.MaxDelay != 0 && o.MaxDelay < minRung {
		errs = append(errs, fmt.Errorf("MaxDelay %v is under the shortest rung, %v", o.MaxDelay, minRung))
	}
	if len(errs) > 0 {
		return fmt.Errorf("rabbitmq: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// DefaultOptions returns the options Open uses for the fields left zero
// (URL excepted): prefix "loom", 8 fifo queues, prefetch 32, delivery
// limit 20, ladder up to 1 h (16 rungs), DefaultPolicy for every type,
// every error Failed, 250 ms after an Unavailable delivery, reconnection
// every 100 ms doubling to 5 s.
func DefaultOptions() Options {
	var o Options
	o.defaults()
	o.Logger, o.Now = nil, nil // discard, time.Now
	return o
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "loom"
	}
	if o.FIFOQueues == 0 {
		o.FIFOQueues = 8
	}
	if o.Prefetch == 0 {
		o.Prefetch = 32
	}
	if o.DeliveryLimit == 0 {
		o.DeliveryLimit = 20
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = time.Hour
	}
	if o.Policy == nil {
		o.Policy = func(string) Policy { return DefaultPolicy() }
	}
	if o.Classify == nil {
		o.Classify = func(error) Class { return Failed }
	}
	if o.UnavailableRetry == 0 {
		o.UnavailableRetry = 250 * time.Millisecond
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 5 * time.Second
	}
	o.ReconnectMax = max(o.ReconnectMax, o.ReconnectMin)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Broker is a connection to RabbitMQ that publishes, consumes and manages
// Loom's durable messages. See the package documentation. It is safe for
// concurrent use.
type Broker struct {
	o      Options
	log    *slog.Logger
	topo   topology
	where  string // host:port/vhost, without credentials, for logs
	meter  Meter
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor, consumers and deliveries

	mu       sync.Mutex
	sess     *session // nil while disconnected
	handler  Handler
	closed   bool
	inflight int

	deadMu sync.Mutex // one dead-letter scan at a time
}

// Open connects to the broker, declares the topology (idempotently) and
// starts the goroutine that reconnects after a connection loss. It fails
// with ErrUnavailable when the first connection cannot be made, and with a
// broker error when the topology exists with other arguments (another
// DeliveryLimit, MaxDelay or FIFOQueues under the same Prefix).
func Open(ctx context.Context, o Options) (*Broker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	uri, _ := amqp.ParseURI(o.URL)
	b := &Broker{o: o, log: o.Logger, topo: newTopology(o),
		where: fmt.Sprintf("%s:%d/%s", uri.Host, uri.Port, uri.Vhost)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	s, err := b.connect(ctx)
	if err != nil {
		b.cancel()
		return nil, err
	}
	b.sess = s
	b.wg.Go(func() { b.supervise(s) })
	b.log.Info("rabbitmq: connected", "broker", b.where, "prefix", o.Prefix)
	return b, nil
}

// Close stops consuming, waits for the deliveries in progress (their
// context is cancelled; an unsettled one is redelivered by the broker),
// and closes the connection. It may be called more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	s := b.sess
	b.mu.Unlock()
	b.cancel()
	if !already && s != nil {
		s.close()
	}
	b.wg.Wait()
	return nil
}

// Consume starts delivering the messages of every queue to h, on this
// node, until Close, and again after each reconnection. It may be called
// once.
func (b *Broker) Consume(h Handler) error {
	if h == nil {
		return errors.New("rabbitmq: Consume needs a handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.handler != nil {
		return errors.New("rabbitmq: Consume was called already")
	}
	b.handler = h
	if b.sess != nil {
		b.startConsumers(b.sess)
	}
	return nil
}

// InFlight is the number of deliveries this node holds unsettled.
func (b *Broker) InFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight
}

// MeterStats returns what the Broker has counted since Open.
func (b *Broker) MeterStats() MeterStats { return b.meter.Snapshot() }

// Ping checks that the broker answers: one round trip (a passive declare
// of the dead-letter queue) on a channel of its own.
func (b *Broker) Ping(ctx context.Context) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.withChannel(ctx, &b.meter, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(b.topo.dead, true, false, false, false, b.topo.deadArgs())
		return err
	})
}

// session returns the current session, or ErrUnavailable or ErrClosed.
func (b *Broker) session() (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.sess == nil {
		return nil, fmt.Errorf("%w: reconnecting to %s", ErrUnavailable, b.where)
	}
	return b.sess, nil
}

// supervise waits for the session to end and connects again, with
// backoff, until Close.
func (b *Broker) supervise(s *session) {
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-s.ctx.Done():
		}
		b.mu.Lock()
		if b.sess == s {
			b.sess = nil
		}
		b.mu.Unlock()
		if b.ctx.Err() != nil {
			return
		}
		b.log.Warn("rabbitmq: connection lost; reconnecting", "broker", b.where, "err", s.err())
		wait := b.o.ReconnectMin
		for {
			t := time.NewTimer(jitter(wait, 0.2))
			select {
			case <-b.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			ns, err := b.connect(b.ctx)
			if err == nil {
				b.mu.Lock()
				if b.closed {
					b.mu.Unlock()
					ns.close()
					return
				}
				b.sess = ns
				if b.handler != nil {
					b.startConsumers(ns)
				}
				b.mu.Unlock()
				b.meter.reconnects.Add(1)
				b.log.Info("rabbitmq: reconnected", "broker", b.where)
				s = ns
				break
			}
			b.log.Debug("rabbitmq: reconnect failed", "broker", b.where, "err", err)
			wait = min(wait*2, b.o.ReconnectMax)
		}
	}
}

// redactString removes the password of rawURL from s.
func redactString(s, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return strings.ReplaceAll(s, rawURL, "<url>")
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		s = strings.ReplaceAll(s, pw, "****")
		s = strings.ReplaceAll(s, url.QueryEscape(pw), "****")
	}
	return s
}

// redacted is an error whose text has the password removed; it unwraps to
// the original.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

func (b *Broker) redact(err error) error {
	if err == nil {
		return nil
	}
	return &redacted{msg: redactString(err.Error(), b.o.URL), err: err}
}

// jitter spreads d by ±f of itself.
func jitter(d time.Duration, f float64) time.Duration {
	if f <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + f*(2*rand.Float64()-1)))
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// actorType is the type part of an actor key "type/id".
func actorType(actor string) string {
	t, _, _ := strings.Cut(actor, "/")
	return t
}
