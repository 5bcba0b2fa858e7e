// Package errclass is the one table that decides, for every error a call
// can end with, its stable code, its HTTP status, its gRPC status code,
// its metric outcome label and whether the call may have taken effect.
// The transport (both directions), the HTTP gateway and the metrics read
// it; none of them maps errors on its own.
//
// # Order
//
// An error can match several rows (a method error that wraps a call's
// ErrFenced, say): the first row it matches, in Rows' order, decides.
//
//   - The outcome-unknown row comes first: nothing that may have been
//     applied is ever reported as not applied.
//   - Then the refusals of who is calling: no valid token, or a token
//     (or certificate) that may not do this. They come before what the
//     request asked for, so that a caller without the right learns
//     nothing of the actors.
//   - Then the errors that say exactly what went wrong with the request or
//     the actor: unknown type, method or task; bad payload, id or
//     argument; fencing and sequence conflicts; a panic; a call cycle or
//     a call chain too deep. A method error that wraps one of them keeps
//     it (a cycle is reported as such however many methods wrapped it on
//     its way back up the chain).
//   - Then the call's context: a deadline or a cancellation, even one a
//     method returned (it ran out of its caller's time), is reported as
//     such, and as possibly applied: the conservative answer, since the
//     caller cannot tell where its time ran out.
//   - Then a method's own error. Everything below it, wrapped in a method
//     error, is the method's failure, not the call's: a method whose own
//     call to another node was refused as unavailable failed, and its turn
//     was discarded, so it is method_error (not applied), not a retryable
//     unavailable.
//   - Then the refusals before any effect (shutting down, pool full, not
//     the owner, ...), most specific first.
//
// The coordinator's and the journal's own "unavailable" and "outcome
// unknown" (lock.ErrUnavailable, journal.ErrUnknownOutcome, ..., which
// every backend that reaches a remote store wraps) are not rows of their
// own: Aliases makes each match the row of its meaning, where that row
// stands. So an outcome unknown on the way to Redis is unknown_outcome
// whatever wraps it, above everything else; a store that was unavailable
// is unavailable, retryable, with the refusals at the end, and a method
// error that wraps it is the method's failure. A caller on another node
// gets an error that matches the row's Err (runtime.ErrUnavailable,
// ErrUnknownOutcome), not the alias.
//
// An error that matches no row is internal (HTTP 500, gRPC Internal,
// outcome "error") and may have been applied.
//
// "May have been applied" is the row's answer for an error that reached
// a remote node or came back from one; package transport refines it for
// calls that never left the process (a context that ended before the
// send is not applied).
package errclass

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/task"
)

// Sentinels of the call path that belong to no package below it. The
// transport re-exports them.
var (
	// ErrUnknownOutcome: the call was sent and its result was lost (a
	// connection failed, a remote node lost the answer). It may have
	// taken effect. It never matches runtime.ErrUnavailable.
	ErrUnknownOutcome = errors.New("transport: call sent, outcome unknown")
	// ErrNotOwner wraps runtime.ErrUnavailable: the node does not own the
	// actor and would not take it. Not applied.
	ErrNotOwner = fmt.Errorf("%w: not the owner", runtime.ErrUnavailable)
	// ErrMethod stands for a *runtime.MethodError (matched with
	// errors.As) in Rows.
	ErrMethod = errors.New("method error")
)

// Class is what the table says of one error.
type Class struct {
	Code         string     // stable code, on the wire and in HTTP error bodies
	HTTP         int        // HTTP status of the gateway's answer
	GRPC         codes.Code // gRPC status code of a unary call's answer
	Outcome      string     // metric label (low cardinality)
	MaybeApplied bool       // whether the call may have taken effect
	Err          error      // the sentinel the row matches (ErrMethod: a *runtime.MethodError)
}

