package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/loom-mesh/loom/journal"
)

// Reentrancy. An actor runs one turn at a time, so a call into an actor
// whose turn is waiting, further up the same call chain, for that very
// call (A → B → A) can only fail: ErrCallCycle. A type marked reentrant
// (Type.Reentrant, or actorPools.types.<type>.reentrant) lets such a call
// in instead, as Orleans' [Reentrant] and Dapr's actor reentrancy do:
//
//   - Only a call from the waiting turn's own chain interleaves; calls
//     from anywhere else still wait in the mailbox, one turn at a time.
//     The interleaved turn runs while the waiting turn is blocked in its
//     call, so the two never run at the same instant; several calls
//     re-entering one turn run one at a time.
//   - The interleaved turn sees the waiting turn's uncommitted State
//     changes. When it succeeds it commits them together with its own,
//     as one journal entry, before its caller hears "ok": each re-entry
//     is a commit point of the turn it interleaves with, which is then
//     no longer all or nothing. If the waiting turn later fails, only its
//     changes made after the last re-entry are discarded. If the
//     interleaved turn fails, only its own changes are discarded.
//   - If the interleaved turn panics or cannot commit, the waiting turn
//     fails when it resumes (its error wraps the cause) and the actor is
//     deactivated, as after a failed turn; what re-entries committed
//     before stays committed.
//   - A call that re-enters an actor being deactivated fails with
//     ErrUnavailable; the chain depth limit applies as to any call.

// Reentrant marks the type reentrant (see above) and returns t.
func (t *Type[T]) Reentrant() *Type[T] {
	t.def.mu.Lock()
	t.def.reentrant = true
	t.def.mu.Unlock()
	return t
}

// inChain reports whether ctx's call chain holds the actor (typ, id).
func inChain(ctx context.Context, typ, id string) bool {
	for l := chainOf(ctx); l != nil; l = l.parent {
		if l.id == id && l.typ == typ {
			return true
		}
	}
	return false
}

// saved is a State's uncommitted changes, kept to be put back.
type saved struct {
	writes  map[string]pending
	cleared bool
	rec     *idemRecord
}

func (s *State) save() saved {
	w := make(map[string]pending, len(s.writes))
	for k, v := range s.writes {
		w[k] = v
	}
	return saved{writes: w, cleared: s.cleared, rec: s.rec}
}

func (s *State) restore(v saved) { s.writes, s.cleared, s.rec = v.writes, v.cleared, v.rec }

// reentry is the state of a reentrant actor's running turns: the call
// chain depth of each, outermost first. The outer turn holds the mailbox;
// each other one re-entered the turn on top of the stack, from that
// turn's own chain, and runs while the turns below it wait in their calls.
type reentry struct {
	mu       sync.Mutex
	cond     *sync.Cond
	stack    []int // chain depths of the running turns; empty: no turn open
	poisoned error // a re-entering turn panicked or could not commit
	// closing: the actor is being deactivated (its OnDeactivate hook may
	// be running and calling out); a call re-entering it then fails.
	closing bool
}

// markDeactivating refuses re-entry from now on (deactivateHeld).
func (a *activation) markDeactivating() {
	a.reentry.mu.Lock()
	a.reentry.closing = true
	a.reentry.mu.Unlock()
}

// openReentry lets calls from tc's chain re-enter a while tc's turn runs;
// the returned function closes it again, waits for re-entering turns
// still running, and returns what poisoned the actor, if anything.
func (a *activation) openReentry(tc *turnCtx) func() error {
	re := &a.reentry
	re.mu.Lock()
	if re.cond == nil {
		re.cond = sync.NewCond(&re.mu)
	}
	re.stack = append(re.stack[:0], tc.link.depth)
	re.mu.Unlock()
	return func() error {
		re.mu.Lock()
		defer re.mu.Unlock()
		for len(re.stack) > 1 {
			re.cond.Wait()
		}
		re.stack = re.stack[:0]
		re.cond.Broadcast() // waiters fall back to the mailbox
		err := re.poisoned
		re.poisoned = nil
		return err
	}
}

