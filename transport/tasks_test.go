package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport"
)

// registryHandler serves Tasks.Run from a task.Registry (as a node does).
type registryHandler struct{ r *task.Registry }

func (h registryHandler) HandleTask(ctx context.Context, name string, input []byte, async bool) (task.Outcome, error) {
	if async {
		return task.Outcome{}, h.r.StartTask(ctx, name, input)
	}
	return h.r.RunTask(ctx, name, input)
}

// actorsAndTasks is an ActorHandler that also implements TaskHandler.
type actorsAndTasks struct {
	*echo
	registryHandler
}

func TestTasksOverGRPC(t *testing.T) {
	checkLeaks(t)
	cids := make(chan string, 4)
	upper := task.New("upper", func(ctx context.Context, s string) (string, error) {
		cids <- runtime.CorrelationID(ctx)
		if s == "" {
			return "", errors.New("empty")
		}
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 32
			}
		}
		return string(b), nil
	})
	reg, err := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{upper}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Tasks: registryHandler{reg}})
	p := newPool(t, transport.PoolOptions{})
	ctx := runtime.WithCorrelationID(context.Background(), "cid-task")

	before := time.Now()
	o, err := p.RunTask(ctx, s.addr, "upper", []byte(`"loom"`), false)
	if err != nil || !o.Success || string(o.Value) != `"LOOM"` || o.Attempts != 1 || o.Error != nil {
		t.Fatalf("%+v, %v", o, err)
	}
	if o.Start.Before(before.Add(-time.Second)) || o.Duration() <= 0 {
		t.Fatalf("start %v duration %v", o.Start, o.Duration())
	}
	if cid := <-cids; cid != "cid-task" {
		t.Fatalf("correlation id %q", cid)
	}

	// A run that failed is an outcome, not an error.
	o, err = p.RunTask(ctx, s.addr, "upper", []byte(`""`), false)
	<-cids
	if err != nil || o.Success || o.Error == nil || o.Error.Code != task.CodeFailed || o.Error.Message != "empty" || o.Value != nil {
		t.Fatalf("%+v, %v", o, err)
	}

	// Runs that did not happen are errors matching their sentinel, not applied.
	_, err = p.RunTask(ctx, s.addr, "nope", nil, false)
	if !errors.Is(err, task.ErrUnknownTask) || transport.MaybeApplied(err) {
		t.Fatalf("unknown task: %v", err)
	}
	_, err = p.RunTask(ctx, s.addr, "upper", []byte(`{`), false)
	if !errors.Is(err, runtime.ErrBadPayload) || transport.MaybeApplied(err) {
		t.Fatalf("bad input: %v", err)
	}

	// Fire and forget: answered at once, run in the background.
	o, err = p.RunTask(ctx, s.addr, "upper", []byte(`"bg"`), true)
	if err != nil || o.Success || o.Attempts != 0 {
		t.Fatalf("%+v, %v", o, err)
	}
	if cid := <-cids; cid != "cid-task" {
		t.Fatalf("background run's correlation id %q", cid)
	}
	if _, err := p.RunTask(ctx, s.addr, "nope", nil, true); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatalf("async unknown task: %v", err)
	}
}

func TestTasksHandlerFallbackAndAbsence(t *testing.T) {
	checkLeaks(t)
	hello := task.New("hello", func(_ context.Context, s string) (string, error) { return "hello " + s, nil })
	reg, _ := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{hello}})
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	p := newPool(t, transport.PoolOptions{})

	// An ActorHandler that can also run tasks serves Tasks.Run.
	both := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: actorsAndTasks{newEcho(), registryHandler{reg}}})
	if o, err := p.RunTask(context.Background(), both.addr, "hello", []byte(`"you"`), false); err != nil || string(o.Value) != `"hello you"` {
		t.Fatalf("%+v, %v", o, err)
	}
	// A server without tasks answers unavailable (not applied).
	none := serve(t, newEcho())
	_, err := p.RunTask(context.Background(), none.addr, "hello", nil, false)
	if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
		t.Fatalf("%v", err)
	}
	// Nothing listening: not sent.
	_, err = p.RunTask(context.Background(), deadAddr(t), "hello", nil, false)
	if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
		t.Fatalf("%v", err)
	}
}
