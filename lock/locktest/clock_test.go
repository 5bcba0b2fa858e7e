package locktest_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock/locktest"
)

func TestFakeClock(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := locktest.NewFakeClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v; want %v", c.Now(), start)
	}
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(time.Second, at("a2")) // same instant: registration order
	stopB := c.AfterFunc(2*time.Second, at("b"))
	c.AfterFunc(0, func() { // due now: runs on the next Advance, and can add more
		at("now")()
		c.AfterFunc(500*time.Millisecond, at("chained"))
	})
	if !stopB() || stopB() {
		t.Fatal("stop: want true once, then false")
	}
	if c.Pending() != 4 {
		t.Fatalf("Pending = %d; want 4", c.Pending())
	}
	c.Advance(2 * time.Second)
	c.Advance(time.Second)
	want := []string{"now@0s", "chained@500ms", "a@1s", "a2@1s", "c@3s"}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v; want %v", got, want)
	}
	if c.Pending() != 0 || !c.Now().Equal(start.Add(3*time.Second)) {
		t.Fatalf("Pending = %d, Now = +%v", c.Pending(), c.Now().Sub(start))
	}
}

func TestFakeClockWaitPending(t *testing.T) {
	c := locktest.NewFakeClock(time.Time{})
	var wg sync.WaitGroup
	wg.Go(func() { c.AfterFunc(time.Second, func() {}) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	short, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := c.WaitPending(short, 2); err == nil {
		t.Fatal("WaitPending returned nil for a count never reached")
	}
}

// A callback that advances the clock itself (a slow request in a test
// double) never makes the clock go back.
func TestFakeClockNeverGoesBack(t *testing.T) {
	c := locktest.NewFakeClock(time.Time{})
	start := c.Now()
	c.AfterFunc(time.Second, func() { c.Advance(5 * time.Second) })
	c.Advance(2 * time.Second)
	if got := c.Now().Sub(start); got != 6*time.Second {
		t.Fatalf("Now = +%v; want +6s", got)
	}
}
