package task

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// The combinators build tasks out of tasks. The result is a *Task like any
// other: it has its own name, options (a Timeout bounds the whole
// composition, Retries retry all of it), span, counters, and can be
// registered on a node. Each step runs with its own options as an ordinary
// Run, so its span is a child of the composition's and its counters are
// its own. A step's failure is reported as a *StepError naming the step,
// and Result.FailedStep names the innermost failed step.
//
// The parallel combinators (All, AllSettled, Race, FirstSuccess) run each
// step on its own goroutine with the same input and wait for every one of
// them before returning; steps that are no longer needed are canceled
// through their context (and, being Runs, return at once even if their
// function ignores it).

// Then runs first, then second on first's output. It stops at the first
// failure: the error is a *StepError with Index 0 or 1.
func Then[A, B, C any](name string, first *Task[A, B], second *Task[B, C], opts ...Option) *Task[A, C] {
	fn := func(ctx context.Context, a A) (C, error) {
		var zero C
		r1 := first.Run(ctx, a)
		if !r1.Success {
			return zero, &StepError{Step: first.name, Index: 0, Attempts: r1.Attempts, Err: r1.Err}
		}
		r2 := second.Run(ctx, r1.Value)
		if !r2.Success {
			return zero, &StepError{Step: second.name, Index: 1, Attempts: r2.Attempts, Err: r2.Err}
		}
		return r2.Value, nil
	}
	return build(name, fn, []statsNode{first, second}, opts)
}

// Chain runs steps in order, each on the previous one's output (the first
// on the input), and stops at the first failure (a *StepError with the
// step's index). With no steps it returns its input.
func Chain[T any](name string, steps []*Task[T, T], opts ...Option) *Task[T, T] {
	steps = append([]*Task[T, T](nil), steps...)
	fn := func(ctx context.Context, v T) (T, error) {
		for i, s := range steps {
			r := s.Run(ctx, v)
			if !r.Success {
				var zero T
				return zero, &StepError{Step: s.name, Index: i, Attempts: r.Attempts, Err: r.Err}
			}
			v = r.Value
		}
		return v, nil
	}
	return build(name, fn, nodes(steps), opts)
}

// All runs steps in parallel on the same input and collects their outputs,
// in step order. The first failure cancels the other steps and fails the
// whole (a *StepError naming the step that failed first).
func All[In, Out any](name string, steps []*Task[In, Out], opts ...Option) *Task[In, []Out] {
	steps = append([]*Task[In, Out](nil), steps...)
	fn := func(ctx context.Context, in In) ([]Out, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		outs := make([]Out, len(steps))
		var (
			once     sync.Once
			firstErr error
			wg       sync.WaitGroup
		)
		for i, s := range steps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.Run(ctx, in)
				if r.Success {
					outs[i] = r.Value
					return
				}
				once.Do(func() {
					firstErr = &StepError{Step: s.name, Index: i, Attempts: r.Attempts, Err: r.Err}
					cancel()
				})
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
		return outs, nil
	}
	return build(name, fn, nodes(steps), opts)
}

// AllSettled runs steps in parallel on the same input and collects every
// step's Result, in step order, failures included. It succeeds even when
// steps fail; each step's Result says how it went.
func AllSettled[In, Out any](name string, steps []*Task[In, Out], opts ...Option) *Task[In, []Result[Out]] {
	steps = append([]*Task[In, Out](nil), steps...)
	fn := func(ctx context.Context, in In) ([]Result[Out], error) {
		results := make([]Result[Out], len(steps))
		var wg sync.WaitGroup
		for i, s := range steps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.Run(ctx, in)
			}()
		}
		wg.Wait()
		return results, nil
	}
	return build(name, fn, nodes(steps), opts)
}

// errNoSteps fails Race and FirstSuccess without steps.
var errNoSteps = errors.New("task: composition has no steps")

// Race runs steps in parallel on the same input; the first to finish, in
// success or failure, decides, and the others are canceled. A failure is a
// *StepError naming that step.
func Race[In, Out any](name string, steps []*Task[In, Out], opts ...Option) *Task[In, Out] {
	return race(name, steps, false, opts)
}

// FirstSuccess runs steps in parallel on the same input; the first to
// succeed decides, and the others are canceled. It fails only when every
// step has failed: the error then joins each step's *StepError, in step
// order (errors.Is and errors.As see every one).
func FirstSuccess[In, Out any](name string, steps []*Task[In, Out], opts ...Option) *Task[In, Out] {
	return race(name, steps, true, opts)
}

func race[In, Out any](name string, steps []*Task[In, Out], needSuccess bool, opts []Option) *Task[In, Out] {
	steps = append([]*Task[In, Out](nil), steps...)
	type finished struct {
		i int
		r Result[Out]
	}
	fn := func(ctx context.Context, in In) (Out, error) {
		var zero Out
		if len(steps) == 0 {
			return zero, fmt.Errorf("%w: %s", errNoSteps, name)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan finished, len(steps)) // never blocks a step
		var wg sync.WaitGroup
		defer func() {
			cancel() // the steps still running are not needed
			wg.Wait()
		}()
		for i, s := range steps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				done <- finished{i, s.Run(ctx, in)}
			}()
		}
		errs := make([]error, len(steps))
		for range steps {
			f := <-done
			s := steps[f.i]
			if f.r.Success {
				return f.r.Value, nil
			}
			errs[f.i] = &StepError{Step: s.name, Index: f.i, Attempts: f.r.Attempts, Err: f.r.Err}
			if !needSuccess {
				return zero, errs[f.i]
			}
		}
		return zero, errors.Join(errs...)
	}
	return build(name, fn, nodes(steps), opts)
}

func nodes[In, Out any](steps []*Task[In, Out]) []statsNode {
	out := make([]statsNode, len(steps))
	for i, s := range steps {
		out[i] = s
	}
	return out
}
