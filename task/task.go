package task

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	loomrt "github.com/loom-mesh/loom/runtime"
)

// Runner is the struct form of a task: a type with a Run method (for
// tasks that carry dependencies, such as a client or a config). Wrap it
// with From.
type Runner[In, Out any] interface {
	Run(ctx context.Context, in In) (Out, error)
}

// Task is a named, stateless operation from In to Out, with its options.
// Build it with New or From (or a combinator), then Run it. A Task is safe
// for concurrent use and is not changed after it is built; keep one value
// per task (a package-level variable, like an actor type) so that its
// concurrency limit and counters are shared by all its callers.
type Task[In, Out any] struct {
	name     string
	fn       func(context.Context, In) (Out, error)
	cfg      config
	slots    chan struct{} // MaxConcurrent; nil without a limit
	stats    *stats
	children []statsNode // the steps of a composed task
	tracer   atomic.Pointer[tracerCache]
	spanName string
	// The causes of the task's own timeouts, made once.
	timeoutCause, attemptTimeoutCause error
	// results holds idle one-slot channels for the goroutine path of an
	// attempt (one is not reused once its attempt was abandoned).
	results sync.Pool
}

// spanOpts are the options of every run's span (made once: they would
// allocate on every run).
var spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}

// tracerCache is the tracer of the last TracerProvider a run used.
type tracerCache struct {
	tp trace.TracerProvider
	tr trace.Tracer
}

// Result is the outcome of one Run.
type Result[Out any] struct {
	// Success is true when the task returned without an error.
	Success bool
	// Value is the task's output (the zero value when it failed).
	Value Out
	// Err is why it failed: the last attempt's error (wrapping the
	// package's sentinels where they apply), nil on success.
	Err error
	// Start is when Run was called; Duration how long it took, attempts,
	// waits between them and waiting for a concurrency slot included.
	Start    time.Time
	Duration time.Duration
	// Attempts is how many times the function was called (at least 1,
	// unless the run ended while waiting for a slot).
	Attempts int
	// FailedStep names, for a composed task, the innermost step that
	// failed ("" otherwise); Err is then a *StepError.
	FailedStep string
}

// New builds a task from a function. name identifies it in metrics, spans
// and registration on a node; fn receives the caller's context (deadline,
// cancellation, correlation id and trace context) and should honor it.
func New[In, Out any](name string, fn func(ctx context.Context, in In) (Out, error), opts ...Option) *Task[In, Out] {
	return build(name, fn, nil, opts)
}

// From builds a task from a value with a Run method (the struct form).
func From[In, Out any](name string, r Runner[In, Out], opts ...Option) *Task[In, Out] {
	return build(name, r.Run, nil, opts)
}

func build[In, Out any](name string, fn func(context.Context, In) (Out, error), children []statsNode, opts []Option) *Task[In, Out] {
	if fn == nil {
		panic("task.New: nil function for task " + name) // a programming error, caught at init
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	t := &Task[In, Out]{
		name: name, fn: fn, cfg: cfg, stats: newStats(), children: children, spanName: "task " + name,
		timeoutCause:        &timeoutError{task: name, after: cfg.timeout.String()},
		attemptTimeoutCause: &timeoutError{task: name, after: cfg.attemptTimeout.String(), attempt: true},
	}
	t.results.New = func() any { return make(chan result[Out], 1) }
	if cfg.maxConcurrent > 0 {
		t.slots = make(chan struct{}, cfg.maxConcurrent)
	}
	return t
}

// Name is the task's name.
func (t *Task[In, Out]) Name() string { return t.name }

// Run runs the task: it calls the function, retrying as the options say,
// and reports how it went. It never panics (a panic in the function is an
// error matching ErrPanic) and writes nothing durable. It returns as soon
// as the caller's context or the task's Timeout ends, even if the function
// does not notice (see Timeout).
func (t *Task[In, Out]) Run(ctx context.Context, in In) Result[Out] {
	start := time.Now()
	ctx, span := t.startSpan(ctx)
	if t.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, t.cfg.timeout, t.timeoutCause)
		defer cancel()
	}
	res := Result[Out]{Start: start}
	for attempt := 1; ; attempt++ {
		out, err, called := t.attempt(ctx, in)
		if called {
			res.Attempts = attempt
		}
		if err == nil {
			res.Success, res.Value, res.Err = true, out, nil
			break
		}
		res.Err = err
		if attempt >= t.cfg.maxAttempts || ctx.Err() != nil || IsPermanent(err) || !t.cfg.retryIf(err) {
			break
		}
		delay := t.cfg.backoff.Delay(attempt, t.cfg.random())
		if t.cfg.onRetry != nil {
			t.cfg.onRetry(Retry{Task: t.name, Attempt: attempt, Err: err, Delay: delay})
		}
		if !wait(ctx, delay) {
			res.Err = fmt.Errorf("%w (while waiting to retry after: %v)", ctxErr(ctx, t.name), err)
			break
		}
	}
	res.Duration = time.Since(start)
	if res.Err != nil {
		res.FailedStep = failedStep(res.Err)
	}
	t.stats.observe(res.Duration, !res.Success, res.Attempts)
	if span.IsRecording() {
		endSpan(span, res.Attempts, res.Err, res.FailedStep)
	}
	span.End()
	return res
}

