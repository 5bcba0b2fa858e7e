package runtime

import (
	"errors"

	"github.com/loom-mesh/loom/journal"
)

// Sentinel errors a caller can branch on with errors.Is. Errors returned by
// the runtime wrap one of these (or a journal / lock sentinel) with details.
var (
	// ErrUnknownType: no actor type of that name is registered. Not applied.
	ErrUnknownType = errors.New("loom: unknown actor type")
	// ErrUnknownMethod: the actor type has no method of that name. Not applied.
	ErrUnknownMethod = errors.New("loom: unknown method")
	// ErrBadPayload: the argument could not be decoded into the method's
	// input type: not applied. Also returned on the caller's side when the
	// result of a call to another node cannot be decoded into the method's
	// output type: that call ran.
	ErrBadPayload = errors.New("loom: bad payload")
	// ErrPayloadTooLarge: the argument exceeds the configured limit. Not applied.
	ErrPayloadTooLarge = errors.New("loom: payload too large")
	// ErrFenced: a newer owner holds the actor; this activation may not write.
	// The turn was not applied. Same value as journal.ErrFenced.
	ErrFenced = journal.ErrFenced
	// ErrConflict: the journal's tail moved under this activation. The turn
	// was not applied. Same value as journal.ErrConflict.
	ErrConflict = journal.ErrConflict
	// ErrShuttingDown: the node is stopping and accepts no new turns. Not applied.
	ErrShuttingDown = errors.New("loom: node shutting down")
	// ErrNotLocal: the actor is not hosted on this node, so a local-only
	// operation (Execute with a closure) cannot run here. Not applied.
	ErrNotLocal = errors.New("loom: actor not local")
	// ErrActorPanic: the method panicked. Its state changes were discarded
	// and the actor was deactivated; it comes back from its journal on the
	// next call.
	ErrActorPanic = errors.New("loom: actor panicked")
	// ErrPoolFull: the actor type's pool is at maxSize and its eviction
	// policy is "reject". Not applied.
	ErrPoolFull = errors.New("loom: actor pool full")
	// ErrUnavailable: the node cannot serve the actor right now (for example
	// its coordinator session may have lapsed, or the lock is held elsewhere).
	// Not applied; the call may be retried.
	ErrUnavailable = errors.New("loom: unavailable")
	// ErrInvalidArgument: for actor methods to wrap when a well-formed
	// argument has a value the method refuses (an empty key, say). The
	// gateway answers 400 for it. The turn was not applied.
	ErrInvalidArgument = errors.New("loom: invalid argument")
	// ErrOverloaded: the actor already has its type's MaxQueue calls
	// waiting for a turn. Not applied; retry later (the gateway answers
	// 429 with Retry-After).
	ErrOverloaded = errors.New("loom: overloaded")
	// ErrInvalidID: the actor id is empty or too long. Not applied.
	ErrInvalidID = errors.New("loom: invalid actor id")
)

// MethodError wraps an error returned by an actor method (or closure). The
// turn was not applied: its state changes were discarded. errors.Is and
// errors.As see through it to the method's own error.
type MethodError struct {
	Actor  string // "type/id"
	Method string
	Err    error
}

func (e *MethodError) Error() string {
	if e.Actor == "" { // decoded from another node: the message says it all
		return e.Err.Error()
	}
	return e.Actor + "." + e.Method + ": " + e.Err.Error()
}

func (e *MethodError) Unwrap() error { return e.Err }
