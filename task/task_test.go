package task_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// fast retries: a wait short enough not to slow the tests, no jitter.
var fast = task.WithBackoff(task.Backoff{Initial: time.Microsecond, Max: time.Microsecond, Jitter: task.NoJitter})

var errBoom = errors.New("boom")

// gate blocks functions until the test ends (or until opened), so that a
// function that ignores its context is still running when Run returns.
func gate(t *testing.T) (g chan struct{}, open func()) {
	g = make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(g) }) }
	t.Cleanup(open)
	return g, open
}

func TestRunSuccessAndFailure(t *testing.T) {
	double := task.New("double", func(ctx context.Context, n int) (int, error) {
		if n < 0 {
			return 0, errBoom
		}
		return 2 * n, nil
	})
	before := time.Now()
	r := double.Run(context.Background(), 21)
	if !r.Success || r.Value != 42 || r.Err != nil || r.Attempts != 1 {
		t.Fatalf("Run(21) = %+v", r)
	}
	if r.Start.Before(before) || r.Start.After(time.Now()) || r.Duration <= 0 {
		t.Fatalf("start %v, duration %v", r.Start, r.Duration)
	}
	r = double.Run(context.Background(), -1)
	if r.Success || !errors.Is(r.Err, errBoom) || r.Value != 0 || r.Attempts != 1 || r.FailedStep != "" {
		t.Fatalf("Run(-1) = %+v", r)
	}
	if double.Name() != "double" {
		t.Fatal(double.Name())
	}
}

// greeter is a class-style task: it carries its own settings.
type greeter struct{ greeting string }

func (g greeter) Run(_ context.Context, name string) (string, error) {
	return g.greeting + ", " + name, nil
}

func TestFromStruct(t *testing.T) {
	hello := task.From[string, string]("hello", greeter{"Hello"})
	if r := hello.Run(context.Background(), "World"); !r.Success || r.Value != "Hello, World" {
		t.Fatalf("%+v", r)
	}
}

func TestPanicBecomesError(t *testing.T) {
	calls := 0
	p := task.New("panics", func(context.Context, int) (int, error) {
		calls++
		panic("oops")
	}, task.Retries(3), fast)
	r := p.Run(context.Background(), 1)
	var pe *task.PanicError
	if r.Success || !errors.Is(r.Err, task.ErrPanic) || !errors.As(r.Err, &pe) {
		t.Fatalf("%+v", r)
	}
	if pe.Value != "oops" || pe.Task != "panics" || !strings.Contains(string(pe.Stack), "task_test.go") {
		t.Fatalf("panic error %+v", pe)
	}
	if calls != 1 || r.Attempts != 1 {
		t.Fatalf("a panic was retried: %d calls", calls)
	}
	if task.Code(r.Err) != task.CodePanic {
		t.Fatal(task.Code(r.Err))
	}
	// Also on the goroutine path (a cancelable context).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if r := p.Run(ctx, 1); !errors.Is(r.Err, task.ErrPanic) {
		t.Fatalf("%+v", r)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		retries      int
		failures     int // the function fails this many times, then succeeds
		opts         []task.Option
		wantSuccess  bool
		wantAttempts int
	}{
		{"no retries by default", 0, 1, nil, false, 1},
		{"succeeds on the third attempt", 3, 2, nil, true, 3},
		{"exhausted", 2, 10, nil, false, 3},
		{"predicate refuses", 5, 10, []task.Option{task.RetryIf(func(err error) bool { return !errors.Is(err, errBoom) })}, false, 1},
		{"predicate agrees", 5, 2, []task.Option{task.RetryIf(func(err error) bool { return errors.Is(err, errBoom) })}, true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var retries []task.Retry
			opts := append([]task.Option{task.Retries(tc.retries), fast, task.OnRetry(func(r task.Retry) { retries = append(retries, r) })}, tc.opts...)
			tk := task.New("flaky", func(context.Context, struct{}) (int, error) {
				n := calls.Add(1)
				if int(n) <= tc.failures {
					return 0, fmt.Errorf("attempt %d: %w", n, errBoom)
				}
				return int(n), nil
			}, opts...)
			r := tk.Run(context.Background(), struct{}{})
			if r.Success != tc.wantSuccess || r.Attempts != tc.wantAttempts || int(calls.Load()) != tc.wantAttempts {
				t.Fatalf("success %v attempts %d calls %d, want %v %d", r.Success, r.Attempts, calls.Load(), tc.wantSuccess, tc.wantAttempts)
			}
			if tc.wantSuccess && r.Value != tc.wantAttempts {
				t.Fatalf("value %d", r.Value)
			}
			if !tc.wantSuccess && !strings.Contains(r.Err.Error(), fmt.Sprintf("attempt %d", tc.wantAttempts)) {
				t.Fatalf("error %v is not the last attempt's", r.Err)
			}
			if len(retries) != tc.wantAttempts-1 {
				t.Fatalf("%d OnRetry calls", len(retries))
			}
			for i, rt := range retries {
				if rt.Attempt != i+1 || rt.Task != "flaky" || !errors.Is(rt.Err, errBoom) || rt.Delay != time.Microsecond {
					t.Fatalf("retry %d: %+v", i, rt)
				}
			}
		})
	}
}

