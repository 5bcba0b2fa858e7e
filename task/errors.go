package task

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Test with errors.Is; the errors a Run reports wrap them
// with the task's name and details.
var (
	// ErrTimeout: the task's Timeout, or one attempt's AttemptTimeout,
	// passed. The error also matches context.DeadlineExceeded. An attempt
	// that timed out is retried (when retries are set) as long as the
	// task's overall Timeout and the caller's context allow.
	ErrTimeout = errors.New("task: timed out")
	// ErrPanic: the task's function panicked. The error is a *PanicError
	// carrying the value and the stack. Panics are not retried by default.
	ErrPanic = errors.New("task: panicked")
	// ErrUnknownTask: no task of that name is registered (a Registry, a
	// node). Nothing ran.
	ErrUnknownTask = errors.New("task: unknown task")
	// ErrDuplicateTask: two tasks of one name were registered together.
	ErrDuplicateTask = errors.New("task: duplicate task name")
)

// PanicError is a panic recovered from a task's function. It matches
// ErrPanic.
type PanicError struct {
	Task  string // the task's name
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("task %q panicked: %v", e.Task, e.Value)
}

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// StepError is the failure of one step of a composed task (Then, Chain,
// All, Race, FirstSuccess): which step failed and with what. errors.Is and
// errors.As see through it to the step's own error.
type StepError struct {
	Step     string // the failed step's task name
	Index    int    // its position among the composition's steps, from 0
	Attempts int    // the attempts the step made
	Err      error  // the step's error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %d (%s): %v", e.Index, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// failedStep names the innermost step that failed in err ("" when err is
// not a step failure): for Then(x, Then(a, b)) failing in b, "b".
func failedStep(err error) string {
	name := ""
	for {
		var se *StepError
		if !errors.As(err, &se) {
			return name
		}
		name, err = se.Step, se.Err
	}
}

// Permanent marks err as not worth retrying: a task returning it is not
// retried whatever the retry predicate says. errors.Is and errors.As see
// through the mark. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// DefaultRetryable is the retry predicate used unless RetryIf replaces it:
// every error is retryable except panics. (Errors marked Permanent, and
// every error once the caller's context or the task's Timeout has ended,
// are never retried, whatever the predicate.)
func DefaultRetryable(err error) bool {
	return !errors.Is(err, ErrPanic)
}

// timeoutError is what a run reports when the task's own Timeout (or an
// attempt's) passes: it matches ErrTimeout and context.DeadlineExceeded.
type timeoutError struct {
	task    string
	after   string // "after 2s" or "attempt after 100ms"
	attempt bool
}

func (e *timeoutError) Error() string {
	if e.attempt {
		return fmt.Sprintf("task %q: attempt timed out after %s", e.task, e.after)
	}
	return fmt.Sprintf("task %q: timed out after %s", e.task, e.after)
}

func (e *timeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

// Outcome error codes: Code maps a run's error to one, and a RemoteError
// maps it back to the sentinel it stands for.
const (
	CodeFailed           = "failed"            // the function returned an error
	CodeTimeout          = "timeout"           // the task's Timeout or AttemptTimeout (ErrTimeout)
	CodePanic            = "panic"             // the function panicked (ErrPanic)
	CodeCanceled         = "canceled"          // the caller's context was canceled
	CodeDeadlineExceeded = "deadline_exceeded" // the caller's deadline passed
)

// Code is the stable code of a run's error, as an Outcome carries it.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTimeout):
		return CodeTimeout
	case errors.Is(err, ErrPanic):
		return CodePanic
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	default:
		return CodeFailed
	}
}

// RemoteError is a run's error as it came back from a node (through
// Task.Call): the remote message, and the code, which errors.Is maps back
// to its sentinel (ErrTimeout, ErrPanic, context.Canceled,
// context.DeadlineExceeded).
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Is matches the sentinel of the error's code.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case CodeTimeout:
		return target == ErrTimeout || target == context.DeadlineExceeded
	case CodePanic:
		return target == ErrPanic
	case CodeCanceled:
		return target == context.Canceled
	case CodeDeadlineExceeded:
		return target == context.DeadlineExceeded
	}
	return false
}
