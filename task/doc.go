// Package task runs lightweight, stateless operations — work that needs no
// actor and no journal — with timing, retries, timeouts, a concurrency
// limit, tracing, metrics and typed composition.
//
//	var Resize = task.New("resize", func(ctx context.Context, img Image) (Thumb, error) {
//		...
//	}, task.Timeout(5*time.Second), task.Retries(3))
//
//	res := Resize.Run(ctx, img) // res.Success, res.Value, res.Err, res.Duration, res.Attempts, res.Start
//
// A type with a Run(ctx, In) (Out, error) method is a task too (From), and
// tasks compose into tasks: Then and Chain (output to input, stopping at
// the first failure), All and AllSettled (in parallel, collecting), Race
// and FirstSuccess.
//
// # What a Run guarantees
//
//   - It never panics and never returns without a Result: a panic in the
//     function becomes an error matching ErrPanic (a *PanicError with the
//     stack). Nothing is written to a journal; a task's only effects are
//     its function's.
//   - It returns as soon as the caller's context ends or the task's Timeout
//     passes, even if the function ignores its context. The function then
//     keeps running on its own goroutine until it returns, and its result
//     is discarded; it still holds its MaxConcurrent slot until then, so
//     the limit bounds what really runs. (With neither a Timeout nor a
//     cancelable context, the function is called on the caller's goroutine.)
//   - Retries: a failed attempt is retried, after Backoff's exponential,
//     jittered wait, while attempts remain (Retries), the retry predicate
//     agrees (RetryIf; DefaultRetryable retries everything but panics), the
//     error is not marked Permanent, and neither the caller's context nor
//     the Timeout has ended. A wait is cut short when they end. The Result
//     carries the last attempt's error and how many attempts there were.
//   - Timeout bounds the whole run (attempts, waits, waiting for a slot);
//     AttemptTimeout bounds each attempt, and a timed-out attempt may be
//     retried. Both fail with an error matching ErrTimeout and
//     context.DeadlineExceeded; the caller's own deadline or cancellation
//     is reported as context.DeadlineExceeded or context.Canceled.
//   - MaxConcurrent(n): at most n attempts of the task run at once, in the
//     whole process; others wait, in arrival order as far as Go's channels
//     give it, bounded by their context and Timeout.
//   - Composition: a composed task is a Task with its own options; its
//     steps run as ordinary Runs with theirs. A step's failure is a
//     *StepError naming the step, and Result.FailedStep names the innermost
//     step that failed. Parallel combinators wait for all their steps
//     before returning, canceling those no longer needed.
//
// # Correlation and tracing
//
// The function receives the caller's context, so the correlation id
// (runtime.CorrelationID; the gateway, the transport and actor turns carry
// it) and the trace context of an actor turn or an HTTP request reach it.
// Each Run is a span named "task <name>" (child of the caller's span,
// attributes loom.task, loom.correlation_id, loom.task.attempts and, on
// failure, loom.task.error_code and loom.task.failed_step), from the
// TracerProvider given with WithTracerProvider, else the provider of the
// caller's span when it is recording (a node's traced request; a
// fire-and-forget run keeps it after that span has ended), else the global
// one (otel.GetTracerProvider()), which is a no-op until an application
// installs one. The package sets no OpenTelemetry or
// Prometheus global.
//
// # Metrics
//
// Each Task counts its runs, failures, retries and a duration histogram
// with atomic counters of its own (loom_task_runs_total,
// loom_task_failures_total, loom_task_retries_total and
// loom_task_duration_seconds, labeled task=<name>), so they count every run
// of it in the process. A Collector (NewCollector, or Registry.Collector)
// exposes them to Prometheus; a node offers its registry's collector for
// its /metrics.
//
// # Running by name
//
// A Registry (what a node holds) runs registered tasks by name with JSON
// input and answers an Outcome: the Result with the value as JSON and the
// error as a code (Code) and a message. That is how the HTTP gateway
// (POST /v1/tasks/{name}) and the cluster client run tasks; Task.Call and
// Task.Start do it typed through any Invoker. StartTask is the
// fire-and-forget form: it validates the name and input, returns, and
// leaves the outcome to the metrics, the span and the registry's log. An
// unknown name is ErrUnknownTask; input that does not decode is
// runtime.ErrBadPayload. Registry.Close waits for fire-and-forget runs
// (until its context ends, then cancels them).
//
// # Overhead
//
// With tracing off (no TracerProvider installed) and no options, Run adds a
// few hundred nanoseconds to calling the function (see docs/performance.md,
// Tasks; BenchmarkRunOverhead measures it). A cancelable
// context or a timeout adds a goroutine per attempt.
package task