// attempt runs the function once, within its concurrency slot and its
// AttemptTimeout. called is false when the run ended before the function
// was called (waiting for a slot).
func (t *Task[In, Out]) attempt(ctx context.Context, in In) (out Out, err error, called bool) {
	if t.slots != nil {
		select {
		case t.slots <- struct{}{}:
		default:
			select {
			case t.slots <- struct{}{}:
			case <-ctx.Done():
				return out, fmt.Errorf("%w (while waiting for a concurrency slot)", ctxErr(ctx, t.name)), false
			}
		}
	}
	if t.cfg.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, t.cfg.attemptTimeout, t.attemptTimeoutCause)
		defer cancel()
	}
	if ctx.Done() == nil {
		// Nothing can end the wait: call on this goroutine.
		defer t.release()
		out, err = t.call(ctx, in)
		return out, err, true
	}
	if ctx.Err() != nil {
		t.release()
		return out, ctxErr(ctx, t.name), false
	}
	// The function runs on its own goroutine so that the caller stops
	// waiting the moment ctx ends, whatever the function does.
	done := t.results.Get().(chan result[Out])
	go func() {
		defer t.release()
		o, e := t.call(ctx, in)
		done <- result[Out]{o, e}
	}()
	var r result[Out]
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // it finished too: keep its answer
		default:
			// Abandoned: the function may still send on done, so done is
			// not reused.
			return out, ctxErr(ctx, t.name), true
		}
	}
	t.results.Put(done)
	return r.out, t.explain(ctx, r.err), true
}

// explain adds why ctx ended (the task's own timeout, say) to a context
// error the function returned because it did.
func (t *Task[In, Out]) explain(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if errors.Is(err, ErrTimeout) || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	if err == ctx.Err() {
		return ctxErr(ctx, t.name)
	}
	return fmt.Errorf("%w: %w", ctxErr(ctx, t.name), err)
}

type result[Out any] struct {
	out Out
	err error
}

func (t *Task[In, Out]) release() {
	if t.slots != nil {
		<-t.slots
	}
}

// call runs the function, turning a panic into a *PanicError.
func (t *Task[In, Out]) call(ctx context.Context, in In) (out Out, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Task: t.name, Value: v, Stack: debug.Stack()}
		}
	}()
	return t.fn(ctx, in)
}

// ctxErr says why ctx ended: the task's own timeout (its cause), or the
// caller's cancellation or deadline.
func ctxErr(ctx context.Context, name string) error {
	cause := context.Cause(ctx)
	var te *timeoutError
	if errors.As(cause, &te) {
		return cause
	}
	if cause == nil {
		cause = ctx.Err()
	}
	return fmt.Errorf("task %q: %w", name, cause)
}

// wait waits d, or until ctx ends (false).
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// providerKey carries, for a fire-and-forget run, the TracerProvider of
// the caller's span: by the time the run starts that span may have ended
// (and stopped recording), but the run belongs to the same pipeline.
type providerKey struct{}

// withCallersProvider remembers the provider of ctx's span, if it records.
func withCallersProvider(ctx context.Context) context.Context {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		return context.WithValue(ctx, providerKey{}, span.TracerProvider())
	}
	return ctx
}

// instrumentationName names the tracer.
const instrumentationName = "github.com/loom-mesh/loom/task"

// Span attribute keys.
const (
	attrTask          = attribute.Key("loom.task")
	attrCorrelationID = attribute.Key("loom.correlation_id")
	attrAttempts      = attribute.Key("loom.task.attempts")
	attrFailedStep    = attribute.Key("loom.task.failed_step")
	attrErrorCode     = attribute.Key("loom.task.error_code")
)

func (t *Task[In, Out]) startSpan(ctx context.Context) (context.Context, trace.Span) {
	ctx, span := t.tracerFor(ctx).Start(ctx, t.spanName, spanOpts...)
	if span.IsRecording() {
		span.SetAttributes(attrTask.String(t.name))
		if cid := loomrt.CorrelationID(ctx); cid != "" {
			span.SetAttributes(attrCorrelationID.String(cid))
		}
	}
	return ctx, span
}

func endSpan(span trace.Span, attempts int, err error, step string) {
	span.SetAttributes(attrAttempts.Int(attempts))
	if err == nil {
		span.SetStatus(codes.Ok, "")
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(attrErrorCode.String(Code(err)))
	if step != "" {
		span.SetAttributes(attrFailedStep.String(step))
	}
}

// tracerFor returns the tracer of the injected TracerProvider, else of the
// provider of the caller's span when it records (so that the pipeline a
// node or an application set up for its requests carries their tasks),
// else of the global provider as it is now. The last one is cached.
func (t *Task[In, Out]) tracerFor(ctx context.Context) trace.Tracer {
	tp := t.cfg.tracerProvider
	if tp == nil {
		if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
			tp = parent.TracerProvider()
		} else if p, ok := ctx.Value(providerKey{}).(trace.TracerProvider); ok {
			tp = p // a fire-and-forget run whose caller's span has ended
		} else {
			tp = otel.GetTracerProvider()
		}
	}
	if c := t.tracer.Load(); c != nil && c.tp == tp {
		return c.tr
	}
	tr := tp.Tracer(instrumentationName)
	// Only a comparable provider can be found again by ==; others (rare)
	// ask for their tracer on every run.
	if reflect.TypeOf(tp).Comparable() {
		t.tracer.Store(&tracerCache{tp: tp, tr: tr})
	}
	return tr
}

func (t *Task[In, Out]) taskStats() *stats  { return t.stats }
func (t *Task[In, Out]) steps() []statsNode { return t.children }
