package replica

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestProgressWait: Wait returns once the index is applied, on a failure
// (the first one), when ctx ends and when stop is closed.
func TestProgressWait(t *testing.T) {
	t.Parallel()
	var p Progress
	ctx := t.Context()
	go p.Set(3, 7)
	if err := p.Wait(ctx, 3, nil, ErrClosed); err != nil {
		t.Fatalf("Wait for an applied index: %v", err)
	}
	if applied, clock, failed := p.Get(); applied != 3 || clock != 7 || failed != nil {
		t.Fatalf("Get = %d, %d, %v", applied, clock, failed)
	}
	stop := make(chan struct{})
	close(stop)
	if err := p.Wait(ctx, 4, stop, ErrClosed); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after stop: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := p.Wait(short, 4, nil, ErrClosed); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline: %v", err)
	}
	boom, other := errors.New("boom"), errors.New("other")
	go p.Fail(boom)
	if err := p.Wait(ctx, 4, nil, ErrClosed); err != boom {
		t.Fatalf("Wait after a failure: %v", err)
	}
	if rec, first := p.Fail(other); rec != boom || first {
		t.Fatalf("second Fail = %v, %v; want the first failure", rec, first)
	}
}