// deepest is the depth of the innermost turn of (typ, id) in ctx's chain.
func deepest(ctx context.Context, typ, id string) int {
	for l := chainOf(ctx); l != nil; l = l.parent {
		if l.id == id && l.typ == typ {
			return l.depth
		}
	}
	return 0
}

// nestedTurn runs fn as a turn of a interleaved with a's running turns,
// once the innermost of them is the one ctx's chain comes from (see
// above). ok is false when a has no turn open to re-entry (it ended
// meanwhile): the call then waits for the mailbox like any other.
func (r *Runtime) nestedTurn(ctx context.Context, a *activation, method string, enc func(any) ([]byte, error), fn func(*turnCtx) (any, error)) (res any, ok bool, err error) {
	re := &a.reentry
	from := deepest(ctx, a.typ.name, a.id)
	re.mu.Lock()
	if re.cond == nil {
		re.cond = sync.NewCond(&re.mu)
	}
	stop := context.AfterFunc(ctx, func() {
		re.mu.Lock()
		re.cond.Broadcast()
		re.mu.Unlock()
	})
	defer stop()
	for len(re.stack) > 0 && re.stack[len(re.stack)-1] != from && ctx.Err() == nil {
		re.cond.Wait() // another re-entering turn runs
	}
	switch {
	case re.closing:
		re.mu.Unlock()
		return nil, true, fmt.Errorf("%w: %s is being deactivated; a call from its own chain cannot enter it", ErrUnavailable, a.key)
	case len(re.stack) == 0:
		re.mu.Unlock()
		return nil, false, nil
	case ctx.Err() != nil:
		re.mu.Unlock()
		return nil, true, fmt.Errorf("loom: waiting to re-enter %s: %w", a.key, ctx.Err())
	case a.dead || re.poisoned != nil:
		re.mu.Unlock()
		return nil, true, fmt.Errorf("%w: %s is being deactivated", ErrUnavailable, a.key)
	}
	re.stack = append(re.stack, chainOf(ctx).depth+1) // this turn's own depth (newTurnCtx)
	re.mu.Unlock()
	defer func() {
		re.mu.Lock()
		re.stack = re.stack[:len(re.stack)-1]
		if err != nil && re.poisoned == nil && poisons(err) {
			re.poisoned = err
		}
		re.cond.Broadcast()
		re.mu.Unlock()
	}()
	return r.reenter(ctx, a, method, enc, fn)
}

// reenter runs one re-entering turn (see nestedTurn).
func (r *Runtime) reenter(ctx context.Context, a *activation, method string, enc func(any) ([]byte, error), fn func(*turnCtx) (any, error)) (res any, ok bool, err error) {
	keyed := enc != nil && IdempotencyKey(ctx) != ""
	if keyed {
		if res, done, err := r.keyedTurn(ctx, a, method); done {
			return res, true, err
		}
	}
	before := a.state.save()
	tc := newTurnCtx(ctx, a)
	res, panicked, err := protect(a, method, func() (any, error) { return fn(tc) })
	if panicked {
		a.state.restore(before)
		return nil, true, poisoning{err}
	}
	if err != nil {
		a.state.restore(before)
		return nil, true, &MethodError{Actor: a.key, Method: method, Err: err}
	}
	if keyed {
		b, err := enc(res)
		if err != nil {
			a.state.restore(before)
			return nil, true, fmt.Errorf("loom: encoding result of %s.%s: %w", a.typ.name, method, err)
		}
		a.state.rec = &idemRecord{method: method, result: b}
		res = recorded{b: b, v: res, fresh: true}
	}
	if err := r.appendTurn(ctx, a, journal.KindInvocation, method); err != nil {
		return nil, true, poisoning{err}
	}
	return res, true, nil
}

// poisoning marks a re-entering turn's failure that leaves the actor's
// memory unlike its journal (a panic, a failed append): the turn it
// interleaved with fails and deactivates the actor (see turn).
type poisoning struct{ err error }

func (p poisoning) Error() string { return p.err.Error() }
func (p poisoning) Unwrap() error { return p.err }

func poisons(err error) bool {
	var p poisoning
	return errors.As(err, &p)
}
