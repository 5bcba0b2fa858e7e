package task_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/loom-mesh/loom/task"
)

var (
	parse = task.New("parse", func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) })
	half  = task.New("half", func(_ context.Context, n int) (int, error) {
		if n%2 != 0 {
			return 0, errors.New("odd")
		}
		return n / 2, nil
	})
	format = task.New("format", func(_ context.Context, n int) (string, error) { return "=" + strconv.Itoa(n), nil })
)

func TestThen(t *testing.T) {
	pipeline := task.Then("parse-half-format", task.Then("parse-half", parse, half), format)
	tests := []struct {
		in         string
		want       string
		failedStep string
		index      []int // StepError.Index from the outside in
	}{
		{"42", "=21", "", nil},
		{"x", "", "parse", []int{0, 0}},
		{"7", "", "half", []int{0, 1}},
	}
	for _, tc := range tests {
		r := pipeline.Run(context.Background(), tc.in)
		if tc.failedStep == "" {
			if !r.Success || r.Value != tc.want || r.FailedStep != "" {
				t.Fatalf("%s: %+v", tc.in, r)
			}
			continue
		}
		if r.Success || r.FailedStep != tc.failedStep {
			t.Fatalf("%s: failed step %q, want %q (%v)", tc.in, r.FailedStep, tc.failedStep, r.Err)
		}
		err := r.Err
		for depth, want := range tc.index {
			var se *task.StepError
			if !errors.As(err, &se) || se.Index != want || se.Attempts != 1 {
				t.Fatalf("%s: step error at depth %d = %+v, want index %d", tc.in, depth, se, want)
			}
			err = se.Err
		}
	}
}

func TestChain(t *testing.T) {
	inc := task.New("inc", func(_ context.Context, n int) (int, error) { return n + 1, nil })
	fail := task.New("fail", func(_ context.Context, n int) (int, error) { return 0, errBoom })
	if r := task.Chain("inc3", []*task.Task[int, int]{inc, inc, inc}).Run(context.Background(), 1); !r.Success || r.Value != 4 {
		t.Fatalf("%+v", r)
	}
	r := task.Chain("inc-fail-inc", []*task.Task[int, int]{inc, fail, inc}).Run(context.Background(), 1)
	var se *task.StepError
	if r.Success || r.FailedStep != "fail" || !errors.As(r.Err, &se) || se.Index != 1 || !errors.Is(r.Err, errBoom) {
		t.Fatalf("%+v", r)
	}
	if r := task.Chain[int]("empty", nil).Run(context.Background(), 7); !r.Success || r.Value != 7 {
		t.Fatalf("%+v", r)
	}
}

// waitForCancel is a step that signals entered, blocks until its context
// ends and reports that it saw the cancellation.
func waitForCancel(name string, entered chan<- struct{}, saw chan<- string) *task.Task[int, int] {
	return task.New(name, func(ctx context.Context, _ int) (int, error) {
		entered <- struct{}{}
		<-ctx.Done()
		saw <- name
		return 0, ctx.Err()
	})
}

func TestAll(t *testing.T) {
	sq := task.New("sq", func(_ context.Context, n int) (int, error) { return n * n, nil })
	neg := task.New("neg", func(_ context.Context, n int) (int, error) { return -n, nil })
	r := task.All("sq-neg", []*task.Task[int, int]{sq, neg, sq}).Run(context.Background(), 3)
	if !r.Success || len(r.Value) != 3 || r.Value[0] != 9 || r.Value[1] != -3 || r.Value[2] != 9 {
		t.Fatalf("%+v", r)
	}

	// The first failure cancels the others and names the failed step. (It
	// fails once the others run: a step not started yet is never called.)
	saw, entered := make(chan string, 2), make(chan struct{}, 2)
	fail := task.New("fail", func(context.Context, int) (int, error) {
		<-entered
		<-entered
		return 0, errBoom
	})
	all := task.All("fail-fast", []*task.Task[int, int]{waitForCancel("w1", entered, saw), fail, waitForCancel("w2", entered, saw)})
	r = all.Run(context.Background(), 1)
	var se *task.StepError
	if r.Success || r.FailedStep != "fail" || !errors.As(r.Err, &se) || se.Index != 1 || !errors.Is(r.Err, errBoom) {
		t.Fatalf("%+v", r)
	}
	// Both waiting steps were canceled (else this waits forever).
	<-saw
	<-saw
}

