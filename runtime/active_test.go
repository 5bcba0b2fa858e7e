package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
)

// TestActivationInfo: an active actor reports when it was activated and
// last used, on the runtime's clock; an inactive one or an unknown type
// reports nothing.
func TestActivationInfo(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Ticker})
	ctx := context.Background()
	if _, ok := e.rt.Activation("ticker", "a"); ok {
		t.Fatal("an actor never called is reported active")
	}
	t0 := e.clock.Now()
	if _, err := TickerTicks.Call(ctx, e.rt, "a"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := TickerTicks.Call(ctx, e.rt, "a"); err != nil {
		t.Fatal(err)
	}
	info, ok := e.rt.Activation("ticker", "a")
	if !ok {
		t.Fatal("no activation info for an active actor")
	}
	if !info.ActivatedAt.Equal(t0) || !info.LastUsed.Equal(t0.Add(time.Minute)) || info.Waiting != 0 {
		t.Fatalf("info %+v; want activated at %v, last used a minute later", info, t0)
	}
	if _, ok := e.rt.Activation("nope", "a"); ok {
		t.Fatal("an unknown type is reported active")
	}
	if err := e.rt.Deactivate(ctx, "ticker", "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.rt.Activation("ticker", "a"); ok {
		t.Fatal("a deactivated actor is reported active")
	}
}
