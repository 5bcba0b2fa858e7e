package transport

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Sentinel errors of the transport. Test with errors.Is.
var (
	// ErrUnknownOutcome: the call was sent and the connection failed (or the
	// remote node lost the answer) before its result arrived. It may have
	// taken effect. Retry only what is idempotent. It never matches
	// runtime.ErrUnavailable.
	ErrUnknownOutcome = errors.New("transport: call sent, outcome unknown")
	// ErrNotOwner wraps runtime.ErrUnavailable: the node does not own the
	// actor and would not take it. Not applied; retry, at the node that
	// OwnerHint names when it names one. Handlers return it through
	// NotOwner.
	ErrNotOwner = fmt.Errorf("%w: not the owner", runtime.ErrUnavailable)
	// ErrClosed wraps runtime.ErrUnavailable: the Pool is closed. Not
	// applied.
	ErrClosed = fmt.Errorf("%w: transport closed", runtime.ErrUnavailable)
)

// errMethod stands for *runtime.MethodError in the table.
var errMethod = errors.New("method error")

// errorCodes is the one mapping between errors and the wire: the sentinel,
// its stable code (loompb.Error.code), the gRPC status code a unary call
// answers with, and whether a call that failed with it may have taken
// effect. The first row whose sentinel the error matches (errors.Is; for
// method_error, errors.As) decides; an error that matches none travels as
// "internal", maybe applied. DecodeError turns a code back into an error
// that matches the same sentinel.
var errorCodes = []struct {
	code         string
	err          error
	grpc         codes.Code
	maybeApplied bool
}{
	{"unknown_outcome", ErrUnknownOutcome, codes.Unknown, true},
	{"unknown_type", runtime.ErrUnknownType, codes.NotFound, false},
	{"unknown_method", runtime.ErrUnknownMethod, codes.NotFound, false},
	{"unknown_task", task.ErrUnknownTask, codes.NotFound, false},
	{"payload_too_large", runtime.ErrPayloadTooLarge, codes.InvalidArgument, false},
	{"bad_payload", runtime.ErrBadPayload, codes.InvalidArgument, false},
	{"invalid_id", runtime.ErrInvalidID, codes.InvalidArgument, false},
	{"invalid_argument", runtime.ErrInvalidArgument, codes.InvalidArgument, false},
	{"fenced", journal.ErrFenced, codes.FailedPrecondition, false},
	{"conflict", journal.ErrConflict, codes.Aborted, false},
	{"actor_panic", runtime.ErrActorPanic, codes.Internal, false},
	// A method's own error; after the rows above so that a method that
	// wraps a sentinel keeps it.
	{"method_error", errMethod, codes.Unknown, false},
	{"deadline_exceeded", context.DeadlineExceeded, codes.DeadlineExceeded, true},
	{"canceled", context.Canceled, codes.Canceled, true},
	{"shutting_down", runtime.ErrShuttingDown, codes.Unavailable, false},
	{"pool_full", runtime.ErrPoolFull, codes.ResourceExhausted, false},
	{"not_local", runtime.ErrNotLocal, codes.FailedPrecondition, false},
	{"not_owner", ErrNotOwner, codes.Unavailable, false},
	{"too_many_hops", runtime.ErrTooManyHops, codes.Unavailable, false},
	{"unavailable", runtime.ErrUnavailable, codes.Unavailable, false},
}

// codeInternal is the code of an error the table does not know.
const codeInternal = "internal"

// NotOwner returns an error for a handler to answer a call for an actor
// this node does not own: it matches ErrNotOwner (and so
// runtime.ErrUnavailable), and the caller's side finds owner, the node id
// of the holder ("" if unknown), with OwnerHint.
func NotOwner(owner, msg string) error {
	return &notOwnerError{owner: owner, msg: msg}
}

type notOwnerError struct{ owner, msg string }

