package transport

import (
	"time"

	"google.golang.org/grpc/codes"

	"github.com/loom-mesh/loom/errclass"
)

// ErrorRow is a row of the error table, for the table-driven tests.
type ErrorRow struct {
	Code         string
	Err          error // nil for method_error
	GRPC         codes.Code
	MaybeApplied bool
}

// ErrorRows returns the error table (errclass.Rows).
func ErrorRows() []ErrorRow {
	rows := make([]ErrorRow, len(errclass.Rows))
	for i, e := range errclass.Rows {
		rows[i] = ErrorRow{Code: e.Code, Err: e.Err, GRPC: e.GRPC, MaybeApplied: e.MaybeApplied}
		if e.Err == errclass.ErrMethod {
			rows[i].Err = nil
		}
	}
	return rows
}

// SetSendHooks installs sender hooks: before runs before a sender takes its
// queue, after once a batch was written. Each gets a function that breaks
// that stream with the given cause. The returned func removes them; call
// it only after every Pool is closed.
func SetSendHooks(before, after func(breakStream func(error))) (restore func()) {
	wrap := func(h func(func(error))) func(*mux) {
		if h == nil {
			return nil
		}
		return func(m *mux) { h(m.fail) }
	}
	testHookBeforeBatch, testHookAfterSend = wrap(before), wrap(after)
	return func() { testHookBeforeBatch, testHookAfterSend = nil, nil }
}

// SetHandshakeTimeout makes the Server built from o disconnect a
// connection that has not finished its handshake after d, instead of
// HandshakeTimeout.
func SetHandshakeTimeout(o *ServerOptions, d time.Duration) { o.handshakeTimeout = d }
