package task_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

func recorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func TestEachRunIsASpan(t *testing.T) {
	rec, tp := recorder()
	inc := task.New("inc", func(_ context.Context, n int) (int, error) { return n + 1, nil }, task.WithTracerProvider(tp))
	fail := task.New("fail", func(context.Context, int) (int, error) { return 0, errBoom }, task.WithTracerProvider(tp), task.Retries(1), fast)
	pipe := task.Then("pipe", inc, fail, task.WithTracerProvider(tp))

	// The caller's span (an HTTP request, an actor turn) is the parent.
	ctx, parent := tp.Tracer("test").Start(runtime.WithCorrelationID(context.Background(), "corr-7"), "request")
	pipe.Run(ctx, 1)
	parent.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	for _, name := range []string{"task pipe", "task inc", "task fail", "request"} {
		if spans[name] == nil {
			t.Fatalf("no span %q among %d", name, len(spans))
		}
	}
	p := spans["task pipe"]
	if p.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatal("the task's span is not a child of the caller's")
	}
	if spans["task inc"].Parent().SpanID() != p.SpanContext().SpanID() || spans["task fail"].Parent().SpanID() != p.SpanContext().SpanID() {
		t.Fatal("the steps' spans are not children of the composition's")
	}
	a := attrs(p)
	if a["loom.task"].AsString() != "pipe" || a["loom.correlation_id"].AsString() != "corr-7" || a["loom.task.failed_step"].AsString() != "fail" || a["loom.task.error_code"].AsString() != "failed" {
		t.Fatalf("attributes %v", a)
	}
	if p.Status().Code != codes.Error {
		t.Fatalf("status %v", p.Status())
	}
	if got := attrs(spans["task fail"])["loom.task.attempts"].AsInt64(); got != 2 {
		t.Fatalf("attempts attribute %d", got)
	}
	if spans["task inc"].Status().Code != codes.Ok {
		t.Fatalf("status %v", spans["task inc"].Status())
	}
}

func TestCallersTracerProviderIsUsed(t *testing.T) {
	// No provider given and none installed globally: the run joins the
	// pipeline of the caller's recording span.
	rec, tp := recorder()
	tk := task.New("follows", func(_ context.Context, n int) (int, error) { return n, nil })
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	tk.Run(ctx, 1)
	parent.End()
	if len(rec.Ended()) != 2 || rec.Ended()[0].Name() != "task follows" {
		t.Fatalf("%d spans", len(rec.Ended()))
	}
}

func TestGlobalTracerProviderIsUsedWhenInstalled(t *testing.T) {
	// Not parallel: it sets the global provider (and puts it back).
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	tk := task.New("global", func(_ context.Context, n int) (int, error) { return n, nil })
	tk.Run(context.Background(), 1) // with no provider installed: a no-op

	rec, tp := recorder()
	otel.SetTracerProvider(tp)
	tk.Run(context.Background(), 1)
	if len(rec.Ended()) != 1 || rec.Ended()[0].Name() != "task global" {
		t.Fatalf("%d spans", len(rec.Ended()))
	}
}

// gather registers c in a fresh registry (which checks it is a valid
// Collector) and returns its families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func metricFor(mf *dto.MetricFamily, taskName string) *dto.Metric {
	if mf == nil {
		return nil
	}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if l.GetName() == "task" && l.GetValue() == taskName {
				return m
			}
		}
	}
	return nil
}

func TestMetricsPerTaskName(t *testing.T) {
	calls := 0
	flaky := task.New("m-flaky", func(_ context.Context, n int) (int, error) {
		calls++
		if calls%2 == 1 {
			return 0, errBoom
		}
		return n, nil
	}, task.Retries(1), fast)
	fail := task.New("m-fail", func(context.Context, int) (int, error) { return 0, errBoom })
	pipe := task.Then("m-pipe", flaky, fail)
	for i := 0; i < 3; i++ {
		pipe.Run(context.Background(), i) // flaky: fails, then succeeds; fail fails
	}
	// Another task value with the same name: summed under the name.
	twin := task.New("m-fail", func(context.Context, int) (int, error) { return 0, nil })
	twin.Run(context.Background(), 0)

	mfs := gather(t, task.NewCollector(pipe, twin))
	check := func(metric, name string, want float64) {
		t.Helper()
		m := metricFor(mfs[metric], name)
		if m == nil {
			t.Fatalf("no %s for %s", metric, name)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Fatalf("%s{task=%s} = %v, want %v", metric, name, got, want)
		}
	}
	check("loom_task_runs_total", "m-pipe", 3)
	check("loom_task_failures_total", "m-pipe", 3)
	check("loom_task_runs_total", "m-flaky", 3)
	check("loom_task_failures_total", "m-flaky", 0)
	check("loom_task_retries_total", "m-flaky", 3)
	check("loom_task_runs_total", "m-fail", 4)
	check("loom_task_failures_total", "m-fail", 3)
	h := metricFor(mfs["loom_task_duration_seconds"], "m-pipe").GetHistogram()
	if h.GetSampleCount() != 3 || h.GetSampleSum() <= 0 || len(h.Bucket) != len(task.DurationBuckets) {
		t.Fatalf("histogram %v", h)
	}
	last := h.Bucket[len(h.Bucket)-1]
	if last.GetCumulativeCount() != 3 || last.GetUpperBound() != 60 {
		t.Fatalf("last bucket %v", last)
	}
}

