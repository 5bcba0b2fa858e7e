package runtime

import "context"

// Observer is told what a Runtime does, for metrics and traces. Package
// observability implements it (Prometheus families and OpenTelemetry
// spans); the runtime itself knows neither. A nil Options.Observer costs
// one nil check per call.
//
// Every method is called synchronously, on the goroutine doing the work,
// concurrently with the others: it must be quick, must not block and must
// not call back into the Runtime. A Start method returns the context the
// work continues with (one carrying a span, say, so that what the work
// does nests under it; or ctx itself) and a function the runtime calls
// exactly once, with the outcome, when the work is over.
type Observer interface {
	// StartCall: a call entered this runtime through Invoke, InvokeLocal
	// or InvokeForwarded, before it is placed. hops is the number of
	// forwards it has been through: 0 for a call that enters the cluster
	// here (from a local caller, the HTTP gateway, a cluster client, or an
	// actor making a call while handling one), more when another node
	// forwarded it. The outcome is what the caller gets.
	StartCall(ctx context.Context, actorType, id, method string, hops int) (context.Context, func(error))
	// StartTurn: the call is served here: the actor (actorType, id) is
	// found or activated (StartActivation follows, with the returned
	// context), its mailbox awaited, the turn run and committed. hops is as
	// for StartCall (0 for Execute). The returned context is the turn's:
	// the calls the actor makes and the journal append of the turn use it.
	// The outcome is the turn's: its method's error, a panic, a failed
	// activation (the lock held elsewhere: the call is then forwarded), or
	// the append's failure.
	StartTurn(ctx context.Context, actorType, id, method string, hops int) (context.Context, func(error))
	// StartActivation: the actor is being activated here (lock, snapshot
	// and journal replay, OnActivate).
	StartActivation(ctx context.Context, actorType, id string) (context.Context, func(error))
	// Deactivated: the actor left memory. reason is one of the
	// Deactivation* constants.
	Deactivated(actorType, id, reason string)
}

// Reasons an actor is deactivated, as given to Observer.Deactivated.
const (
	DeactivationIdle      = "idle"
	DeactivationEvicted   = "evicted (lru)"
	DeactivationHandedOff = "handed off"
	DeactivationShutdown  = "shutdown"
	DeactivationRequested = "requested"
	DeactivationPanic     = "panic"
	DeactivationAppend    = "append failed"
	DeactivationLapsed    = "session may have lapsed"
	DeactivationDropped   = "dropped"
)

// Waiting reports how many callers are waiting, across the activations of
// actorType, for a turn to finish (the summed mailbox depth).
func (r *Runtime) Waiting(actorType string) int {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return 0
	}
	return int(reg.pool.waiting.Load())
}

// PoolConfig returns the pool settings actorType was registered with.
func (r *Runtime) PoolConfig(actorType string) (PoolConfig, bool) {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return PoolConfig{}, false
	}
	return reg.pool.cfg, true
}

func noopFinish(error) {}

// observeCall starts the Observer's view of a call, if there is one.
func (r *Runtime) observeCall(ctx context.Context, actorType, id, method string, hops int) (context.Context, func(error)) {
	if o := r.opts.Observer; o != nil {
		return o.StartCall(ctx, actorType, id, method, hops)
	}
	return ctx, noopFinish
}
