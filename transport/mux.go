package transport

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// A mux is one multiplexed call stream to an address. Callers queue
// requests (enqueue); the sender goroutine writes everything queued as one
// InvokeBatch; the receiver goroutine hands each result to its caller by
// call id. A mux goes opening → open → (draining →) broken, never back;
// a broken or draining mux is dropped from its peer's slot and the next
// call opens a new one.
//
// Everything below mu is guarded by mu, and so are the id and state of
// the pendings in waiting.
type mux struct {
	pe     *peer
	slot   int
	cancel context.CancelFunc // the stream's context
	wake   chan struct{}      // capacity 1: the sender has work
	done   chan struct{}      // closed when broken

	mu      sync.Mutex
	phase   phase
	opened  bool  // the stream was opened (else its opening failed)
	err     error // why it broke
	nextID  uint64
	queue   []*pending          // not yet handed to the sender
	cancels []uint64            // call ids to cancel on the server
	waiting map[uint64]*pending // queued, being sent or sent; not answered
}

type phase uint8

const (
	opening  phase = iota // the stream is being opened; calls queue
	open                  // calls are sent as they come
	draining              // the server is stopping: no new calls; half-close once the queue is sent
	broken                // failed or closed
)

// pending is one call waiting for its result.
type pending struct {
	req  *loompb.InvokeRequest
	size int         // approximate encoded size
	res  chan result // capacity 1; exactly one result is ever sent

	abandoned atomic.Bool         // the caller stopped waiting
	m         atomic.Pointer[mux] // the mux it was last queued on
	attempts  int                 // streams it was queued on; owned by whoever holds the pending outside a mux
	id        uint64              // guarded by m.mu
	state     pstate              // guarded by m.mu
}

type pstate uint8

const (
	queued  pstate = iota // not sent; may move to another stream
	sending               // in the batch being written: the sender decides
	sent                  // written: its outcome is unknown until answered
)

type result struct {
	payload  []byte
	accepted *loompb.SendResponse // a send's answer
	err      error
}

// Test hooks, set only by tests while no Pool runs: called by the sender
// before it takes the queue, and after a successful Send.
var testHookBeforeBatch, testHookAfterSend func(*mux)

// maxAttempts bounds how many streams one call is queued on when streams
// keep breaking before it is sent.
const maxAttempts = 3

func (pd *pending) deliver(payload []byte, err error) { pd.res <- result{payload: payload, err: err} }

// callSize approximates a request's encoded size, to bound batches.
func callSize(r *loompb.InvokeRequest) int {
	n := 64 + len(r.Payload) + len(r.ActorType) + len(r.ActorId) + len(r.Method) + len(r.CorrelationId) + len(r.IdempotencyKey)
	if sr := r.Send; sr != nil {
		n += 64 + len(sr.Payload) + len(sr.ActorType) + len(sr.ActorId) + len(sr.Method) + len(sr.MessageId) + len(sr.CorrelationId) + len(sr.TraceParent)
		for k, v := range sr.Headers {
			n += len(k) + len(v) + 8
		}
	}
	for k, v := range r.Trace {
		n += len(k) + len(v) + 8
	}
	for _, a := range r.CallChain {
		n += len(a) + 4
	}
	return n
}

// submit queues pd on one of the peer's streams, opening one if needed.
// If that fails, pd is answered with the error.
func (pe *peer) submit(pd *pending) {
	if pd.attempts >= maxAttempts {
		pd.deliver(nil, fmt.Errorf("%w: %s: call streams keep breaking before the call is sent", runtime.ErrUnavailable, pe.addr))
		return
	}
	pd.attempts++
	for {
		m, err := pe.pick()
		if err != nil {
			pd.deliver(nil, err)
			return
		}
		if m.enqueue(pd) {
			return
		}
		pe.drop(m) // draining or broken: the next pick opens another
	}
}

// pick returns a stream, round robin over the slots, opening one in an
// empty slot.
func (pe *peer) pick() (*mux, error) {
	i := int(pe.rr.Add(1)) % len(pe.slots)
	if m := pe.slots[i].Load(); m != nil {
		return m, nil
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.closed {
		return nil, ErrClosed
	}
	if m := pe.slots[i].Load(); m != nil {
		return m, nil
	}
	p := pe.p
	ctx, cancel := context.WithCancel(p.ctx)
	m := &mux{pe: pe, slot: i, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{}), waiting: map[uint64]*pending{}}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	pe.slots[i].Store(m)
	go m.run(ctx)
	return m, nil
}

// drop empties m's slot if m is still in it.
func (pe *peer) drop(m *mux) {
	pe.slots[m.slot].CompareAndSwap(m, nil)
}

