package loomtest_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/loomtest"
)

// In a test, pass the test's t: loomtest.Start(t, ...). An example has
// none, so these use exampleT, which runs the cleanups when the example
// ends and panics where a test would fail.
type exampleT struct{ cleanups []func() }

func (*exampleT) Helper()                      {}
func (e *exampleT) Cleanup(f func())           { e.cleanups = append(e.cleanups, f) }
func (*exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (*exampleT) Logf(string, ...any)          {}
func (e *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "loomtest-example-")
	if err != nil {
		panic(err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (e *exampleT) done() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// Kill the node an actor lives on: once the cluster has settled, the
// actor answers from another node with everything it acknowledged.
func Example() {
	t := &exampleT{}
	defer t.done()
	c := loomtest.Start(t, loomtest.Options{Nodes: 3}) // with Types: your actor types
	ctx := context.Background()
	for range 3 {
		if _, err := builtin.CounterAdd.Call(ctx, c.Client(), "visits", builtin.CounterDelta{Delta: 1}); err != nil {
			panic(err)
		}
	}
	owner, _ := c.ActiveOn("counter", "visits")
	c.Kill(owner) // a crash: no hand-off, its lock still held
	c.WaitSettled()

	v, err := builtin.CounterGet.Call(ctx, c.Client(), "visits")
	moved, _ := c.ActiveOn("counter", "visits")
	fmt.Println(v.Value, err, moved != owner)
	// Output: 3 <nil> true
}

// Advance moves the cluster's clock: reminders fire and idle actors go
// without waiting for the real time to pass.
func ExampleCluster_Advance() {
	t := &exampleT{}
	defer t.done()
	c := loomtest.Start(t, loomtest.Options{})
	ctx := context.Background()
	cl := c.Client()
	// Add 10 to "daily" a day from now, then every day.
	if _, err := builtin.CounterRemind.Call(ctx, cl, "daily", builtin.CounterReminder{Name: "bonus", Delta: 10, Every: "24h"}); err != nil {
		panic(err)
	}
	for day := 1; day <= 2; day++ {
		c.Advance(24 * time.Hour)
		c.WaitFor("the daily bonus", func() error {
			v, err := builtin.CounterGet.Call(ctx, cl, "daily")
			if err == nil && v.Value != int64(10*day) {
				err = fmt.Errorf("daily = %d", v.Value)
			}
			return err
		})
		fmt.Println("day", day, "bonus paid")
	}
	// Not called for 6 minutes: past the default idle timeout (5 min).
	c.Advance(6 * time.Minute)
	_, active := c.ActiveOn("counter", "daily")
	fmt.Println("active after 6 idle minutes:", active)
	// Output:
	// day 1 bonus paid
	// day 2 bonus paid
	// active after 6 idle minutes: false
}

// Isolate cuts a node off; the majority serves its actors once its
// session has lapsed, and Heal makes the cluster whole again.
func ExampleCluster_Isolate() {
	t := &exampleT{}
	defer t.done()
	c := loomtest.Start(t, loomtest.Options{})
	ctx := context.Background()
	if _, err := builtin.CounterAdd.Call(ctx, c.Client(), "stock", builtin.CounterDelta{Delta: 5}); err != nil {
		panic(err)
	}
	cut, _ := c.ActiveOn("counter", "stock")
	c.Isolate(cut)
	c.WaitSettled()

	// Call through a node of the majority: the client stands outside the
	// cluster's network, and may follow the topology of the node cut off.
	other := c.Node((cut + 1) % c.Len())
	v, err := builtin.CounterAdd.Call(ctx, other, "stock", builtin.CounterDelta{Delta: -1})
	fmt.Println("during the partition:", v.Value, err)

	c.Heal()
	c.WaitSettled()
	v, err = builtin.CounterGet.Call(ctx, c.Client(), "stock")
	fmt.Println("healed:", v.Value, err)
	// Output:
	// during the partition: 4 <nil>
	// healed: 4 <nil>
}