// Rows is the table, in the order that decides (see the package doc).
var Rows = []Class{
	{"unknown_outcome", http.StatusBadGateway, codes.Unknown, "unknown_outcome", true, ErrUnknownOutcome},
	{"unauthenticated", http.StatusUnauthorized, codes.Unauthenticated, "unauthenticated", false, auth.ErrUnauthenticated},
	{"permission_denied", http.StatusForbidden, codes.PermissionDenied, "forbidden", false, auth.ErrPermissionDenied},
	{"unknown_type", http.StatusNotFound, codes.NotFound, "not_found", false, runtime.ErrUnknownType},
	{"unknown_method", http.StatusNotFound, codes.NotFound, "not_found", false, runtime.ErrUnknownMethod},
	{"unknown_task", http.StatusNotFound, codes.NotFound, "not_found", false, task.ErrUnknownTask},
	// Before no_such_message: a settled delivery wraps the store's refusal.
	{"message_settled", http.StatusConflict, codes.FailedPrecondition, "settled", false, runtime.ErrMessageSettled},
	{"no_such_message", http.StatusNotFound, codes.NotFound, "not_found", false, queue.ErrNotFound},
	{"payload_too_large", http.StatusRequestEntityTooLarge, codes.InvalidArgument, "bad_request", false, runtime.ErrPayloadTooLarge},
	{"bad_payload", http.StatusBadRequest, codes.InvalidArgument, "bad_request", false, runtime.ErrBadPayload},
	{"invalid_id", http.StatusBadRequest, codes.InvalidArgument, "bad_request", false, runtime.ErrInvalidID},
	{"deliver_at_too_far", http.StatusBadRequest, codes.InvalidArgument, "bad_request", false, runtime.ErrDeliverAtTooFar},
	{"invalid_argument", http.StatusBadRequest, codes.InvalidArgument, "bad_request", false, runtime.ErrInvalidArgument},
	{"invalid_idempotency_key", http.StatusBadRequest, codes.InvalidArgument, "bad_request", false, runtime.ErrIdempotencyKeyInvalid},
	{"idempotency_key_reused", http.StatusUnprocessableEntity, codes.FailedPrecondition, "bad_request", false, runtime.ErrIdempotencyKeyReused},
	{"idempotency_key_expired", http.StatusGone, codes.FailedPrecondition, "idempotency_key_expired", true, runtime.ErrIdempotencyKeyExpired},
	{"fenced", http.StatusConflict, codes.FailedPrecondition, "fenced", false, journal.ErrFenced},
	{"conflict", http.StatusConflict, codes.Aborted, "conflict", false, journal.ErrConflict},
	{"actor_panic", http.StatusInternalServerError, codes.Internal, "panic", false, runtime.ErrActorPanic},
	{"call_cycle", http.StatusConflict, codes.FailedPrecondition, "call_cycle", false, runtime.ErrCallCycle},
	{"call_chain_too_deep", http.StatusConflict, codes.FailedPrecondition, "call_cycle", false, runtime.ErrCallChainTooDeep},
	{"deadline_exceeded", http.StatusGatewayTimeout, codes.DeadlineExceeded, "deadline_exceeded", true, context.DeadlineExceeded},
	{"canceled", 499, codes.Canceled, "canceled", true, context.Canceled}, // nginx's "client closed request"
	{"messaging_disabled", http.StatusNotImplemented, codes.Unimplemented, "unavailable", false, runtime.ErrMessagingDisabled},
	{"method_error", http.StatusUnprocessableEntity, codes.Unknown, "method_error", false, ErrMethod},
	{"shutting_down", http.StatusServiceUnavailable, codes.Unavailable, "unavailable", false, runtime.ErrShuttingDown},
	{"overloaded", http.StatusTooManyRequests, codes.ResourceExhausted, "overloaded", false, runtime.ErrOverloaded},
	{"pool_full", http.StatusServiceUnavailable, codes.ResourceExhausted, "unavailable", false, runtime.ErrPoolFull},
	{"not_local", http.StatusServiceUnavailable, codes.FailedPrecondition, "unavailable", false, runtime.ErrNotLocal},
	{"not_owner", http.StatusServiceUnavailable, codes.Unavailable, "unavailable", false, ErrNotOwner},
	{"too_many_hops", http.StatusServiceUnavailable, codes.Unavailable, "unavailable", false, runtime.ErrTooManyHops},
	{"unavailable", http.StatusServiceUnavailable, codes.Unavailable, "unavailable", false, runtime.ErrUnavailable},
}

// Aliases are further sentinels that match a row as its Err does, keyed
// by that Err: the contracts' own names for what a row means (see the
// package doc).
var Aliases = map[error][]error{
	ErrUnknownOutcome:      {journal.ErrUnknownOutcome, lock.ErrUnknownOutcome},
	runtime.ErrUnavailable: {journal.ErrUnavailable, lock.ErrUnavailable},
}

// Internal is the class of an error no row matches.
var Internal = Class{Code: "internal", HTTP: http.StatusInternalServerError, GRPC: codes.Internal, Outcome: "error", MaybeApplied: true}

// Of classifies err (nil: the zero Class with Outcome "ok").
func Of(err error) Class {
	if err == nil {
		return Class{Outcome: "ok"}
	}
	var me *runtime.MethodError
	for _, r := range Rows {
		if r.Err == ErrMethod {
			if errors.As(err, &me) {
				return r
			}
		} else if errors.Is(err, r.Err) {
			return r
		}
		for _, a := range Aliases[r.Err] {
			if errors.Is(err, a) {
				return r
			}
		}
	}
	return Internal
}

// ByCode is the row with code c, ok false for a code this version does not
// know.
func ByCode(c string) (Class, bool) {
	for _, r := range Rows {
		if r.Code == c {
			return r, true
		}
	}
	return Class{}, false
}
