package messaging

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// Policy is how one actor type's messages are retried.
type Policy struct {
	// MaxRetries is how many times a failed delivery is tried again: a
	// message whose handler always fails is delivered 1+MaxRetries times,
	// then dead-lettered.
	MaxRetries int
	// InitialBackoff is the wait before the first retry; each retry
	// doubles it, up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Jitter spreads each wait by ±Jitter of itself (0 to 1).
	Jitter float64
}

// DefaultPolicy: 3 retries, 100 ms doubling to at most 30 s, ±20 %.
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

// Outcomes of a delivery, as Observer.Delivered reports them.
const (
	OutcomeOK          = "ok"          // applied and acknowledged
	OutcomeRetry       = "retry"       // the handler failed; retried later
	OutcomeDead        = "dead"        // dead-lettered
	OutcomeSettled     = "settled"     // already acknowledged elsewhere: nothing applied
	OutcomeUnavailable = "unavailable" // not delivered (owner unreachable...): not an attempt
)

// Observer is told about deliveries (metrics, traces). Methods are called
// from the dispatcher's workers and must be safe for concurrent use.
type Observer interface {
	// StartDelivery starts the span of one delivery, linked to the
	// sender's trace (msg.TraceParent); end receives the outcome.
	StartDelivery(ctx context.Context, msg queue.Message) (context.Context, func(outcome string, err error))
	// Delivered reports a delivery's outcome; latency is from acceptance
	// (or release) to the outcome.
	Delivered(actorType, outcome string, latency time.Duration)
}

// Invoker runs a call on an actor wherever it lives; runtime.Runtime
// implements it (its Invoke routes to the owner).
type Invoker interface {
	Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error)
}

// Options configure a Dispatcher.
type Options struct {
	Store   queue.Store
	Invoker Invoker
	// Responsible reports whether this node delivers actor's messages:
	// the ring places the actor here, or it is active here. nil: every
	// actor (a single node).
	Responsible func(actor string) bool
	// Policy returns an actor type's retry policy; nil: DefaultPolicy.
	Policy func(actorType string) Policy
	// Workers is how many actors are delivered to at once; 0 means 32.
	Workers int
	// Batch is how many messages are read per look at a queue; 0 means 32.
	Batch int
	// ScanInterval is how often the store is scanned for actors with
	// work, besides notifications; 0 means 1 s.
	ScanInterval time.Duration
	// CallTimeout bounds one delivery; 0 means 30 s.
	CallTimeout time.Duration
	// UnavailableRetry is the wait after a delivery that could not reach
	// the actor (not an attempt); 0 means 250 ms.
	UnavailableRetry time.Duration
	Observer         Observer
	Logger           *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Dispatcher delivers the messages of the actors this node is responsible
// for. See the package documentation.
type Dispatcher struct {
	o   Options
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond
	ready    []string             // actors to process, in order
	state    map[string]*actorRun // actors ready, running or timed
	timers   timerHeap
	kick     chan struct{} // the earliest timer changed
	rescan   chan struct{} // Rescan was called
	inflight int
	closed   bool
}

// actorRun is the dispatcher's bookkeeping of one actor.
type actorRun struct {
	queued  bool      // in ready
	running bool      // a worker has it
	again   bool      // woken while running: process once more
	at      time.Time // the earliest timer set for it; zero: none
}

// New returns a Dispatcher; Start starts it.
func New(o Options) (*Dispatcher, error) {
	if o.Store == nil || o.Invoker == nil {
		return nil, errors.New("messaging: Options.Store and Options.Invoker are required")
	}
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.UnavailableRetry <= 0 {
		o.UnavailableRetry = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Responsible == nil {
		o.Responsible = func(string) bool { return true }
	}
	if o.Policy == nil {
		o.Policy = func(string) Policy { return DefaultPolicy() }
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{o: o, log: log, state: map[string]*actorRun{}, kick: make(chan struct{}, 1), rescan: make(chan struct{}, 1)}
	d.cond = sync.NewCond(&d.mu)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d, nil
}

// Start starts the workers, the timer and the scanner. If the store is a
// queue.Notifier, its notifications wake the dispatcher.
func (d *Dispatcher) Start() {
	if n, ok := d.o.Store.(queue.Notifier); ok {
		n.Notify(d.Wake)
	}
	for range d.o.Workers {
		d.wg.Go(d.worker)
	}
	d.wg.Go(d.timerLoop)
	d.wg.Go(d.scanLoop)
}

// Close stops the dispatcher and waits for the deliveries in progress. It
// may be called more than once.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// InFlight is the number of deliveries in progress.
func (d *Dispatcher) InFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight
}

// Wake tells the dispatcher that actor has something to deliver or release
// at at (now or earlier: at once). It does not block.
func (d *Dispatcher) Wake(actor string, at time.Time) {
	if !d.o.Responsible(actor) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if !at.After(d.o.Now()) {
		d.readyLocked(actor)
		return
	}
	r := d.run(actor)
	if !r.at.IsZero() && !at.Before(r.at) {
		return // an earlier timer is set
	}
	r.at = at
	heap.Push(&d.timers, timer{at: at, actor: actor})
	if d.timers[0].actor == actor && d.timers[0].at.Equal(at) {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// Rescan looks for work in the whole store at once (the node calls it
// when membership changes: the actors this node is responsible for
// change).
func (d *Dispatcher) Rescan() {
	select {
	case d.rescan <- struct{}{}:
	default: // one is pending already
	}
}

func (d *Dispatcher) run(actor string) *actorRun {
	r := d.state[actor]
	if r == nil {
		r = &actorRun{}
		d.state[actor] = r
	}
	return r
}

// readyLocked puts actor in the ready list (or marks a running one to run
// again). d.mu is held.
func (d *Dispatcher) readyLocked(actor string) {
	r := d.run(actor)
	switch {
	case r.running:
		r.again = true
	case !r.queued:
		r.queued = true
		d.ready = append(d.ready, actor)
		d.cond.Signal()
	}
}

func (d *Dispatcher) worker() {
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.closed {
			d.cond.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		actor := d.ready[0]
		d.ready[0] = ""
		d.ready = d.ready[1:]
		r := d.run(actor)
		r.queued, r.running, r.again = false, true, false
		d.mu.Unlock()

		d.process(actor)

		d.mu.Lock()
		r.running = false
		if r.again && !d.closed {
			r.queued = true
			d.ready = append(d.ready, actor)
			d.cond.Signal()
		} else if r.at.IsZero() {
			delete(d.state, actor)
		}
		d.mu.Unlock()
	}
}

// timerLoop moves actors whose timer is due to the ready list.
func (d *Dispatcher) timerLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.mu.Lock()
		now := d.o.Now()
		for len(d.timers) > 0 && !d.timers[0].at.After(now) {
			tm := heap.Pop(&d.timers).(timer)
			if r := d.state[tm.actor]; r != nil && r.at.Equal(tm.at) {
				r.at = time.Time{}
				d.readyLocked(tm.actor)
			}
		}
		wait := time.Hour
		if len(d.timers) > 0 {
			wait = d.timers[0].at.Sub(now)
		}
		d.mu.Unlock()
		t.Reset(wait)
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		case <-t.C:
		}
	}
}

func (d *Dispatcher) scanLoop() {
	d.scan()
	t := time.NewTicker(d.o.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		case <-d.rescan:
		}
		d.scan()
	}
}

