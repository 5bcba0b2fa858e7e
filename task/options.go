package task

import (
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// An Option configures a task (New, From and the combinators).
type Option func(*config)

// config is a task's settings; fixed once the task is built.
type config struct {
	timeout        time.Duration
	attemptTimeout time.Duration
	maxAttempts    int
	backoff        Backoff
	retryIf        func(error) bool
	maxConcurrent  int
	tracerProvider trace.TracerProvider
	onRetry        func(Retry)
	random         func() float64
}

func defaultConfig() config {
	return config{maxAttempts: 1, backoff: DefaultBackoff(), retryIf: DefaultRetryable, random: rand.Float64}
}

// Timeout bounds a whole run: every attempt, the waits between them, and
// waiting for a concurrency slot. When it passes, Run returns at once with
// an error matching ErrTimeout (and context.DeadlineExceeded), even if the
// function does not honor its context: the function's goroutine is then
// abandoned and its result discarded. 0 (the default) means no bound
// beyond the caller's context.
func Timeout(d time.Duration) Option {
	return func(c *config) { c.timeout = max(d, 0) }
}

// AttemptTimeout bounds each attempt, like Timeout bounds the run. An
// attempt that times out fails with ErrTimeout and is retried when retries
// are set (and the retry predicate agrees). 0 (the default) means no bound.
func AttemptTimeout(d time.Duration) Option {
	return func(c *config) { c.attemptTimeout = max(d, 0) }
}

// Retries lets a failed run be retried up to n times (n+1 attempts in
// all), waiting between attempts as the Backoff says (DefaultBackoff
// unless WithBackoff). Default 0: one attempt.
func Retries(n int) Option {
	return func(c *config) { c.maxAttempts = 1 + max(n, 0) }
}

// WithBackoff sets the waits between attempts (see Backoff; zero fields
// take their defaults).
func WithBackoff(b Backoff) Option {
	return func(c *config) { c.backoff = b.withDefaults() }
}

// RetryIf replaces DefaultRetryable: a failed attempt is retried only when
// retryable(err) is true. Errors marked Permanent are never retried, nor
// any error once the caller's context or the task's Timeout has ended.
func RetryIf(retryable func(err error) bool) Option {
	return func(c *config) {
		if retryable != nil {
			c.retryIf = retryable
		}
	}
}

// MaxConcurrent limits how many attempts of this task run at once, across
// all its callers; further runs wait for a slot (the wait counts towards
// Timeout and ends with the caller's context). A slot is held until the
// function returns, even by an attempt whose caller stopped waiting, so
// the limit bounds the functions really running. 0 (the default) means no
// limit.
func MaxConcurrent(n int) Option {
	return func(c *config) { c.maxConcurrent = max(n, 0) }
}

// WithTracerProvider makes runs spans of tp's tracer. Without it a run
// uses the provider of the caller's span when that span is recording (an
// HTTP request or a call traced by the node), else the global
// TracerProvider (otel.GetTracerProvider()) at the time of the run, which
// is a no-op until an application installs one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// Retry describes a retry about to happen, for OnRetry.
type Retry struct {
	Task    string
	Attempt int           // the attempt that failed, from 1
	Err     error         // its error
	Delay   time.Duration // the wait before the next attempt
}

// OnRetry calls f, on the running goroutine, each time a failed attempt is
// about to be retried (before the wait): for logging, or for a test to
// know a run is waiting.
func OnRetry(f func(Retry)) Option {
	return func(c *config) { c.onRetry = f }
}

// withRandom replaces the source of jitter (tests).
func withRandom(f func() float64) Option {
	return func(c *config) { c.random = f }
}
