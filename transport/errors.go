package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

var (
	// ErrUnknownOutcome: the call was sent and the connection failed before
	// its answer arrived. It may have taken effect.
	ErrUnknownOutcome = errors.New("transport: call sent, outcome unknown")
	// ErrNotOwner wraps runtime.ErrUnavailable: the node does not own the
	// actor. Not applied; retry (the error's OwnerHint names the holder
	// when known).
	ErrNotOwner = fmt.Errorf("%w: not the owner", runtime.ErrUnavailable)
	// ErrClosed: the Pool or Server is closed. Not applied.
	ErrClosed = fmt.Errorf("%w: transport closed", runtime.ErrUnavailable)
)

// errorCodes is the one mapping between errors and wire codes. Order
// matters: the first sentinel an error matches decides its code.
var errorCodes = []struct {
	code         string
	err          error
	maybeApplied bool
}{
	{"unknown_type", runtime.ErrUnknownType, false},
	{"unknown_method", runtime.ErrUnknownMethod, false},
	{"payload_too_large", runtime.ErrPayloadTooLarge, false},
	{"bad_payload", runtime.ErrBadPayload, false},
	{"invalid_id", runtime.ErrInvalidID, false},
	{"invalid_argument", runtime.ErrInvalidArgument, false},
	{"deadline_exceeded", context.DeadlineExceeded, true},
	{"canceled", context.Canceled, true},
	{"actor_panic", runtime.ErrActorPanic, false},
	{"method_error", errMethod, false},
	{"fenced", journal.ErrFenced, false},
	{"conflict", journal.ErrConflict, false},
	{"shutting_down", runtime.ErrShuttingDown, false},
	{"pool_full", runtime.ErrPoolFull, false},
	{"not_local", runtime.ErrNotLocal, false},
	{"not_owner", ErrNotOwner, false},
	{"unknown_outcome", ErrUnknownOutcome, true},
	{"unavailable", runtime.ErrUnavailable, false},
}

// errMethod stands for *runtime.MethodError in the table.
var errMethod = errors.New("method error")

// EncodeError turns an error into its wire form.
func EncodeError(err error) *loompb.Error {
	if err == nil {
		return nil
	}
	var me *runtime.MethodError
	for _, e := range errorCodes {
		match := errors.Is(err, e.err)
		if e.err == errMethod {
			// A method's own error: unless it is one of the above, it
			// travels as a method error.
			match = errors.As(err, &me)
		}
		if match {
			return &loompb.Error{Code: e.code, Message: err.Error(), MaybeApplied: e.maybeApplied}
		}
	}
	return &loompb.Error{Code: "internal", Message: err.Error(), MaybeApplied: true}
}

// RemoteError is an error a remote node returned. It matches (errors.Is)
// the sentinel its code stands for, and keeps the remote message.
type RemoteError struct {
	Code         string
	Message      string
	MaybeApplied bool
	OwnerHint    string
	sentinel     error
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel of the error's code (nil for "internal").
func (e *RemoteError) Unwrap() error { return e.sentinel }

// DecodeError turns a wire error back into an error that matches the same
// sentinel it had on the remote side.
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
			// Callers test method errors with errors.As(*runtime.MethodError).
			return &runtime.MethodError{Actor: "", Method: "", Err: re}
		}
		re.sentinel = e.err
		return re
	}
	return re
}
