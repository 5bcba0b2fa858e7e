package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

type sumIn struct {
	Values []int `json:"values"`
}

func TestClientRunsTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	var (
		mu    sync.Mutex
		ranOn = map[string]int{} // correlation id → runs seen
	)
	started := make(chan string, 4)
	sum := task.New("sum", func(ctx context.Context, in sumIn) (int, error) {
		mu.Lock()
		ranOn[runtime.CorrelationID(ctx)]++
		mu.Unlock()
		if len(in.Values) == 0 {
			return 0, errors.New("nothing to add")
		}
		total := 0
		for _, v := range in.Values {
			total += v
		}
		return total, nil
	})
	background := task.New("background", func(ctx context.Context, n int) (int, error) {
		started <- runtime.CorrelationID(ctx)
		return n, nil
	})
	slow := task.New("slow", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, task.Timeout(20*time.Millisecond))
	c := nodetest.StartWithTasks(t, 2, []task.Definition{sum, background, slow})

	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, []string{c.Nodes[0].GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nodetest.WaitFor(t, 10*time.Second, "the client to learn 2 members", func() bool { return len(cl.Members()) == 2 })

	ctx := runtime.WithCorrelationID(context.Background(), "client-1")
	for i := 0; i < 6; i++ { // spread over the nodes
		r, err := sum.Call(ctx, cl, sumIn{Values: []int{1, 2, i}})
		if err != nil || !r.Success || r.Value != 3+i || r.Attempts != 1 || r.Start.IsZero() || r.Duration <= 0 {
			t.Fatalf("run %d: %+v, %v", i, r, err)
		}
	}
	mu.Lock()
	if ranOn["client-1"] != 6 {
		t.Fatalf("the correlation id reached %d runs of 6", ranOn["client-1"])
	}
	mu.Unlock()

	// A run that failed is a Result, with the remote error's code.
	r, err := sum.Call(ctx, cl, sumIn{})
	if err != nil || r.Success || r.Err == nil || r.Err.Error() != "nothing to add" {
		t.Fatalf("%+v, %v", r, err)
	}
	rs, err := slow.Call(ctx, cl, 0)
	if err != nil || !errors.Is(rs.Err, task.ErrTimeout) {
		t.Fatalf("%+v, %v", rs, err)
	}
	// Runs that did not happen are errors.
	unknown := task.New("unknown", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := unknown.Call(ctx, cl, 1); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatalf("unknown task: %v", err)
	}
	if _, err := cl.RunTask(ctx, "sum", []byte(`{"values":"many"}`)); !errors.Is(err, runtime.ErrBadPayload) {
		t.Fatalf("bad input: %v", err)
	}

	// Fire and forget.
	if err := background.Start(runtime.WithCorrelationID(context.Background(), "bg-client"), cl, 1); err != nil {
		t.Fatal(err)
	}
	if cid := <-started; cid != "bg-client" {
		t.Fatalf("background correlation id %q", cid)
	}
	if err := cl.StartTask(ctx, "unknown", nil); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatalf("async unknown: %v", err)
	}

	// With one node gone, the other runs every task: a node that refuses
	// or cannot be reached is skipped.
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := c.Nodes[1].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	for i := 0; i < 6; i++ {
		r, err := sum.Call(ctx, cl, sumIn{Values: []int{i}})
		if err != nil || r.Value != i {
			t.Fatalf("after a node left, run %d: %+v, %v", i, r, err)
		}
	}
}
