package loomtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/loomtest"
	"github.com/loom-mesh/loom/runtime"
)

// addAll adds delta to counters c0..c(n-1) through the cluster's client.
func addAll(t *testing.T, c *loomtest.Cluster, n int, delta int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		if _, err := builtin.CounterAdd.Call(ctx, c.Client(), fmt.Sprintf("c%d", i), builtin.CounterDelta{Delta: delta}); err != nil {
			t.Fatalf("c%d: %v", i, err)
		}
	}
}

// checkAll checks that counters c0..c(n-1) hold want, through the client.
func checkAll(t *testing.T, c *loomtest.Cluster, n int, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		v, err := builtin.CounterGet.Call(ctx, c.Client(), fmt.Sprintf("c%d", i))
		if err != nil || v.Value != want {
			t.Fatalf("c%d = %d, %v; want %d", i, v.Value, err, want)
		}
	}
}

func TestKillSettleRestart(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{})
	addAll(t, c, 12, 2)
	victim, ok := c.ActiveOn("counter", "c0")
	if !ok {
		t.Fatal("c0 is active nowhere")
	}
	c.Kill(victim)
	c.WaitSettled()
	checkAll(t, c, 12, 2)
	if i, ok := c.ActiveOn("counter", "c0"); !ok || i == victim {
		t.Fatalf("c0 active on %d, %v after the kill of %d", i, ok, victim)
	}
	c.Restart(victim)
	c.WaitSettled()
	addAll(t, c, 12, 1)
	checkAll(t, c, 12, 3)
}

// A graceful stop hands actors off at once: no session to wait for.
func TestStopAndRestart(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{})
	addAll(t, c, 12, 1)
	c.Stop(2)
	c.WaitSettled()
	checkAll(t, c, 12, 1)
	c.Restart(2)
	c.WaitSettled()
	addAll(t, c, 12, 1)
	checkAll(t, c, 12, 2)
}

// Cutting a node's links to both others splits the cluster: the majority
// takes its actors once its session lapses, the node serves nothing, and
// Heal makes the cluster whole again.
func TestPartitionSplitsAndHeals(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{})
	addAll(t, c, 12, 1)
	cut, ok := c.ActiveOn("counter", "c0")
	if !ok {
		t.Fatal("c0 is active nowhere")
	}
	for j := range c.Len() {
		if j != cut {
			c.Partition(cut, j)
		}
	}
	c.WaitSettled()
	ctx := context.Background()
	via := c.Node((cut + 1) % c.Len())
	for i := range 12 {
		id := fmt.Sprintf("c%d", i)
		if v, err := builtin.CounterAdd.Call(ctx, via, id, builtin.CounterDelta{Delta: 1}); err != nil || v.Value != 2 {
			t.Fatalf("%s via %s during the partition = %d, %v; want 2", id, via.ID(), v.Value, err)
		}
	}
	if i, ok := c.ActiveOn("counter", "c0"); !ok || i == cut {
		t.Fatalf("c0 active on %d, %v; want a node of the majority", i, ok)
	}
	// The node cut off has no session: it refuses, it does not serve
	// stale state.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if v, err := builtin.CounterGet.Call(short, c.Node(cut), "c0"); err == nil {
		t.Fatalf("the node cut off answered c0 = %d", v.Value)
	}
	c.Heal()
	c.WaitSettled()
	checkAll(t, c, 12, 2)
}

// A paused lease lapses: the node drops its actors, their locks are
// freed; resumed, the node opens a new session and serves again.
func TestPauseLeaseLapsesTheSession(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{})
	addAll(t, c, 12, 1)
	p, ok := c.ActiveOn("counter", "c0")
	if !ok {
		t.Fatal("c0 is active nowhere")
	}
	before := c.Node(p).Health().Components.Locks.Session
	c.PauseLease(p)
	c.WaitSettled()
	if n := c.Node(p).Runtime().Active("counter"); n != 0 {
		t.Fatalf("%d counters active on the node whose lease lapsed", n)
	}
	d, err := c.Node((p+1)%c.Len()).DumpJournal(context.Background(), "counter", "c0", true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Lock != nil && d.Lock.Session == before {
		t.Fatalf("c0 is still locked by the lapsed session %s", before)
	}
	c.ResumeLease(p)
	c.WaitSettled()
	if after := c.Node(p).Health().Components.Locks.Session; after == before {
		t.Fatalf("session %s survived a lapse", after)
	}
	addAll(t, c, 12, 1)
	checkAll(t, c, 12, 2)
}

// Advance drives idle timeouts, reminders and delayed messages without
// waiting for them.
func TestAdvance(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{})
	ctx := context.Background()
	cl := c.Client()
	get := func(id string) int64 {
		t.Helper()
		v, err := builtin.CounterGet.Call(ctx, cl, id)
		if err != nil {
			t.Fatal(err)
		}
		return v.Value
	}

	// Idle timeout: 5 minutes by default.
	if _, err := builtin.CounterAdd.Call(ctx, cl, "idle", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
	c.Advance(4 * time.Minute)
	if _, ok := c.ActiveOn("counter", "idle"); !ok {
		t.Fatal("deactivated after 4 idle minutes")
	}
	c.Advance(2 * time.Minute)
	if i, ok := c.ActiveOn("counter", "idle"); ok {
		t.Fatalf("still active on %d after 6 idle minutes", i)
	}

	// A reminder an hour away fires once the clock is an hour on, then
	// every day.
	if _, err := builtin.CounterRemind.Call(ctx, cl, "alarm", builtin.CounterReminder{Name: "r", Delta: 5, After: "1h", Every: "24h"}); err != nil {
		t.Fatal(err)
	}
	if v := get("alarm"); v != 0 {
		t.Fatalf("alarm = %d before the reminder was due", v)
	}
	c.Advance(time.Hour)
	c.WaitFor("the reminder to fire", func() error {
		if v := get("alarm"); v != 5 {
			return fmt.Errorf("alarm = %d, want 5", v)
		}
		return nil
	})
	c.Advance(24 * time.Hour)
	c.WaitFor("the reminder to fire again", func() error {
		if v := get("alarm"); v != 10 {
			return fmt.Errorf("alarm = %d, want 10", v)
		}
		return nil
	})

	// A message due in an hour, by the cluster's clock.
	if _, err := builtin.CounterAdd.Send(ctx, cl, "later", builtin.CounterDelta{Delta: 7}, runtime.WithDeliverAt(c.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	c.WaitFor("the delayed message", func() error {
		if v := get("later"); v != 7 {
			return fmt.Errorf("later = %d, want 7", v)
		}
		return nil
	})
}
