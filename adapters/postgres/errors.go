package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// NotApplied reports whether err, the error of a statement, a batch or a
// transaction sent through pgx (or of getting a connection for it),
// proves that it had no effect:
//
//   - it was never sent: no connection could be made (a
//     *pgconn.ConnectError, the server refusing the login included), the
//     pool was closed, or pgx reports that it failed before writing
//     anything (pgconn.SafeToRetry);
//   - or the server answered it with an error of severity ERROR: the
//     statement failed, and PostgreSQL rolled back its transaction (a
//     batch is one implicit transaction: all of it). Refusals before any
//     work (read-only standby, too many connections, a serialization
//     failure, a deadlock, disk full) are all of this kind.
//
// false means it may have taken effect: the connection broke or timed
// out after sending, the caller's context ended while it was in flight,
// or the server ended the session (severity FATAL or PANIC: an
// administrator's shutdown can end a session just after its transaction
// committed, before the answer was sent). nil is false.
func NotApplied(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &ce):
		return true // checked first: a login refused is a PgError inside a ConnectError
	case errors.As(err, &pe):
		return severity(pe) == "ERROR"
	case errors.Is(err, puddle.ErrClosedPool):
		return true
	}
	return pgconn.SafeToRetry(err)
}

// severity is the error's severity, not localised.
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}

// IsConflict reports whether err is a serialization failure or a
// deadlock (SQLSTATE 40001, 40P01): the server rolled the transaction
// back because of a concurrent one.
func IsConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
