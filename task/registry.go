package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	loomrt "github.com/loom-mesh/loom/runtime"
)

// Definition is a task that can be registered and run by name with JSON
// input and output: any *Task[In, Out]. It is implemented only by *Task.
type Definition interface {
	// Name is the task's name.
	Name() string
	// prepare decodes the input; the returned function runs the task on it.
	prepare(input []byte) (func(ctx context.Context) (Outcome, error), error)
	statsNode
}

var _ Definition = (*Task[int, int])(nil)

// Outcome is a Result in its encoded form: what the HTTP gateway answers
// (as JSON) and what a task run through a node or the cluster client
// returns. A run that failed is an Outcome with Success false, not an
// error: errors are for runs that did not happen (unknown task, bad
// input, node unavailable).
type Outcome struct {
	Success bool `json:"success"`
	// Value is the task's output as JSON (absent when it failed).
	Value json.RawMessage `json:"value,omitempty"`
	// Error says why it failed: a code (see Code) and the message.
	Error *OutcomeError `json:"error,omitempty"`
	// DurationMs is Result.Duration in milliseconds (fractional).
	DurationMs float64   `json:"durationMs"`
	Attempts   int       `json:"attempts"`
	Start      time.Time `json:"start"`
	// FailedStep is Result.FailedStep.
	FailedStep string `json:"failedStep,omitempty"`
}

// OutcomeError is a failed run's error in an Outcome.
type OutcomeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Duration is DurationMs as a time.Duration.
func (o Outcome) Duration() time.Duration {
	return time.Duration(o.DurationMs * float64(time.Millisecond))
}

// Invoker runs registered tasks by name with JSON input: a Registry, a
// node, the cluster client. Task.Call and Task.Start go through it, so the
// same code works against each.
type Invoker interface {
	// RunTask runs the task and returns its outcome. The error is for a
	// run that did not happen: ErrUnknownTask, runtime.ErrBadPayload (the
	// input does not decode), runtime.ErrShuttingDown, and, remotely,
	// runtime.ErrUnavailable and the transport's errors.
	RunTask(ctx context.Context, name string, input []byte) (Outcome, error)
	// StartTask is the fire-and-forget form: it checks the name and the
	// input, starts the run and returns at once. The outcome goes to the
	// task's metrics and span (and the log of the Registry running it).
	StartTask(ctx context.Context, name string, input []byte) error
}

func (t *Task[In, Out]) prepare(input []byte) (func(ctx context.Context) (Outcome, error), error) {
	var in In
	if len(input) > 0 {
		if err := json.Unmarshal(input, &in); err != nil {
			return nil, fmt.Errorf("%w: task %q: input is not valid JSON for %T: %v", loomrt.ErrBadPayload, t.name, in, err)
		}
	}
	return func(ctx context.Context) (Outcome, error) {
		return t.outcome(t.Run(ctx, in))
	}, nil
}

// outcome encodes a Result.
func (t *Task[In, Out]) outcome(r Result[Out]) (Outcome, error) {
	o := Outcome{
		Success: r.Success, DurationMs: float64(r.Duration) / float64(time.Millisecond),
		Attempts: r.Attempts, Start: r.Start, FailedStep: r.FailedStep,
	}
	if !r.Success {
		o.Error = &OutcomeError{Code: Code(r.Err), Message: r.Err.Error()}
		return o, nil
	}
	v, err := json.Marshal(r.Value)
	if err != nil {
		return o, fmt.Errorf("task %q ran, but its result does not encode as JSON: %w", t.name, err)
	}
	o.Value = v
	return o, nil
}

// Call runs the task through inv (a node, the cluster client, a Registry)
// by its name, with in encoded as JSON, and decodes the outcome into a
// Result. The task must be registered there under the same name and types.
// A run that failed is a Result whose Err is a *RemoteError (matching
// ErrTimeout, ErrPanic, ... by its code); the error is for a run that did
// not happen (see Invoker).
func (t *Task[In, Out]) Call(ctx context.Context, inv Invoker, in In) (Result[Out], error) {
	input, err := json.Marshal(in)
	if err != nil {
		return Result[Out]{}, fmt.Errorf("%w: task %q: encoding the input: %v", loomrt.ErrBadPayload, t.name, err)
	}
	o, err := inv.RunTask(ctx, t.name, input)
	if err != nil {
		return Result[Out]{}, err
	}
	r := Result[Out]{Success: o.Success, Start: o.Start, Duration: o.Duration(), Attempts: o.Attempts, FailedStep: o.FailedStep}
	if !o.Success {
		e := OutcomeError{Code: CodeFailed, Message: "task failed"}
		if o.Error != nil {
			e = *o.Error
		}
		r.Err = &RemoteError{Code: e.Code, Message: e.Message}
		return r, nil
	}
	if len(o.Value) > 0 {
		if err := json.Unmarshal(o.Value, &r.Value); err != nil {
			return r, fmt.Errorf("%w: task %q: decoding the result: %v", loomrt.ErrBadPayload, t.name, err)
		}
	}
	return r, nil
}