func TestPermanentIsNotRetried(t *testing.T) {
	calls := 0
	tk := task.New("perm", func(context.Context, int) (int, error) {
		calls++
		return 0, task.Permanent(errBoom)
	}, task.Retries(5), fast)
	r := tk.Run(context.Background(), 0)
	if calls != 1 || !errors.Is(r.Err, errBoom) || !task.IsPermanent(r.Err) {
		t.Fatalf("calls %d, %+v", calls, r)
	}
	if task.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
}

func TestBackoffScheduleAndJitter(t *testing.T) {
	b := task.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2, Jitter: 0.5}
	tests := []struct {
		retry int
		u     float64
		want  time.Duration
	}{
		{1, 0.5, 10 * time.Millisecond}, // the middle of the jitter range is the base
		{2, 0.5, 20 * time.Millisecond},
		{3, 0.5, 40 * time.Millisecond},
		{4, 0.5, 50 * time.Millisecond}, // capped
		{40, 0.5, 50 * time.Millisecond},
		{1, 0, 5 * time.Millisecond},     // -50%
		{2, 0.75, 25 * time.Millisecond}, // +25%
		{3, 0.99, 50 * time.Millisecond}, // jitter never exceeds Max
		{0, 0.5, 10 * time.Millisecond},  // below 1 is the first retry
	}
	for _, tc := range tests {
		if got := b.Delay(tc.retry, tc.u); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.retry, tc.u, got, tc.want)
		}
	}
	def := task.Backoff{}
	if got := def.Delay(1, 0.5); got != 100*time.Millisecond {
		t.Errorf("default first delay %v", got)
	}
	if got := def.Delay(20, 0.5); got != 10*time.Second {
		t.Errorf("default cap %v", got)
	}
	if got := (task.Backoff{Initial: time.Second, Jitter: task.NoJitter}).Delay(1, 0); got != time.Second {
		t.Errorf("NoJitter: %v", got)
	}
	if got := (task.Backoff{Initial: time.Second, Multiplier: 0.5, Jitter: task.NoJitter}).Delay(3, 0); got != time.Second {
		t.Errorf("multiplier below 1: %v", got)
	}

	// The run draws jitter from its random source and waits what Delay says.
	var delays []time.Duration
	tk := task.New("jittered", func(context.Context, int) (int, error) { return 0, errBoom },
		task.Retries(3), task.WithBackoff(task.Backoff{Initial: time.Microsecond, Multiplier: 3, Jitter: 0.5}),
		task.WithRandom(func() float64 { return 1 }), // the top of the range
		task.OnRetry(func(r task.Retry) { delays = append(delays, r.Delay) }))
	tk.Run(context.Background(), 0)
	want := []time.Duration{1500 * time.Nanosecond, 4500 * time.Nanosecond, 13500 * time.Nanosecond}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", delays, want)
	}
}

func TestCancelMidRetry(t *testing.T) {
	waiting := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tk := task.New("slow-retry", func(context.Context, int) (int, error) { return 0, errBoom },
		task.Retries(5), task.WithBackoff(task.Backoff{Initial: time.Hour}),
		task.OnRetry(func(task.Retry) { close(waiting) }))
	done := make(chan task.Result[int], 1)
	go func() { done <- tk.Run(ctx, 0) }()
	<-waiting // the run is about to wait an hour
	cancel()
	r := <-done
	if r.Success || !errors.Is(r.Err, context.Canceled) || r.Attempts != 1 {
		t.Fatalf("%+v", r)
	}
	if task.Code(r.Err) != task.CodeCanceled || !strings.Contains(r.Err.Error(), "boom") {
		t.Fatalf("error %q (code %s) should say it was canceled while waiting after boom", r.Err, task.Code(r.Err))
	}
}

