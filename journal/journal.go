package journal

import (
	"context"
	"errors"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrFenced: a holder with a higher fencing token has already written to
	// (or snapshotted, or truncated) this actor. The operation had no effect.
	ErrFenced = errors.New("journal: fenced by a higher token")
	// ErrConflict: expectedSeq is not the actor's current tail. The
	// operation had no effect.
	ErrConflict = errors.New("journal: sequence conflict")
	// ErrClosed: the journal has been closed. The operation had no effect.
	ErrClosed = errors.New("journal: closed")
	// ErrCorrupt: stored data failed its checksum or could not be decoded.
	ErrCorrupt = errors.New("journal: corrupt data")
	// ErrLocked: the journal's file is held by another process.
	ErrLocked = errors.New("journal: file locked by another process")
	// ErrInvalid: the arguments are invalid (empty actor, no entries, a
	// truncation past the tail...). The operation had no effect.
	ErrInvalid = errors.New("journal: invalid argument")
	// ErrAck: an entry of KindMessageAck names a message that is not
	// pending in the actor's queue (already acknowledged, dead-lettered,
	// scheduled or never accepted), or an ordered message with an earlier
	// ordered message still pending. Only a journal that is also a
	// queue.Store returns it. The append had no effect.
	ErrAck = errors.New("journal: message not pending")
	// ErrUnavailable: the journal's store could not be reached, or refused
	// the operation before doing anything (a server loading its data, out
	// of memory, read-only, ...). The operation had no effect; retry.
	// Backends that talk to a remote service wrap it in their own
	// sentinel.
	ErrUnavailable = errors.New("journal: store unavailable")
	// ErrUnknownOutcome: the operation was sent and no answer came back (a
	// timeout, a lost connection, the caller's context ended while it was
	// in flight). It may or may not have taken effect: Tail (or Read)
	// tells. It is never reported as ErrFenced, ErrConflict or another
	// refusal.
	ErrUnknownOutcome = errors.New("journal: outcome unknown")
)

// Journal is a set of per-actor append-only logs. Actors are named by an
// opaque non-empty key (the runtime uses "type/id").
//
// Every method is safe for concurrent use by many goroutines. Operations on
// different actors are independent; operations on one actor are linearizable.
// A method that returns an error other than ErrFenced, ErrConflict, ErrInvalid,
// ErrClosed or ErrUnavailable (for instance ErrUnknownOutcome, a context error
// or an I/O error) may or may not have taken effect. A backend that reaches
// its store over a network says which of the two a failure on the way was:
// ErrUnavailable (no effect, retry) or ErrUnknownOutcome (sent, no answer).
type Journal interface {
	// Append atomically appends entries to actor's log if, and only if,
	// token is not lower than the highest token that has written to actor
	// (else ErrFenced) and expectedSeq equals the actor's current tail
	// sequence (else ErrConflict; the tail of an empty log is 0). ErrFenced is
	// checked first. The journal assigns Seq = expectedSeq+1, +2, ... and
	// stamps Actor and Token on the stored entries, ignoring the values the
	// caller put there. On success the entries are durable (as durable as
	// the backend promises: fsync for files, a Raft quorum for raftlock)
	// and the new tail sequence is returned. A successful append raises the
	// actor's highest token to token.
	//
	// Invalid arguments fail with ErrInvalid before anything else is
	// checked: an empty actor or one longer than MaxActorLen, no entries, an
	// entry Time outside what the encoding stores (see TimeRepresentable).
	// What Read later returns is the stored form of the entries, described
	// in the package documentation (Time in UTC, empty Payload as nil).
	Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []Entry) (tail uint64, err error)

	// Read returns the actor's entries with Seq >= fromSeq in sequence order.
	// Entries removed by Truncate are not returned. An actor that was never
	// written returns an empty slice and no error.
	Read(ctx context.Context, actor string, fromSeq uint64) ([]Entry, error)

	// Tail reports the actor's last sequence number and the highest token
	// that has written to it. Both are 0 for an actor never written. The tail
	// survives Truncate.
	Tail(ctx context.Context, actor string) (Tail, error)

	// SaveSnapshot stores snap as the actor's snapshot, replacing any older
	// one, fenced like Append (ErrFenced for a lower token; a successful save
	// raises the highest token). snap.Seq must not exceed the tail
	// (ErrInvalid) and must not be lower than the current snapshot's Seq
	// (ErrInvalid); an equal Seq replaces it. Fencing is checked first.
	SaveSnapshot(ctx context.Context, actor string, token uint64, snap Snapshot) error

	// LoadSnapshot returns the actor's latest snapshot. ok is false (and err
	// nil) when the actor has none.
	LoadSnapshot(ctx context.Context, actor string) (snap Snapshot, ok bool, err error)

	// Truncate removes the actor's entries with Seq <= throughSeq, fenced like
	// Append. throughSeq must not exceed the actor's snapshot Seq (ErrInvalid):
	// the journal never drops entries that no snapshot covers. Truncating an
	// already truncated range is a no-op. A successful Truncate, even one that
	// removes nothing, raises the actor's highest token to token, as Append
	// and SaveSnapshot do.
	Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error

	// Close releases the journal's resources and waits for in-flight
	// operations. It may be called more than once; later calls return nil.
	// Operations after Close return ErrClosed.
	Close() error
}

// Tail is the position and fence of one actor's log.
type Tail struct {
	Seq   uint64 // last sequence number ever assigned (0: never written)
	Token uint64 // highest token that has written (0: never written)
}

// Snapshot is the encoded state of an actor as of (and including) Seq.
type Snapshot struct {
	Seq   uint64
	Token uint64 // the token that saved it (stamped by the journal)
	Data  []byte
}