// scanLimit bounds the actors one scan wakes.
const scanLimit = 10000

// scan wakes every actor with work due before the next scan.
func (d *Dispatcher) scan() {
	ready, err := d.o.Store.Ready(d.ctx, d.o.Now().Add(d.o.ScanInterval), scanLimit)
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Warn("messaging: scanning queues failed", "err", err)
		}
		return
	}
	for _, r := range ready {
		d.Wake(r.Actor, r.At)
	}
}

// process releases actor's due scheduled messages and reminders, then
// delivers its due messages until none is left or one cannot be.
func (d *Dispatcher) process(actor string) {
	if d.ctx.Err() != nil || !d.o.Responsible(actor) {
		return
	}
	if _, err := d.o.Store.Release(d.ctx, actor, d.o.Now()); err != nil {
		d.retryLater(actor, "releasing scheduled messages", err)
		return
	}
	for d.ctx.Err() == nil {
		msgs, err := d.o.Store.Due(d.ctx, actor, d.o.Now(), d.o.Batch)
		if err != nil {
			d.retryLater(actor, "reading the queue", err)
			return
		}
		progress := false
		for _, m := range msgs {
			switch d.deliver(m) {
			case OutcomeUnavailable:
				return // retryLater was called
			case OutcomeRetry:
				if m.Ordered {
					return // it blocks the ordered messages behind it
				}
				progress = true
			case OutcomeSettled:
				// Acknowledged already: this replica of the store may
				// lag behind the acknowledgement.
			default:
				progress = true
			}
		}
		if len(msgs) < d.o.Batch {
			return
		}
		if !progress {
			d.retryLater(actor, "reading the queue", errors.New("every message read was settled already"))
			return
		}
	}
}

