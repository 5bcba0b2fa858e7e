package runtime

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/queue"
)

// activation is one actor in memory.
//
// Its mailbox is sem, a channel of capacity one: holding the token (having
// sent into it) means running a turn. Go queues blocked senders in arrival
// order and hands the freed slot to the first of them, so turns run one at
// a time in FIFO order, a waiter can give up when its context ends, and an
// uncontended turn costs no goroutine switch: the caller's goroutine runs
// the method itself. Every field below sem is guarded by holding it.
type activation struct {
	pool *pool
	typ  *typeDef
	id   string
	key  string // journal and lock key: "type/id"

	lastUse  atomic.Uint64 // logical LRU clock reading of the last turn
	lastUsed atomic.Int64  // runtime clock (ns) of the last turn, for idle timeouts
	// activated is the runtime clock (ns) + 1 when the activation
	// completed; 0 while it activates (Activation).
	activated atomic.Int64
	dropped   atomic.Bool  // set by DropAll; the activation may not commit
	waiting   atomic.Int32 // callers blocked on the mailbox

	sem chan struct{}

	dead    bool // deactivated: waiters must look the actor up again
	inst    any  // the *T built by the factory
	state   *State
	token   uint64         // fencing token of this activation's lock grant
	session lock.SessionID // the session the lock was taken under
	seq     uint64         // journal tail this activation has applied
	snapSeq uint64         // Seq of the last snapshot
	timers  map[string]*actorTimer

	reentry reentry // reentrant types' running turns (reentrant.go)
}

func newActivation(p *pool, id string) *activation {
	a := &activation{
		pool:  p,
		typ:   p.td,
		id:    id,
		key:   p.td.name + "/" + id,
		sem:   make(chan struct{}, 1),
		state: newState(),
	}
	a.sem <- struct{}{} // held by the creator until activated
	return a
}