func TestTimeoutCutsTheRetryWait(t *testing.T) {
	tk := task.New("timeout-retry", func(context.Context, int) (int, error) { return 0, errBoom },
		task.Retries(5), task.WithBackoff(task.Backoff{Initial: time.Hour}), task.Timeout(20*time.Millisecond))
	r := tk.Run(context.Background(), 0)
	if !errors.Is(r.Err, task.ErrTimeout) || !errors.Is(r.Err, context.DeadlineExceeded) || r.Attempts != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestTimeoutStopsWaitingForAFunctionThatIgnoresIt(t *testing.T) {
	g, _ := gate(t)
	var returned atomic.Bool
	tk := task.New("stubborn", func(context.Context, int) (int, error) {
		<-g // ignores its context
		returned.Store(true)
		return 1, nil
	}, task.Timeout(10*time.Millisecond))
	r := tk.Run(context.Background(), 0)
	if returned.Load() {
		t.Fatal("Run waited for the function")
	}
	if r.Success || !errors.Is(r.Err, task.ErrTimeout) || task.Code(r.Err) != task.CodeTimeout || r.Attempts != 1 {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(r.Err.Error(), `"stubborn": timed out after 10ms`) {
		t.Fatalf("message %q", r.Err)
	}
}

func TestCallerCancelStopsWaiting(t *testing.T) {
	g, _ := gate(t)
	entered := make(chan struct{})
	tk := task.New("stubborn", func(context.Context, int) (int, error) {
		close(entered)
		<-g
		return 1, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan task.Result[int], 1)
	go func() { done <- tk.Run(ctx, 0) }()
	<-entered
	cancel()
	if r := <-done; !errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, task.ErrTimeout) {
		t.Fatalf("%+v", r)
	}
	// A context that had already ended: the function is not called.
	r := tk.Run(ctx, 0)
	if r.Attempts != 0 || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("%+v", r)
	}
}

func TestCooperativeTimeoutIsReportedAsTimeout(t *testing.T) {
	tk := task.New("polite", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, fmt.Errorf("fetching: %w", ctx.Err())
	}, task.Timeout(5*time.Millisecond))
	r := tk.Run(context.Background(), 0)
	if !errors.Is(r.Err, task.ErrTimeout) || task.Code(r.Err) != task.CodeTimeout {
		t.Fatalf("%v", r.Err)
	}
	// The caller's own deadline is not the task's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	untimed := task.New("polite", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	r = untimed.Run(ctx, 0)
	if errors.Is(r.Err, task.ErrTimeout) || !errors.Is(r.Err, context.DeadlineExceeded) || task.Code(r.Err) != task.CodeDeadlineExceeded {
		t.Fatalf("%v (%s)", r.Err, task.Code(r.Err))
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	g, _ := gate(t)
	var calls atomic.Int32
	tk := task.New("hangs-once", func(ctx context.Context, _ int) (string, error) {
		if calls.Add(1) == 1 {
			<-g // the first attempt hangs, ignoring its context
		}
		return "ok", nil
	}, task.AttemptTimeout(10*time.Millisecond), task.Retries(2), fast)
	r := tk.Run(context.Background(), 0)
	if !r.Success || r.Value != "ok" || r.Attempts != 2 {
		t.Fatalf("%+v", r)
	}
	// Every attempt timing out: the error says it was an attempt.
	never := task.New("hangs", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, task.AttemptTimeout(time.Millisecond), task.Retries(2), fast)
	r2 := never.Run(context.Background(), 0)
	if r2.Attempts != 3 || !errors.Is(r2.Err, task.ErrTimeout) || !strings.Contains(r2.Err.Error(), "attempt timed out") {
		t.Fatalf("%+v", r2)
	}
}

func TestMaxConcurrent(t *testing.T) {
	const limit, runs = 2, 6
	var running, peak atomic.Int32
	entered := make(chan struct{}, runs)
	release := make(chan struct{})
	tk := task.New("limited", func(context.Context, int) (int, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		return 0, nil
	}, task.MaxConcurrent(limit))
	var wg sync.WaitGroup
	for i := 0; i < runs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk.Run(context.Background(), i)
		}()
	}
	// Let them through one at a time: each release lets exactly one more in.
	for i := 0; i < limit; i++ {
		<-entered
	}
	for i := limit; i < runs; i++ {
		release <- struct{}{}
		<-entered
	}
	for i := 0; i < limit; i++ {
		release <- struct{}{}
	}
	wg.Wait()
	if peak.Load() != limit {
		t.Fatalf("peak concurrency %d, want %d", peak.Load(), limit)
	}
}

func TestMaxConcurrentWaitEndsWithTimeoutAndAbandonedAttemptsHoldTheirSlot(t *testing.T) {
	g, open := gate(t)
	entered := make(chan struct{}, 4)
	var calls atomic.Int32
	tk := task.New("one-at-a-time", func(context.Context, int) (int, error) {
		calls.Add(1)
		entered <- struct{}{}
		<-g // ignores its context
		return 1, nil
	}, task.MaxConcurrent(1), task.Timeout(10*time.Millisecond))
	r := tk.Run(context.Background(), 0)
	<-entered
	if !errors.Is(r.Err, task.ErrTimeout) || r.Attempts != 1 {
		t.Fatalf("first: %+v", r)
	}
	// The abandoned function still runs, so it still holds the one slot:
	// the next run times out waiting for it, without being called.
	r = tk.Run(context.Background(), 0)
	if !errors.Is(r.Err, task.ErrTimeout) || r.Attempts != 0 || calls.Load() != 1 || !strings.Contains(r.Err.Error(), "concurrency slot") {
		t.Fatalf("second: %+v (calls %d)", r, calls.Load())
	}
	open() // the first function returns and frees its slot
	r = tk.Run(context.Background(), 0)
	if !r.Success || calls.Load() != 2 {
		t.Fatalf("third: %+v", r)
	}
}

func TestCorrelationIDReachesTheFunction(t *testing.T) {
	var got string
	tk := task.New("cid", func(ctx context.Context, _ int) (int, error) {
		got = runtime.CorrelationID(ctx)
		return 0, nil
	})
	tk.Run(runtime.WithCorrelationID(context.Background(), "corr-1"), 0)
	if got != "corr-1" {
		t.Fatalf("correlation id %q", got)
	}
}