// retryLater wakes actor again after UnavailableRetry.
func (d *Dispatcher) retryLater(actor, what string, err error) {
	if d.ctx.Err() != nil {
		return
	}
	d.log.Debug("messaging: will retry", "actor", actor, "what", what, "err", err)
	d.Wake(actor, d.o.Now().Add(d.o.UnavailableRetry))
}

// deliver runs one message as a turn of its actor and records the outcome.
func (d *Dispatcher) deliver(m queue.Message) (outcome string) {
	typ, id, _ := strings.Cut(m.Actor, "/")
	d.mu.Lock()
	d.inflight++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inflight--
		d.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(d.ctx, d.o.CallTimeout)
	defer cancel()
	ctx = runtime.WithCorrelationID(ctx, m.CorrelationID)
	ctx = runtime.WithDelivery(ctx, m.ID, m.Attempts, m.Headers)
	end := func(string, error) {}
	if d.o.Observer != nil {
		ctx, end = d.o.Observer.StartDelivery(ctx, m)
	}
	_, err := d.o.Invoker.Invoke(ctx, typ, id, m.Method, m.Payload)
	outcome = d.settle(m, err)
	end(outcome, err)
	if d.o.Observer != nil {
		since := m.NextAt
		if since.IsZero() || since.Before(m.AcceptedAt) {
			since = m.AcceptedAt
		}
		d.o.Observer.Delivered(typ, outcome, d.o.Now().Sub(since))
	}
	return outcome
}

// settle records the outcome of a delivery that returned err.
func (d *Dispatcher) settle(m queue.Message, err error) string {
	if err == nil {
		return OutcomeOK
	}
	typ, _, _ := strings.Cut(m.Actor, "/")
	now := d.o.Now()
	f := queue.Failure{Actor: m.Actor, ID: m.ID, Attempts: m.Attempts, Reason: err.Error(), At: now}
	var serr error
	outcome := OutcomeRetry
	switch Classify(err) {
	case Settled:
		return OutcomeSettled
	case Unavailable:
		d.retryLater(m.Actor, "delivering "+m.ID, err)
		return OutcomeUnavailable
	case Permanent:
		outcome = OutcomeDead
	case Failed:
		p := d.o.Policy(typ)
		if int(m.Attempts) >= p.MaxRetries {
			outcome = OutcomeDead
			break
		}
		f.RetryAt = now.Add(jitter(p.Backoff(m.Attempts+1), p.Jitter))
	}
	if outcome == OutcomeDead {
		serr = d.o.Store.DeadLetter(d.ctx, f)
	} else {
		serr = d.o.Store.Retry(d.ctx, f)
	}
	switch {
	case errors.Is(serr, queue.ErrNotFound), errors.Is(serr, queue.ErrStale):
		return OutcomeSettled // another delivery recorded it first
	case serr != nil:
		d.retryLater(m.Actor, "recording a failed delivery", serr)
		return OutcomeUnavailable
	}
	if outcome == OutcomeRetry {
		d.Wake(m.Actor, f.RetryAt)
	} else {
		d.log.Warn("messaging: message dead-lettered", "actor", m.Actor, "id", m.ID, "method", m.Method, "attempts", m.Attempts+1, "err", err)
	}
	return outcome
}

// Class is what a delivery's error means for its message.
type Class int

const (
	// Failed: the handler failed (an error or a panic): an attempt,
	// retried after the policy's backoff, dead-lettered after the last.
	Failed Class = iota
	// Permanent: it can never succeed (an unknown actor type or method,
	// an argument that does not decode): dead-letter it now.
	Permanent
	// Settled: the message was applied (acknowledged) before; nothing
	// was applied now, and it is done.
	Settled
	// Unavailable: the delivery did not reach a turn (the owner is
	// unreachable, shutting down, overloaded): not an attempt; try again
	// later.
	Unavailable
)

// Classify sorts a delivery's error by the error table's code. A nil
// error is not classified: the delivery succeeded.
func Classify(err error) Class {
	switch errclass.Of(err).Code {
	case "message_settled":
		return Settled
	case "unknown_type", "unknown_method", "bad_payload", "payload_too_large", "invalid_id", "invalid_argument":
		return Permanent
	case "method_error", "actor_panic", "call_cycle", "call_chain_too_deep":
		return Failed
	}
	return Unavailable
}

// jitter spreads d by ±f of itself.
func jitter(d time.Duration, f float64) time.Duration {
	if f <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + f*(2*rand.Float64()-1)))
}

type timer struct {
	at    time.Time
	actor string
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
