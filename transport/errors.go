package transport

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Sentinel errors of the transport. Test with errors.Is.
var (
	// ErrUnknownOutcome: the call was sent and the connection failed (or the
	// remote node lost the answer) before its result arrived. It may have
	// taken effect. Retry only what is idempotent. It never matches
	// runtime.ErrUnavailable. (errclass.ErrUnknownOutcome.)
	ErrUnknownOutcome = errclass.ErrUnknownOutcome
	// ErrNotOwner wraps runtime.ErrUnavailable: the node does not own the
	// actor and would not take it. Not applied; retry, at the node that
	// OwnerHint names when it names one. Handlers return it through
	// NotOwner. (errclass.ErrNotOwner.)
	ErrNotOwner = errclass.ErrNotOwner
	// ErrClosed wraps runtime.ErrUnavailable: the Pool is closed. Not
	// applied.
	ErrClosed = fmt.Errorf("%w: transport closed", runtime.ErrUnavailable)
)

// The mapping between errors and the wire (the stable code in
// loompb.Error.code, the gRPC status code of a unary answer, and whether
// a call that failed may have taken effect) is errclass's table, the one
// the HTTP gateway and the metrics read too. DecodeError turns a code
// back into an error that matches the same sentinel.

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
	return errclass.Of(err).MaybeApplied
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
	c := errclass.Of(err)
	return &loompb.Error{Code: c.Code, Message: err.Error(), MaybeApplied: c.MaybeApplied, OwnerHint: OwnerHint(err)}
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
	if c, ok := errclass.ByCode(pe.Code); ok {
		if c.Err == errclass.ErrMethod {
			// Callers test method errors with errors.As(*runtime.MethodError);
			// an empty Actor makes it print the remote message as is.
			return &runtime.MethodError{Err: re}
		}
		re.sentinel = c.Err
	}
	return re
}

// statusError is the gRPC status a unary call answers err with: the
// table's code, the message, and the wire Error as its one detail.
func statusError(err error) error {
	pe := EncodeError(err)
	st := status.New(errclass.Of(err).GRPC, pe.Message)
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
