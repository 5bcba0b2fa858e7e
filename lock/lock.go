package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrHeld: the lock is held by another session. The error is a *HeldError
	// that names the holder.
	ErrHeld = errors.New("lock: held by another session")
	// ErrSessionExpired: the session is unknown, was destroyed, or lapsed.
	// Its locks are free. Open a new session.
	ErrSessionExpired = errors.New("lock: session expired")
	// ErrNotHeld: Release of a lock the session does not hold.
	ErrNotHeld = errors.New("lock: not held by this session")
	// ErrClosed: the coordinator has been closed.
	ErrClosed = errors.New("lock: coordinator closed")
	// ErrInvalid: invalid argument (empty key or owner, non-positive TTL).
	ErrInvalid = errors.New("lock: invalid argument")
	// ErrUnavailable: the coordinator could not be reached, or refused the
	// operation before doing anything (a server loading its data, out of
	// memory, read-only, ...). Nothing changed; retry. Backends that talk
	// to a remote service wrap it in their own sentinel.
	ErrUnavailable = errors.New("lock: coordinator unavailable")
	// ErrUnknownOutcome: the operation was sent and no answer came back (a
	// timeout, a lost connection, the caller's context ended while it was
	// in flight). It may or may not have happened. Every Coordinator
	// method may be retried after it (see each method for what the retry
	// answers).
	ErrUnknownOutcome = errors.New("lock: outcome unknown")
)

// HeldError is returned by Acquire when another session holds the lock.
type HeldError struct {
	Key    string
	Holder string // the Owner of the holding session (a node id)
	Token  uint64 // the holder's fencing token
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lock: %q held by %s (token %d)", e.Key, e.Holder, e.Token)
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// SessionID names a session. It is opaque and never reused.
type SessionID string

// Coordinator grants exclusive, expiring locks with fencing tokens.
//
// A node opens one session with a TTL and renews it; locks are attached to
// the session, so renewal costs one call per node, not one per lock. If a
// session is not renewed within its TTL, as measured by the coordinator's
// clock, the session lapses and all its locks become free. A node must treat
// its own session as lapsed once TTL has passed on its own monotonic clock
// since it sent the last successful renewal, CreateSession counting as the
// first (see Lease).
//
// Every method is safe for concurrent use.
//
// Failures other than the refusals each method names come in two kinds,
// which a backend reports by wrapping ErrUnavailable (nothing changed) or
// ErrUnknownOutcome (it may have happened); an error that wraps neither
// (a context that ended, say) may or may not have had an effect.
// Acquire, Renew and Holder may be retried as they are after either; a
// retried Release may answer ErrNotHeld because the first one freed the
// lock, and a retried CreateSession may leave behind a session nobody
// renews, which lapses after its TTL.
type Coordinator interface {
	// CreateSession opens a session for owner (a node id) with the given TTL.
	CreateSession(ctx context.Context, owner string, ttl time.Duration) (SessionID, error)

	// Renew extends the session's life by its TTL from now. ErrSessionExpired
	// if the session has lapsed or is unknown.
	Renew(ctx context.Context, s SessionID) error

	// DestroySession ends the session and frees its locks. Destroying an
	// unknown or lapsed session is not an error.
	DestroySession(ctx context.Context, s SessionID) error

	// Acquire takes the lock named key for session s and returns its fencing
	// token. Tokens strictly increase across the successive grants of one
	// key, and are never reused, even after the lock was freed; they are
	// never 0 (the journal reads 0 as "never written"). Acquiring a
	// lock the session already holds returns the token of that grant again
	// (so a retry after an unknown outcome is safe). Returns *HeldError
	// (errors.Is ErrHeld) when another live session holds it, and
	// ErrSessionExpired when s is not a live session.
	Acquire(ctx context.Context, s SessionID, key string) (token uint64, err error)

	// Release frees the lock if session s holds it. ErrNotHeld otherwise
	// (including when the session lapsed and the lock went to someone else).
	Release(ctx context.Context, s SessionID, key string) error

	// Holder reports who holds key. ok is false when the lock is free.
	Holder(ctx context.Context, key string) (info LockInfo, ok bool, err error)

	// Close releases resources. It may be called more than once. It does not
	// destroy sessions: a closed client's sessions lapse by TTL. Other
	// methods called after Close return ErrClosed.
	Close() error
}

// LockInfo describes a granted lock.
type LockInfo struct {
	Key     string
	Session SessionID
	Owner   string
	Token   uint64
}