func TestAllSettled(t *testing.T) {
	ok := task.New("ok", func(_ context.Context, n int) (int, error) { return n, nil })
	fail := task.New("fail", func(context.Context, int) (int, error) { return 0, errBoom })
	r := task.AllSettled("settled", []*task.Task[int, int]{ok, fail, ok}).Run(context.Background(), 5)
	if !r.Success || len(r.Value) != 3 {
		t.Fatalf("%+v", r)
	}
	if !r.Value[0].Success || r.Value[0].Value != 5 || r.Value[1].Success || !errors.Is(r.Value[1].Err, errBoom) || !r.Value[2].Success {
		t.Fatalf("%+v", r.Value)
	}
}

func TestRace(t *testing.T) {
	saw, entered := make(chan string, 2), make(chan struct{}, 2)
	quick := task.New("quick", func(_ context.Context, n int) (int, error) {
		<-entered // the others are running
		<-entered
		return n + 100, nil
	})
	r := task.Race("race", []*task.Task[int, int]{waitForCancel("slow1", entered, saw), quick, waitForCancel("slow2", entered, saw)}).Run(context.Background(), 1)
	if !r.Success || r.Value != 101 {
		t.Fatalf("%+v", r)
	}
	<-saw // the losers were canceled
	<-saw

	// A failure that comes first decides too.
	fail := task.New("fail", func(context.Context, int) (int, error) {
		<-entered
		return 0, errBoom
	})
	r = task.Race("race-fail", []*task.Task[int, int]{waitForCancel("slow", entered, saw), fail}).Run(context.Background(), 1)
	if r.Success || r.FailedStep != "fail" || !errors.Is(r.Err, errBoom) {
		t.Fatalf("%+v", r)
	}
	<-saw

	r = task.Race[int, int]("nothing", nil).Run(context.Background(), 1)
	if r.Success || r.Err == nil {
		t.Fatalf("%+v", r)
	}
}

func TestFirstSuccess(t *testing.T) {
	// The failure comes first, the success after it; the success wins.
	failed := make(chan struct{})
	fail := task.New("fail", func(context.Context, int) (int, error) {
		defer close(failed)
		return 0, errBoom
	})
	late := task.New("late", func(_ context.Context, n int) (int, error) {
		<-failed
		return n * 10, nil
	})
	r := task.FirstSuccess("first", []*task.Task[int, int]{fail, late}).Run(context.Background(), 4)
	if !r.Success || r.Value != 40 {
		t.Fatalf("%+v", r)
	}

	// Every step fails: each step's error is in the joined error.
	other := errors.New("other")
	fail1 := task.New("fail", func(context.Context, int) (int, error) { return 0, errBoom })
	fail2 := task.New("fail2", func(context.Context, int) (int, error) { return 0, other })
	r = task.FirstSuccess("all-fail", []*task.Task[int, int]{fail1, fail2}).Run(context.Background(), 4)
	if r.Success || !errors.Is(r.Err, errBoom) || !errors.Is(r.Err, other) || r.FailedStep != "fail" {
		t.Fatalf("%+v", r)
	}
}

func TestCompositionHasItsOwnOptions(t *testing.T) {
	// Retries on the composition retry the whole pipeline; a Timeout bounds
	// it even when a step hangs.
	var calls int
	flaky := task.New("flaky", func(_ context.Context, n int) (int, error) {
		calls++
		if calls < 3 {
			return 0, errBoom
		}
		return n, nil
	})
	inc := task.New("inc", func(_ context.Context, n int) (int, error) { return n + 1, nil })
	r := task.Then("retried", flaky, inc, task.Retries(5), fast).Run(context.Background(), 1)
	if !r.Success || r.Value != 2 || r.Attempts != 3 {
		t.Fatalf("%+v", r)
	}
	g, _ := gate(t)
	hang := task.New("hang", func(context.Context, int) (int, error) { <-g; return 0, nil })
	r = task.Then("bounded", inc, hang, task.Timeout(10*time.Millisecond)).Run(context.Background(), 1)
	if !errors.Is(r.Err, task.ErrTimeout) || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("%+v", r)
	}
}