// Start runs the task through inv without waiting (Invoker.StartTask).
func (t *Task[In, Out]) Start(ctx context.Context, inv Invoker, in In) error {
	input, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: task %q: encoding the input: %v", loomrt.ErrBadPayload, t.name, err)
	}
	return inv.StartTask(ctx, t.name, input)
}

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// Tasks to register; names must be unique.
	Tasks []Definition
	// Logger receives a line for each fire-and-forget run that fails; nil
	// discards.
	Logger *slog.Logger
}

// Registry runs tasks by name: it is what a node holds. It implements
// Invoker. Safe for concurrent use.
//
// Fire-and-forget runs (StartTask) run on goroutines the Registry tracks:
// they keep the caller's context values (correlation id, trace context)
// but not its cancellation or deadline, and Close waits for them.
type Registry struct {
	tasks     map[string]Definition
	names     []string
	log       *slog.Logger
	collector *Collector

	bg     context.Context // canceled when Close gives up waiting
	stopBg context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // fire-and-forget runs
}

var _ Invoker = (*Registry)(nil)

// NewRegistry builds a registry. Two tasks with one name are refused
// (ErrDuplicateTask). It starts nothing.
func NewRegistry(opts RegistryOptions) (*Registry, error) {
	r := &Registry{tasks: map[string]Definition{}, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	roots := make([]statsNode, 0, len(opts.Tasks))
	for _, d := range opts.Tasks {
		if d == nil {
			errs = append(errs, errors.New("task: nil task registered"))
			continue
		}
		name := d.Name()
		if name == "" {
			errs = append(errs, errors.New("task: a task has an empty name"))
			continue
		}
		if _, dup := r.tasks[name]; dup {
			errs = append(errs, fmt.Errorf("%w: %q", ErrDuplicateTask, name))
			continue
		}
		r.tasks[name] = d
		r.names = append(r.names, name)
		roots = append(roots, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(r.names)
	r.collector = &Collector{roots: func() []statsNode { return roots }}
	r.bg, r.stopBg = context.WithCancel(context.Background())
	return r, nil
}

// Names lists the registered tasks' names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Collector is the prometheus.Collector of the registered tasks (and the
// steps they are composed of).
func (r *Registry) Collector() *Collector { return r.collector }

func (r *Registry) prepare(name string, input []byte) (func(ctx context.Context) (Outcome, error), error) {
	d, ok := r.tasks[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTask, name)
	}
	return d.prepare(input)
}

// RunTask implements Invoker.
func (r *Registry) RunTask(ctx context.Context, name string, input []byte) (Outcome, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return Outcome{}, fmt.Errorf("%w: task %q", loomrt.ErrShuttingDown, name)
	}
	run, err := r.prepare(name, input)
	if err != nil {
		return Outcome{}, err
	}
	return run(ctx)
}

// StartTask implements Invoker.
func (r *Registry) StartTask(ctx context.Context, name string, input []byte) error {
	run, err := r.prepare(name, input)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("%w: task %q", loomrt.ErrShuttingDown, name)
	}
	r.wg.Add(1)
	r.mu.Unlock()
	bctx, cancel := context.WithCancel(context.WithoutCancel(withCallersProvider(ctx)))
	stop := context.AfterFunc(r.bg, cancel)
	go func() {
		defer r.wg.Done()
		defer cancel()
		defer stop()
		o, err := run(bctx)
		switch {
		case err != nil:
			r.log.Warn("background task failed", "task", name, "correlation_id", loomrt.CorrelationID(ctx), "err", err)
		case !o.Success:
			r.log.Info("background task failed", "task", name, "correlation_id", loomrt.CorrelationID(ctx), "code", o.Error.Code, "err", o.Error.Message, "attempts", o.Attempts)
		}
	}()
	return nil
}

// Close refuses new runs and waits for the fire-and-forget runs to finish,
// until ctx ends; then it cancels those still running and waits for them
// to return (at once: a Run does not wait for a function that ignores its
// context). It returns ctx's error if it had to cancel. Safe to call more
// than once.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		r.stopBg()
		return nil
	case <-ctx.Done():
		r.stopBg()
		<-done
		return fmt.Errorf("task: background runs canceled: %w", ctx.Err())
	}
}
