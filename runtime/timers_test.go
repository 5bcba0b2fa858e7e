package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
)

// ticker sets a timer that counts its ticks in State and reports each.
type ticker struct{}

var (
	tickerTicks chan int // set by each test
	Ticker      = runtime.NewType("ticker", func(string) *ticker { return &ticker{} })
	TickerStart = runtime.AddMethod(Ticker, "start", func(ctx runtime.Context, _ *ticker, period time.Duration) (int, error) {
		ctx.SetTimer("tick", period, period, func(ctx runtime.Context) error {
			n, _, err := runtime.GetState[int](ctx.State(), "ticks")
			if err != nil {
				return err
			}
			n++
			if err := runtime.SetState(ctx.State(), "ticks", n); err != nil {
				return err
			}
			tickerTicks <- n
			return nil
		})
		return 0, nil
	})
	TickerStop = runtime.AddMethod0(Ticker, "stop", func(ctx runtime.Context, _ *ticker) (int, error) {
		ctx.CancelTimer("tick")
		n, _, err := runtime.GetState[int](ctx.State(), "ticks")
		return n, err
	})
	TickerTicks = runtime.AddMethod0(Ticker, "ticks", func(ctx runtime.Context, _ *ticker) (int, error) {
		n, _, err := runtime.GetState[int](ctx.State(), "ticks")
		return n, err
	})
)

func TestTimerTicksAsTurnsUntilCancelled(t *testing.T) {
	tickerTicks = make(chan int, 100)
	e := newEnv(t, []runtime.Definition{Ticker})
	ctx := context.Background()
	if _, err := TickerStart.Call(ctx, e.rt, "t1", 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 3; want++ {
		if got := <-tickerTicks; got != want {
			t.Fatalf("tick %d, want %d", got, want)
		}
	}
	n, err := TickerStop.Call(ctx, e.rt, "t1")
	if err != nil || n < 3 {
		t.Fatalf("stop: %d, %v", n, err)
	}
	// Each tick was a committed turn: the count survives a restart.
	e.restart([]runtime.Definition{Ticker})
	if got, err := TickerTicks.Call(ctx, e.rt, "t1"); err != nil || got != n {
		t.Errorf("ticks after a restart: %d, %v; want %d", got, err, n)
	}
	// Cancelled: no tick after stop (a tick in flight when it was
	// cancelled was already counted in n).
	select {
	case extra := <-tickerTicks:
		if extra > n {
			t.Errorf("tick %d after the timer was cancelled at %d", extra, n)
		}
	case <-time.After(50 * time.Millisecond):
	}
}

func TestTimerStopsAtDeactivationAndKeepsNothingAlive(t *testing.T) {
	tickerTicks = make(chan int, 100)
	e := newEnv(t, []runtime.Definition{Ticker}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig { return runtime.PoolConfig{MaxSize: 10, IdleTimeout: time.Minute} }
	})
	ctx := context.Background()
	if _, err := TickerStart.Call(ctx, e.rt, "t2", 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	<-tickerTicks
	<-tickerTicks
	// Ticks are not use: a minute after the last call the actor is idle,
	// however often its timer fired.
	e.clock.Advance(2 * time.Minute)
	e.rt.SweepIdle()
	if e.rt.IsActive("ticker", "t2") {
		t.Fatal("the ticking actor is still active after its idle timeout")
	}
	// Drain what fired before the deactivation; then nothing more comes.
	last := 0
	for drained := false; !drained; {
		select {
		case last = <-tickerTicks:
		case <-time.After(30 * time.Millisecond):
			drained = true
		}
	}
	select {
	case n := <-tickerTicks:
		t.Errorf("tick %d after the actor was deactivated (last before: %d)", n, last)
	case <-time.After(50 * time.Millisecond):
	}
}
