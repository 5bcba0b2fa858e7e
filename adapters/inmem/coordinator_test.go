package inmem_test

import (
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

func TestCoordinatorConformance(t *testing.T) {
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		clk := locktest.NewFakeClock(time.Time{})
		return inmem.NewCoordinator(inmem.CoordinatorOptions{Now: clk.Now}), clk.Advance
	})
}

// The real clock works too: sessions live by time.Now.
func TestCoordinatorRealClock(t *testing.T) {
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer c.Close()
	ctx := t.Context()
	s, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Acquire(ctx, s, "k")
	if err != nil || tok == 0 {
		t.Fatalf("Acquire = %d, %v", tok, err)
	}
	if err := c.Renew(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCoordinatorAcquireRelease(b *testing.B) {
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	defer c.Close()
	ctx := b.Context()
	s, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Acquire(ctx, s, "k"); err != nil {
			b.Fatal(err)
		}
		if err := c.Release(ctx, s, "k"); err != nil {
			b.Fatal(err)
		}
	}
}