// resubmit queues calls that a broken stream never sent on another stream.
func (pe *peer) resubmit(pds []*pending) {
	for _, pd := range pds {
		if pd.abandoned.Load() {
			continue
		}
		pe.submit(pd)
	}
}

// abandon is called by a caller whose ctx ended before pd was answered:
// an unsent call is withdrawn, a sent one is canceled on the server. It
// returns the answer if one came meanwhile, else the error.
func (pe *peer) abandon(pd *pending, ctxErr error) result {
	pd.abandoned.Store(true)
	wasSent := false
	for {
		m := pd.m.Load()
		if m == nil {
			break
		}
		m.mu.Lock()
		if pd.m.Load() != m {
			m.mu.Unlock()
			continue // moved to another stream meanwhile
		}
		if m.waiting[pd.id] == pd {
			delete(m.waiting, pd.id)
			if pd.state != queued {
				wasSent = true
				if m.phase == open {
					m.cancels = append(m.cancels, pd.id)
					m.signal()
				}
			}
		}
		m.mu.Unlock()
		break
	}
	select {
	case r := <-pd.res: // answered just now after all
		return r
	default:
	}
	if wasSent {
		return result{err: fmt.Errorf("transport: %s: %w: %w", pe.addr, ctxErr, ErrUnknownOutcome)}
	}
	return result{err: fmt.Errorf("transport: %s: %w", pe.addr, &notSentError{ctxErr})}
}

// enqueue queues pd on m; false if m takes no new calls.
func (m *mux) enqueue(pd *pending) bool {
	m.mu.Lock()
	if m.phase >= draining {
		m.mu.Unlock()
		return false
	}
	m.nextID++
	pd.id = m.nextID
	pd.req.CallId = pd.id
	pd.state = queued
	pd.m.Store(m)
	if pd.abandoned.Load() {
		m.mu.Unlock()
		return true // its caller is gone; drop it
	}
	m.waiting[pd.id] = pd
	m.queue = append(m.queue, pd)
	m.mu.Unlock()
	m.signal()
	return true
}

func (m *mux) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// run opens the stream, starts the receiver and then is the sender.
func (m *mux) run(ctx context.Context) {
	p := m.pe.p
	defer p.wg.Done()
	timer := time.AfterFunc(p.opts.ConnectTimeout, m.cancel)
	stream, err := loompb.NewActorsClient(m.pe.conn).Stream(ctx)
	if !timer.Stop() {
		err = fmt.Errorf("no stream within %v (ConnectTimeout)", p.opts.ConnectTimeout)
	}
	if err != nil {
		m.fail(fmt.Errorf("opening a call stream: %w", err))
		return
	}
	m.mu.Lock()
	if m.phase == broken { // closed meanwhile; fail canceled ctx
		m.mu.Unlock()
		return
	}
	m.phase, m.opened = open, true
	p.wg.Add(1) // inside mu: Close waits after fail, which takes mu
	m.mu.Unlock()
	go m.receive(stream)
	m.send(stream)
}

// send is the sender loop: each wake-up writes what is queued (and the
// pending cancellations) as one batch, splitting only at maxBatch calls or
// 3/4 of MaxMessageBytes.
func (m *mux) send(stream loompb.Actors_StreamClient) {
	limit := m.pe.p.maxCallBytes
	var batch []*pending
	for {
		select {
		case <-m.wake:
		case <-m.done:
			return
		}
		// Yield once before taking the queue: the callers that are runnable
		// now (typically woken together by the last batch of results) get
		// to queue their next calls, and they all share this write. Without
		// it the sender, woken by the first of them, sends one call per
		// message. With a single caller it costs nothing.
		goruntime.Gosched()
		for {
			if h := testHookBeforeBatch; h != nil {
				h(m)
			}
			m.mu.Lock()
			if m.phase == broken {
				m.mu.Unlock()
				return
			}
			msg := &loompb.InvokeBatch{Cancel: m.cancels}
			m.cancels = nil
			batch = batch[:0]
			size, n := 0, 0
			for _, pd := range m.queue {
				if len(batch) > 0 && (len(batch) >= maxBatch || size+pd.size > limit) {
					break
				}
				n++
				if m.waiting[pd.id] != pd {
					continue // withdrawn by its caller
				}
				pd.state = sending
				batch = append(batch, pd)
				size += pd.size
			}
			rest := copy(m.queue, m.queue[n:])
			clear(m.queue[rest:])
			m.queue = m.queue[:rest]
			closeSend := m.phase == draining && rest == 0
			m.mu.Unlock()

			if len(batch) > 0 || len(msg.Cancel) > 0 {
				msg.Calls = make([]*loompb.InvokeRequest, len(batch))
				for i, pd := range batch {
					msg.Calls[i] = pd.req
				}
				err := stream.Send(msg)
				if h := testHookAfterSend; h != nil && err == nil {
					h(m)
				}
				if !m.afterSend(batch, err) {
					return
				}
			}
			if closeSend {
				_ = stream.CloseSend()
				return
			}
			if rest == 0 {
				break
			}
		}
	}
}

