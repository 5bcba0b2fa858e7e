package transport

import (
	"context"
	"fmt"
	"sync"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// mux multiplexes calls to one address on one bidirectional stream. Callers
// queue requests; the sender goroutine writes everything queued as one
// batch; the receiver goroutine hands each result to its caller by call id.
// When the stream breaks, calls already written fail with
// ErrUnknownOutcome, queued ones with ErrUnavailable (never sent), and the
// next call opens a new stream.
type mux struct {
	addr   string
	cancel context.CancelFunc

	mu      sync.Mutex
	nextID  uint64
	queue   []*pending
	wake    chan struct{} // capacity 1: the sender has work
	waiting map[uint64]*pending
	err     error // set once the stream is broken
	done    chan struct{}
}

type pending struct {
	req  *loompb.InvokeRequest
	sent bool
	res  chan result // capacity 1
}

type result struct {
	payload []byte
	err     error
}

// mux returns the address's live stream, opening one if needed.
func (p *Pool) mux(addr string) (*mux, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if m := p.muxes[addr]; m != nil && m.alive() {
		p.mu.Unlock()
		return m, nil
	}
	p.mu.Unlock()

	conn, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := loompb.NewActorsClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: opening a call stream to %s: %v", runtime.ErrUnavailable, addr, err)
	}
	m := &mux{addr: addr, cancel: cancel, wake: make(chan struct{}, 1), waiting: map[uint64]*pending{}, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	if old := p.muxes[addr]; old != nil && old.alive() {
		p.mu.Unlock()
		cancel() // another caller opened one meanwhile
		return old, nil
	}
	p.muxes[addr] = m
	p.mu.Unlock()
	go m.send(stream)
	go m.receive(stream)
	return m, nil
}

func (m *mux) alive() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err == nil
}

func (m *mux) invoke(ctx context.Context, req *loompb.InvokeRequest) ([]byte, error) {
	pd := &pending{req: req, res: make(chan result, 1)}
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, m.addr, err)
	}
	m.nextID++
	req.CallId = m.nextID
	m.waiting[req.CallId] = pd
	m.queue = append(m.queue, pd)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	select {
	case r := <-pd.res:
		return r.payload, r.err
	case <-ctx.Done():
		m.mu.Lock()
		delete(m.waiting, req.CallId)
		sent := pd.sent
		m.mu.Unlock()
		if sent {
			return nil, fmt.Errorf("transport: call to %s sent, stopped waiting: %w", m.addr, ctx.Err())
		}
		return nil, ctx.Err()
	}
}

// send is the sender goroutine.
func (m *mux) send(stream loompb.Actors_StreamClient) {
	for {
		select {
		case <-m.wake:
		case <-m.done:
			return
		}
		m.mu.Lock()
		if m.err != nil {
			m.mu.Unlock()
			return
		}
		batch := &loompb.InvokeBatch{Calls: make([]*loompb.InvokeRequest, 0, len(m.queue))}
		for _, pd := range m.queue {
			if _, live := m.waiting[pd.req.CallId]; !live {
				continue // its caller gave up before it was sent
			}
			pd.sent = true
			batch.Calls = append(batch.Calls, pd.req)
		}
		clear(m.queue)
		m.queue = m.queue[:0]
		m.mu.Unlock()
		if len(batch.Calls) == 0 {
			continue
		}
		if err := stream.Send(batch); err != nil {
			m.fail(err)
			return
		}
	}
}

// receive is the receiver goroutine.
func (m *mux) receive(stream loompb.Actors_StreamClient) {
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
				continue
			}
			delete(m.waiting, r.CallId)
			if r.Error != nil {
				pd.res <- result{err: DecodeError(r.Error)}
			} else {
				pd.res <- result{payload: r.Payload}
			}
		}
		m.mu.Unlock()
	}
}

// fail breaks the stream: sent calls get ErrUnknownOutcome, unsent ones
// ErrUnavailable.
func (m *mux) fail(cause error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = cause
	waiting := m.waiting
	m.waiting = map[uint64]*pending{}
	m.queue = nil
	close(m.done)
	m.mu.Unlock()
	m.cancel()
	for _, pd := range waiting {
		if pd.sent {
			pd.res <- result{err: fmt.Errorf("%w: %s: %v", ErrUnknownOutcome, m.addr, cause)}
		} else {
			pd.res <- result{err: fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, m.addr, cause)}
		}
	}
}

func (m *mux) close(cause error) { m.fail(cause) }