func (e *notOwnerError) Error() string {
	s := ErrNotOwner.Error()
	if e.msg != "" {
		s += ": " + e.msg
	}
	if e.owner != "" {
		s += " (held by " + e.owner + ")"
	}
	return s
}
func (e *notOwnerError) Unwrap() error { return ErrNotOwner }

// OwnerHint returns the node id an ErrNotOwner error (local, or decoded
// from a remote node) names as the actor's holder, or "".
func OwnerHint(err error) string {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.OwnerHint
	}
	var no *notOwnerError
	if errors.As(err, &no) {
		return no.owner
	}
	return ""
}

// MaybeApplied reports whether a call that failed with err may have taken
// effect. It is false only when the transport or the remote node knows the
// call had no effect: a wire error whose code says so, or a local failure
// before the request left this process (wrapping runtime.ErrUnavailable,
// or the caller's context ending before the send). Retrying a call is safe
// when MaybeApplied is false.
func MaybeApplied(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnknownOutcome) {
		return true
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return re.MaybeApplied
	}
	var ns *notSentError
	if errors.As(err, &ns) || errors.Is(err, runtime.ErrUnavailable) {
		return false
	}
	for _, e := range errorCodes {
		if e.err != errMethod && errors.Is(err, e.err) {
			return e.maybeApplied
		}
	}
	var me *runtime.MethodError
	return !errors.As(err, &me)
}

// notSentError wraps the caller's context error when the context ended
// before the call was sent: nothing left this process.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "transport: not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// EncodeError turns an error into its wire form (nil for nil).
func EncodeError(err error) *loompb.Error {
	if err == nil {
		return nil
	}
	code, _, maybe := classify(err)
	return &loompb.Error{Code: code, Message: err.Error(), MaybeApplied: maybe, OwnerHint: OwnerHint(err)}
}

// classify finds err's row in the table.
func classify(err error) (code string, grpc codes.Code, maybeApplied bool) {
	var me *runtime.MethodError
	for _, e := range errorCodes {
		match := false
		if e.err == errMethod {
			match = errors.As(err, &me)
		} else {
			match = errors.Is(err, e.err)
		}
		if match {
			return e.code, e.grpc, e.maybeApplied
		}
	}
	return codeInternal, codes.Internal, true
}

// RemoteError is an error a remote node returned. It matches (errors.Is)
// the sentinel its code stands for, and its message is the remote one.
type RemoteError struct {
	Code         string
	Message      string
	MaybeApplied bool
	OwnerHint    string // node id of the actor's holder, for not_owner
	sentinel     error
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel of the error's code (nil for "internal" and
// for codes this version does not know).
func (e *RemoteError) Unwrap() error { return e.sentinel }

// DecodeError turns a wire error back into an error that matches the same
// sentinel it matched on the remote side; a method error comes back as a
// *runtime.MethodError. nil for nil.
func DecodeError(pe *loompb.Error) error {
	if pe == nil {
		return nil
	}
	re := &RemoteError{Code: pe.Code, Message: pe.Message, MaybeApplied: pe.MaybeApplied, OwnerHint: pe.OwnerHint}
	for _, e := range errorCodes {
		if e.code != pe.Code {
			continue
		}
		if e.err == errMethod {
			// Callers test method errors with errors.As(*runtime.MethodError);
			// an empty Actor makes it print the remote message as is.
			return &runtime.MethodError{Err: re}
		}
		re.sentinel = e.err
		return re
	}
	return re
}

// statusError is the gRPC status a unary call answers err with: the
// table's code, the message, and the wire Error as its one detail.
func statusError(err error) error {
	pe := EncodeError(err)
	_, code, _ := classify(err)
	st := status.New(code, pe.Message)
	if withDetails, derr := st.WithDetails(pe); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// fromStatus returns the error a remote node answered with, if err is a
// status carrying a wire Error.
func fromStatus(err error) (error, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	for _, d := range st.Details() {
		if pe, ok := d.(*loompb.Error); ok {
			return DecodeError(pe), true
		}
	}
	return nil, false
}