func TestRegistry(t *testing.T) {
	type In struct {
		A, B int
	}
	add := task.New("add", func(_ context.Context, in In) (int, error) { return in.A + in.B, nil })
	slow := task.New("slow", func(ctx context.Context, in In) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, task.Timeout(5*time.Millisecond))
	panics := task.New("panics", func(context.Context, In) (int, error) { panic("no") })
	reg, err := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{add, slow, panics}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	ctx := context.Background()

	o, err := reg.RunTask(ctx, "add", []byte(`{"A":2,"B":3}`))
	if err != nil || !o.Success || string(o.Value) != "5" || o.Attempts != 1 || o.Error != nil || o.Start.IsZero() {
		t.Fatalf("%+v, %v", o, err)
	}
	if o, err := reg.RunTask(ctx, "add", nil); err != nil || string(o.Value) != "0" {
		t.Fatalf("empty input: %+v, %v", o, err) // an empty body is the zero value
	}
	if _, err := reg.RunTask(ctx, "nope", nil); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := reg.RunTask(ctx, "add", []byte(`{"A":"x"}`)); !errors.Is(err, runtime.ErrBadPayload) {
		t.Fatalf("bad json: %v", err)
	}
	o, err = reg.RunTask(ctx, "slow", nil)
	if err != nil || o.Success || o.Error.Code != task.CodeTimeout || o.Value != nil {
		t.Fatalf("%+v, %v", o, err)
	}

	// Typed, through the Invoker interface.
	r, err := add.Call(ctx, reg, In{A: 1, B: 1})
	if err != nil || !r.Success || r.Value != 2 || r.Attempts != 1 {
		t.Fatalf("%+v, %v", r, err)
	}
	r, err = slow.Call(ctx, reg, In{})
	if err != nil || r.Success || !errors.Is(r.Err, task.ErrTimeout) || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("%+v, %v", r, err)
	}
	r, err = panics.Call(ctx, reg, In{})
	var re *task.RemoteError
	if err != nil || !errors.Is(r.Err, task.ErrPanic) || !errors.As(r.Err, &re) || re.Code != task.CodePanic {
		t.Fatalf("%+v, %v", r, err)
	}
	unregistered := task.New("unregistered", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := unregistered.Call(ctx, reg, 1); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatal(err)
	}
	if got := reg.Names(); len(got) != 3 || got[0] != "add" || got[2] != "slow" {
		t.Fatal(got)
	}

	_, err = task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{add, add, nil}})
	if !errors.Is(err, task.ErrDuplicateTask) {
		t.Fatal(err)
	}
}

func TestRegistryFireAndForget(t *testing.T) {
	started := make(chan string, 1)
	release := make(chan struct{})
	bg := task.New("bg", func(ctx context.Context, n int) (int, error) {
		started <- runtime.CorrelationID(ctx)
		<-release
		return n, nil
	})
	stuck := task.New("stuck", func(ctx context.Context, n int) (int, error) {
		started <- ""
		<-ctx.Done() // only ends when canceled
		return 0, ctx.Err()
	})
	reg, err := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{bg, stuck}})
	if err != nil {
		t.Fatal(err)
	}

	// The caller's context ends at once; the run goes on with its values.
	ctx, cancel := context.WithCancel(runtime.WithCorrelationID(context.Background(), "fire-1"))
	if err := bg.Start(ctx, reg, 7); err != nil {
		t.Fatal(err)
	}
	cancel()
	if cid := <-started; cid != "fire-1" {
		t.Fatalf("correlation id %q", cid)
	}
	if err := reg.StartTask(context.Background(), "nope", nil); !errors.Is(err, task.ErrUnknownTask) {
		t.Fatal(err)
	}
	if err := reg.StartTask(context.Background(), "bg", []byte("{")); !errors.Is(err, runtime.ErrBadPayload) {
		t.Fatal(err)
	}

	// Close waits for the run in progress.
	closed := make(chan error, 1)
	go func() { closed <- reg.Close(context.Background()) }()
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if m := metricFor(gather(t, reg.Collector())["loom_task_runs_total"], "bg"); m.GetCounter().GetValue() != 1 {
		t.Fatalf("the background run was not counted: %v", m)
	}
	if err := reg.StartTask(context.Background(), "bg", nil); !errors.Is(err, runtime.ErrShuttingDown) {
		t.Fatal(err)
	}
	if _, err := reg.RunTask(context.Background(), "bg", nil); !errors.Is(err, runtime.ErrShuttingDown) {
		t.Fatal(err)
	}

	// A run that does not end by itself is canceled when Close gives up.
	reg2, _ := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{stuck}})
	if err := reg2.StartTask(context.Background(), "stuck", nil); err != nil {
		t.Fatal(err)
	}
	<-started
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer ccancel()
	if err := reg2.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v", err)
	}
	if err := reg2.Close(context.Background()); err != nil { // again: nothing left
		t.Fatal(err)
	}
}

func TestFireAndForgetSpanOutlivesTheCallersSpan(t *testing.T) {
	// The caller's span ends before the background run starts; the run's
	// span still goes to the caller's pipeline, as its child.
	rec, tp := recorder()
	release := make(chan struct{})
	done := make(chan struct{})
	bg := task.New("late", func(context.Context, int) (int, error) {
		<-release
		return 0, nil
	})
	reg, _ := task.NewRegistry(task.RegistryOptions{Tasks: []task.Definition{bg}})
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if err := reg.StartTask(ctx, "late", nil); err != nil {
		t.Fatal(err)
	}
	parent.End()
	close(release)
	go func() { _ = reg.Close(context.Background()); close(done) }()
	<-done
	var run sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "task late" {
			run = s
		}
	}
	if run == nil || run.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("background span %v", run)
	}
}