func (a *activation) acquire(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a.waiting.Add(1)
	a.pool.waiting.Add(1)
	defer func() {
		a.waiting.Add(-1)
		a.pool.waiting.Add(-1)
	}()
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquireCall is acquire for a call: it fails at once with ErrOverloaded
// when the pool's MaxQueue calls already wait for this actor.
func (a *activation) acquireCall(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := a.waiting.Add(1); int(n) > a.pool.cfg.MaxQueue {
		a.waiting.Add(-1)
		return fmt.Errorf("%w: %s has %d calls waiting for its turn (maxQueue %d)", ErrOverloaded, a.key, n-1, a.pool.cfg.MaxQueue)
	}
	a.pool.waiting.Add(1)
	defer func() {
		a.waiting.Add(-1)
		a.pool.waiting.Add(-1)
	}()
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *activation) tryAcquire() bool {
	select {
	case a.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (a *activation) release() { <-a.sem }

func (a *activation) touch(now int64) {
	a.lastUse.Store(a.pool.clock.Add(1))
	a.lastUsed.Store(now)
}

// run is the call path shared by Invoke, InvokeLocal and Execute: find or
// activate the actor, wait for its mailbox, run one turn, commit it. a, if
// not nil, is the actor's activation as placeFor found it (serve looks the
// actor up again if it was deactivated since).
//
// enc encodes the method's result: with it, a call whose context carries
// an idempotency key is answered from the actor's record of the key, or
// runs and is recorded (see keyedTurn), and the result is a recorded.
// Without it (Execute) the key is only written in the journal entry.
func (r *Runtime) run(ctx context.Context, reg *registered, a *activation, id, method string, hops int, enc func(any) ([]byte, error), fn func(*turnCtx) (any, error)) (any, error) {
	o := r.opts.Observer
	if o == nil {
		return r.serve(ctx, reg, a, id, method, enc, fn)
	}
	ctx, done := o.StartTurn(ctx, reg.def.name, id, method, hops)
	res, err := r.serve(ctx, reg, a, id, method, enc, fn)
	done(err)
	return res, err
}

// serve is run without the Observer.
func (r *Runtime) serve(ctx context.Context, reg *registered, found *activation, id, method string, enc func(any) ([]byte, error), fn func(*turnCtx) (any, error)) (any, error) {
	if r.closing.Load() {
		return nil, ErrShuttingDown
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l := reg.pool.limiter; l != nil && !l.Allow() {
		return nil, fmt.Errorf("%w: %s calls exceed the type's rate limit of %v/s on this node", ErrOverloaded, reg.def.name, reg.pool.cfg.RateLimit)
	}
	for {
		a, created := found, false
		if found == nil {
			var err error
			if a, created, err = reg.pool.get(ctx, id); err != nil {
				return nil, err
			}
		}
		found = nil // a second time round, look it up again
		if created {
			if sem := reg.pool.activating; sem != nil {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					r.abandon(a, false)
					return nil, fmt.Errorf("loom: waiting for one of %s's %d activation slots: %w", reg.def.name, cap(sem), ctx.Err())
				}
			}
			err := r.activate(ctx, a)
			if sem := reg.pool.activating; sem != nil {
				<-sem
			}
			if err != nil {
				return nil, err
			}
		} else {
			if reg.pool.reentrant && inChain(ctx, reg.def.name, id) {
				if res, ok, err := r.nestedTurn(ctx, a, method, enc, fn); ok {
					return res, err
				}
			}
			if err := a.acquireCall(ctx); err != nil {
				if errors.Is(err, ErrOverloaded) {
					return nil, err
				}
				return nil, fmt.Errorf("loom: waiting for %s: %w", a.key, err)
			}
			if a.dead {
				a.release()
				continue // deactivated while we waited: look it up again
			}
		}
		if r.closing.Load() {
			a.release()
			return nil, ErrShuttingDown
		}
		if a.dropped.Load() {
			a.dead = true
			a.release()
			continue
		}
		if !r.session.Valid() || r.session.Session() != a.session {
			// The lock was taken under a session that may have lapsed
			// (perhaps replaced by a new one since): another node may own
			// the actor now.
			r.deactivateHeld(a, "session may have lapsed", false)
			return nil, fmt.Errorf("%w: the node's coordinator session may have lapsed", ErrUnavailable)
		}
		res, held, err := r.turn(ctx, a, method, enc, fn)
		a.touch(r.monoNow())
		if held {
			a.release()
		}
		return res, err
	}
}

// turn runs fn as one turn of a (mailbox held) and commits its state
// changes. held is false when the turn deactivated the actor, which also
// released the mailbox. With enc and an idempotency key, see run.
func (r *Runtime) turn(ctx context.Context, a *activation, method string, enc func(any) ([]byte, error), fn func(*turnCtx) (any, error)) (res any, held bool, err error) {
	msgID := DeliveryID(ctx)
	keyed := enc != nil && IdempotencyKey(ctx) != "" && msgID == ""
	if keyed {
		if res, done, err := r.keyedTurn(ctx, a, method); done {
			return res, true, err
		}
	}
	tc := newTurnCtx(ctx, a)
	var closeReentry func() error
	if a.pool.reentrant {
		closeReentry = a.openReentry(tc)
	}
	res, panicked, err := protect(a, method, func() (any, error) { return fn(tc) })
	var perr error
	if closeReentry != nil {
		perr = closeReentry()
	}
	if perr != nil {
		// A reentrant call into this turn panicked or could not commit:
		// the actor's memory may not match its journal.
		a.state.discard()
		r.deactivateHeld(a, "reentrant call failed", false)
		return nil, false, fmt.Errorf("loom: %s.%s on %s: a call that re-entered the turn failed: %w", a.typ.name, method, a.key, perr)
	}
	if panicked {
		a.state.discard()
		r.log.ErrorContext(ctx, "actor panicked; deactivating", "actor", a.key, "method", method, "err", err)
		r.deactivateHeld(a, "panic", false)
		return nil, false, err
	}
	if err != nil {
		// A failed turn changes nothing: its writes are discarded. Under
		// a key, its error is remembered (one entry, no changes) unless
		// it leaves the outcome of the method's own calls unknown.
		a.state.discard()
		me := &MethodError{Actor: a.key, Method: method, Err: err}
		if keyed && recordable(err) {
			a.state.rec = failedRecord(err)
			a.state.rec.method = method
			if cerr := r.commit(ctx, a, journal.KindInvocation, method); cerr != nil {
				return nil, false, cerr
			}
		}
		return nil, true, me
	}
	if keyed {
		b, err := enc(res)
		if err != nil {
			// Not committed: a result that cannot be recorded cannot
			// be given again.
			a.state.discard()
			return nil, true, fmt.Errorf("loom: encoding result of %s.%s: %w", a.typ.name, method, err)
		}
		a.state.rec = &idemRecord{method: method, result: b}
		res = recorded{b: b, v: res, fresh: true}
	}
	if deliveryOf(ctx).direct {
		a.state.direct = msgID
	} else {
		a.state.ack = msgID
	}
	if err := r.commit(ctx, a, journal.KindInvocation, method); err != nil {
		// A message refused by the store (settled, or behind a queued
		// ordered one) leaves the activation as it was, still holding
		// its mailbox; any other failure deactivated it.
		return nil, errors.Is(err, journal.ErrAck), err
	}
	return res, true, nil
}

// commit appends the turn's state changes, if any, as one journal entry and
// applies them. On failure the changes are discarded and the actor is
// deactivated (mailbox released): its in-memory view may no longer match
// the journal, so the next call replays it.
func (r *Runtime) commit(ctx context.Context, a *activation, kind journal.Kind, method string) error {
	err := r.appendTurn(ctx, a, kind, method)
	if errors.Is(err, journal.ErrAck) {
		// Refused as a whole with no effect: memory still matches the
		// journal.
		return err
	}
	if err != nil {
		r.deactivateHeld(a, "append failed", false)
	}
	return err
}

// appendTurn is commit without the deactivation on failure (the state's
// changes are discarded): a reentrant turn, which does not hold the
// mailbox, leaves that to the turn it interleaved with (see nestedTurn).
func (r *Runtime) appendTurn(ctx context.Context, a *activation, kind journal.Kind, method string) error {
	if !a.state.dirty() {
		return nil
	}
	if a.dropped.Load() {
		a.state.discard()
		return fmt.Errorf("%w: %s was dropped before its turn committed", ErrUnavailable, a.key)
	}
	now := r.now().UTC()
	var entries []journal.Entry
	if id := a.state.direct; id != "" {
		// A message applied on acceptance: one entry records the turn
		// and accepts the message (its id as the IdempotencyKey, which
		// names no call here: the turn runs without a call's key).
		var changes []byte
		if a.state.changed() {
			changes = a.state.encodeChanges()
		}
		entries = append(entries, journal.Entry{Kind: journal.KindMessageDirect, Method: method, Payload: changes, Time: now, CorrelationID: CorrelationID(ctx), IdempotencyKey: id})
	} else if a.state.changed() {
		e := journal.Entry{
			Kind:           kind,
			Method:         method,
			Payload:        a.state.encodeChanges(),
			Time:           now,
			CorrelationID:  CorrelationID(ctx),
			IdempotencyKey: IdempotencyKey(ctx),
		}
		if rec := a.state.rec; rec != nil {
			rec.key, rec.at, rec.mono = e.IdempotencyKey, e.Time.UnixNano(), r.monoNow()
		}
		entries = append(entries, e)
	}
	entries = append(entries, a.state.messageEntries(method, now, CorrelationID(ctx), "")...)
	tail, err := r.journal.Append(ctx, a.key, a.token, a.seq, entries)
	if errors.Is(err, journal.ErrAck) {
		direct := a.state.direct != ""
		a.state.discard()
		if direct && !errors.Is(err, queue.ErrKnownID) {
			// Not applied and not known: an ordered message of the
			// actor is pending in the store's queue, and goes first.
			// The message must be tried again, not taken as settled.
			return fmt.Errorf("%w: %s.%s on %s: a queued ordered message goes first: %w", ErrUnavailable, a.typ.name, method, a.key, err)
		}
		return fmt.Errorf("%w: %s.%s on %s: %w", ErrMessageSettled, a.typ.name, method, a.key, err)
	}
	if err != nil {
		a.state.discard()
		r.log.WarnContext(ctx, "journal append failed; deactivating", "actor", a.key, "token", a.token, "err", err)
		return fmt.Errorf("loom: committing %s.%s on %s: %w", a.typ.name, method, a.key, err)
	}
	a.state.apply(a.pool.cfg.IdempotencyKeys)
	a.seq = tail
	r.maybeSnapshot(ctx, a)
	return nil
}

// maybeSnapshot saves a snapshot and truncates the journal behind it when
// enough entries have accumulated. Failures are logged: the turn is already
// durable, and the next turn tries again.
func (r *Runtime) maybeSnapshot(ctx context.Context, a *activation) {
	n := uint64(r.opts.SnapshotEvery)
	if n == 0 || a.seq-a.snapSeq < n {
		return
	}
	snap := journal.Snapshot{Seq: a.seq, Data: a.state.encodeSnapshot(r.idemClock())}
	if err := r.journal.SaveSnapshot(ctx, a.key, a.token, snap); err != nil {
		r.log.WarnContext(ctx, "snapshot failed", "actor", a.key, "seq", a.seq, "err", err)
		return
	}
	a.snapSeq = a.seq
	if err := r.journal.Truncate(ctx, a.key, a.token, a.seq); err != nil {
		r.log.WarnContext(ctx, "journal truncate failed", "actor", a.key, "seq", a.seq, "err", err)
	}
}

// activate takes the actor's lock, loads its snapshot, replays its journal
// and runs its OnActivate hook. The caller holds the mailbox (from
// pool.get). On failure the activation is discarded, the mailbox released,
// and the error returned.
func (r *Runtime) activate(ctx context.Context, a *activation) (err error) {
	if o := r.opts.Observer; o != nil {
		var done func(error)
		ctx, done = o.StartActivation(ctx, a.typ.name, a.id)
		defer func() { done(err) }()
	}
	if !r.session.Valid() {
		r.abandon(a, false)
		return fmt.Errorf("%w: the node's coordinator session may have lapsed", ErrUnavailable)
	}
	a.session = r.session.Session()
	tok, kept, err := a.pool.kept.take(ctx, a.key, a.session)
	if !kept && err == nil {
		tok, err = r.coord.Acquire(ctx, a.session, a.key)
	}
	if err != nil {
		r.abandon(a, false)
		if errors.Is(err, lock.ErrHeld) || errors.Is(err, lock.ErrSessionExpired) {
			return fmt.Errorf("%w: activating %s: %w", ErrUnavailable, a.key, err)
		}
		return fmt.Errorf("loom: activating %s: %w", a.key, err)
	}
	a.token = tok
	if err := r.load(ctx, a); err != nil {
		r.abandon(a, true)
		if errors.Is(err, journal.ErrUnavailable) {
			// The journal could not be read here now (its store is
			// unreachable, or this node keeps no replica of it): nothing
			// was applied, and the call may be tried again.
			return fmt.Errorf("%w: activating %s: %w", ErrUnavailable, a.key, err)
		}
		return fmt.Errorf("loom: activating %s: %w", a.key, err)
	}
	a.inst = a.typ.factory(a.id)
	if act, ok := a.inst.(Activator); ok {
		tc := newTurnCtx(ctx, a)
		if _, _, err := protect(a, "OnActivate", func() (any, error) { return nil, act.OnActivate(tc) }); err != nil {
			a.state.discard()
			r.abandon(a, true)
			return fmt.Errorf("loom: activating %s: OnActivate: %w", a.key, err)
		}
		if err := r.commit(ctx, a, journal.KindStateOp, "OnActivate"); err != nil {
			return err // commit deactivated it
		}
	}
	a.activated.Store(r.monoNow() + 1)
	r.log.DebugContext(ctx, "activated", "actor", a.key, "token", a.token, "seq", a.seq)
	return nil
}

// load rebuilds a's state from its snapshot and journal.
func (r *Runtime) load(ctx context.Context, a *activation) error {
	clk := r.idemClock() // maps the remembered keys' wall times to this runtime's clock
	snap, ok, err := r.journal.LoadSnapshot(ctx, a.key)
	if err != nil {
		return err
	}
	if ok {
		if err := a.state.loadSnapshot(snap.Data, a.pool.cfg.IdempotencyKeys, clk); err != nil {
			return fmt.Errorf("%w: snapshot at seq %d: %v", journal.ErrCorrupt, snap.Seq, err)
		}
		a.seq, a.snapSeq = snap.Seq, snap.Seq
	}
	entries, err := r.journal.Read(ctx, a.key, a.seq+1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Seq != a.seq+1 {
			return fmt.Errorf("%w: expected seq %d, found %d", journal.ErrCorrupt, a.seq+1, e.Seq)
		}
		switch e.Kind {
		case journal.KindInvocation, journal.KindStateOp, journal.KindMessageDirect:
			if err := a.state.replayEntry(e, a.pool.cfg.IdempotencyKeys, clk); err != nil {
				return fmt.Errorf("%w: entry %d: %v", journal.ErrCorrupt, e.Seq, err)
			}
		}
		a.seq = e.Seq
	}
	tail, err := r.journal.Tail(ctx, a.key)
	if err != nil {
		return err
	}
	if tail.Token > a.token {
		return fmt.Errorf("%w: %s was written under token %d, ours is %d", journal.ErrFenced, a.key, tail.Token, a.token)
	}
	if tail.Seq != a.seq {
		return fmt.Errorf("%w: %s: replayed up to seq %d but the tail is %d", journal.ErrCorrupt, a.key, a.seq, tail.Seq)
	}
	return nil
}

// abandon discards an activation that failed to activate.
func (r *Runtime) abandon(a *activation, releaseLock bool) {
	a.dead = true
	a.stopTimers()
	a.pool.remove(a)
	if releaseLock {
		r.releaseLock(a)
	}
	a.release()
}

// deactivateHeld deactivates a, whose mailbox the caller holds, and
// releases the mailbox. clean runs the OnDeactivate hook and releases the
// lock; it is false after a panic, a failed append or a lapsed session,
// when the instance or the lock can no longer be trusted.
func (r *Runtime) deactivateHeld(a *activation, reason string, clean bool) {
	a.dead = true
	a.stopTimers()
	if a.pool.reentrant {
		a.markDeactivating()
	}
	if clean && !a.dropped.Load() {
		if d, ok := a.inst.(Deactivator); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.state.readOnly = true
			tc := newTurnCtx(ctx, a)
			if _, _, err := protect(a, "OnDeactivate", func() (any, error) { return nil, d.OnDeactivate(tc) }); err != nil {
				r.log.Warn("OnDeactivate failed", "actor", a.key, "err", err)
			}
			a.state.readOnly = false
			a.state.discard()
			cancel()
		}
		switch {
		case r.closing.Load():
			// On shutdown the node ends its session right after, which
			// frees every lock in one command (and needs no quorum per
			// actor).
		case reason == reasonEvicted:
			a.pool.kept.put(a.key, a.session, a.token) // see kept.go
		default:
			r.releaseLock(a)
		}
	}
	// Only now may the id activate again: a call that finds a here waits
	// for the mailbox, sees it dead and looks again. Removed any earlier,
	// a new activation could acquire the lock (this session's still: the
	// same token) before the release above, which would then free the new
	// activation's lock.
	a.pool.remove(a)
	r.log.Debug("deactivated", "actor", a.key, "reason", reason, "token", a.token)
	if o := r.opts.Observer; o != nil {
		o.Deactivated(a.typ.name, a.id, reason)
	}
	a.release()
}

func (r *Runtime) releaseLock(a *activation) { r.releaseKey(a.session, a.key) }

// reasonEvicted is the deactivation reason of an LRU eviction, the one
// that keeps the actor's lock (kept.go).
const reasonEvicted = "evicted (lru)"

func (r *Runtime) releaseKey(session lock.SessionID, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.coord.Release(ctx, session, key); err != nil && !errors.Is(err, lock.ErrNotHeld) && !errors.Is(err, lock.ErrSessionExpired) {
		r.log.Warn("releasing actor lock failed", "actor", key, "err", err)
	}
}

// protect runs fn, turning a panic into an ErrActorPanic error (panicked
// true). The stack goes to the log, not to the caller.
func protect(a *activation, what string, fn func() (any, error)) (res any, panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == errReadOnly {
				err = fmt.Errorf("%s.%s on %s: %w", a.typ.name, what, a.key, errReadOnly)
				return
			}
			panicked = true
			err = fmt.Errorf("%w: %s.%s on %s: %v", ErrActorPanic, a.typ.name, what, a.key, p)
			a.pool.r.log.Error("actor panic", "actor", a.key, "method", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	res, err = fn()
	return res, false, err
}
