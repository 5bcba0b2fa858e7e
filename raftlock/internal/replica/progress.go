package replica

import (
	"context"
	"sync"
)

// Progress tracks what a state machine has applied: the index of the last
// entry, the state machine's clock, and the failure that stopped it. The
// FSM goroutine advances it (Set, Fail); an FSM answers FSM.Progress and
// FSM.WaitApplied from it (Get, Wait). The zero value is ready to use.
type Progress struct {
	mu       sync.Mutex
	applied  uint64
	clock    int64
	failed   error
	advanced chan struct{} // closed and replaced whenever applied advances or failed is set
}

// wakeLocked wakes the waiters. The caller holds mu.
func (p *Progress) wakeLocked() {
	if p.advanced != nil {
		close(p.advanced)
	}
	p.advanced = make(chan struct{})
}

// Set publishes that the entries up to applied have been applied, and the
// clock they left, and wakes the waiters.
func (p *Progress) Set(applied uint64, clock int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied, p.clock = applied, clock
	p.wakeLocked()
}

// Fail records that the state machine failed (the first failure wins),
// wakes the waiters and returns the recorded failure; first reports
// whether it is err.
func (p *Progress) Fail(err error) (recorded error, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		p.failed, first = err, true
		p.wakeLocked()
	}
	return p.failed, first
}

// Get returns the applied index, the clock and the failure, if any.
func (p *Progress) Get() (applied uint64, clock int64, failed error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied, p.clock, p.failed
}

// Wait blocks until index has been applied (nil), the state machine fails
// (its failure), ctx ends (ctx.Err()) or stop is closed (stopped).
func (p *Progress) Wait(ctx context.Context, index uint64, stop <-chan struct{}, stopped error) error {
	for {
		p.mu.Lock()
		if p.advanced == nil {
			p.advanced = make(chan struct{})
		}
		applied, failed, advanced := p.applied, p.failed, p.advanced
		p.mu.Unlock()
		switch {
		case applied >= index:
			return nil
		case failed != nil:
			return failed
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return stopped
		}
	}
}