// afterSend settles the calls of a batch once Send returned: written, or
// (Send failed, so nothing of it was written) back to queued. If the
// stream broke meanwhile, written calls get ErrUnknownOutcome and the
// others go to another stream. It reports whether the sender goes on.
func (m *mux) afterSend(batch []*pending, sendErr error) bool {
	var retry, unknown []*pending
	m.mu.Lock()
	isBroken := m.phase == broken
	cause := m.err
	for _, pd := range batch {
		if m.waiting[pd.id] != pd {
			continue // answered or withdrawn meanwhile
		}
		if sendErr == nil {
			pd.state = sent
		} else {
			pd.state = queued
		}
		if isBroken {
			delete(m.waiting, pd.id)
			if sendErr == nil {
				unknown = append(unknown, pd)
			} else {
				retry = append(retry, pd)
			}
		}
	}
	m.mu.Unlock()
	for _, pd := range unknown {
		pd.deliver(nil, fmt.Errorf("%w: %s: %v", ErrUnknownOutcome, m.pe.addr, cause))
	}
	m.pe.resubmit(retry)
	if sendErr != nil && !isBroken {
		m.fail(sendErr)
	}
	return sendErr == nil && !isBroken
}

// receive is the receiver loop.
func (m *mux) receive(stream loompb.Actors_StreamClient) {
	defer m.pe.p.wg.Done()
	for {
		rb, err := stream.Recv()
		if err != nil {
			m.fail(err)
			return
		}
		m.mu.Lock()
		for _, r := range rb.Results {
			pd := m.waiting[r.CallId]
			if pd == nil {
				continue // its caller gave up
			}
			delete(m.waiting, r.CallId)
			switch {
			case r.Error != nil:
				pd.deliver(nil, DecodeError(r.Error))
			case r.Accepted != nil:
				pd.res <- result{accepted: r.Accepted}
			default:
				pd.deliver(r.Payload, nil)
			}
		}
		drain := rb.Draining && m.phase == open
		if drain {
			m.phase = draining
		}
		m.mu.Unlock()
		if drain {
			m.pe.drop(m)
			m.signal() // the sender sends what is queued, then half-closes
		}
	}
}

// fail breaks the stream: sent calls get ErrUnknownOutcome; queued ones go
// to another stream if this one had opened, or fail with
// runtime.ErrUnavailable if it never did; calls being sent are left to the
// sender (afterSend). A stream the server refused with an error of its
// table that says nothing was applied (a missing token) fails every call
// with that error.
func (m *mux) fail(cause error) {
	m.mu.Lock()
	if m.phase == broken {
		m.mu.Unlock()
		return
	}
	m.phase, m.err = broken, cause
	var retry, unknown []*pending
	for id, pd := range m.waiting {
		switch pd.state {
		case sent:
			unknown = append(unknown, pd)
		case queued:
			retry = append(retry, pd)
		default:
			continue
		}
		delete(m.waiting, id)
	}
	opened := m.opened
	m.queue, m.cancels = nil, nil
	close(m.done)
	m.mu.Unlock()
	m.cancel()
	m.pe.drop(m)

	addr := m.pe.addr
	if refused, ok := fromStatus(cause); ok && !MaybeApplied(refused) {
		// The server refused the stream itself, before reading a call
		// (streamAuth: no token, or not a valid one): no call on it ran,
		// and any other stream would be refused the same.
		for _, pd := range append(unknown, retry...) {
			pd.deliver(nil, refused)
		}
		return
	}
	for _, pd := range unknown {
		pd.deliver(nil, fmt.Errorf("%w: %s: %v", ErrUnknownOutcome, addr, cause))
	}
	if opened && !errors.Is(cause, ErrClosed) {
		m.pe.resubmit(retry)
		return
	}
	err := notSentErr(addr, m.pe.p.explain(cause))
	for _, pd := range retry {
		pd.deliver(nil, err)
	}
}

// notSentErr is the error of a call that never left because of cause.
func notSentErr(addr string, cause error) error {
	if errors.Is(cause, ErrClosed) {
		return ErrClosed
	}
	var tm *tlsMismatch
	if errors.As(cause, &tm) {
		return fmt.Errorf("%w: %s: %w", runtime.ErrUnavailable, addr, tm)
	}
	return fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, addr, cause)
}
