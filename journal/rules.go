package journal

import (
	"fmt"
	"math"
)

// MaxActorLen is the longest actor key, in bytes, that a Journal accepts.
// Longer keys are rejected with ErrInvalid by every backend, so that an actor
// that works on one backend works on all of them (bbolt keys, Redis keys and
// Cosmos ids all have limits).
const MaxActorLen = 1024

// ActorState is the bookkeeping a backend keeps for one actor, and its
// methods are the rules of the Journal contract as pure functions of it.
// Every backend evaluates the rules through these methods, so they agree on
// what is fenced, what conflicts and what is invalid, and in which order.
// The zero value is the state of an actor never written.
type ActorState struct {
	Tail        uint64 // last sequence number assigned (0: never written)
	Token       uint64 // highest token that has appended, snapshotted or truncated
	HasSnapshot bool   // whether a snapshot is stored
	SnapshotSeq uint64 // Seq of the stored snapshot (0 when there is none)
}

// CheckActor returns an error wrapping ErrInvalid if actor is not a valid
// actor key: empty, or longer than MaxActorLen bytes.
func CheckActor(actor string) error {
	switch {
	case actor == "":
		return fmt.Errorf("%w: empty actor key", ErrInvalid)
	case len(actor) > MaxActorLen:
		return fmt.Errorf("%w: actor key of %d bytes exceeds %d", ErrInvalid, len(actor), MaxActorLen)
	}
	return nil
}

// CheckAppendArgs returns an error wrapping ErrInvalid if the arguments of
// Append are invalid whatever the actor's state: a bad actor key, no
// entries, a Time that cannot be stored (see TimeRepresentable), or a tail
// that would overflow uint64.
func CheckAppendArgs(actor string, expectedSeq uint64, entries []Entry) error {
	if err := CheckActor(actor); err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("%w: append to %q with no entries", ErrInvalid, actor)
	}
	if uint64(len(entries)) > math.MaxUint64-expectedSeq {
		return fmt.Errorf("%w: append to %q would overflow the sequence number", ErrInvalid, actor)
	}
	for i := range entries {
		if !TimeRepresentable(entries[i].Time) {
			return fmt.Errorf("%w: entry %d for %q has time %v outside the storable range", ErrInvalid, i, actor, entries[i].Time)
		}
	}
	return nil
}

// checkFence is the fencing rule shared by every mutation.
func (s ActorState) checkFence(op, actor string, token uint64) error {
	if token < s.Token {
		return fmt.Errorf("%w: %s %q with token %d, highest is %d", ErrFenced, op, actor, token, s.Token)
	}
	return nil
}

// CheckAppend applies the rules of Append to the actor's state: ErrFenced if
// token is lower than s.Token, else ErrConflict if expectedSeq is not s.Tail.
// On nil the caller stores the entries with Seq expectedSeq+1... and the
// state returned by Appended.
func (s ActorState) CheckAppend(actor string, token, expectedSeq uint64) error {
	if err := s.checkFence("append to", actor, token); err != nil {
		return err
	}
	if expectedSeq != s.Tail {
		return fmt.Errorf("%w: append to %q expected seq %d, tail is %d", ErrConflict, actor, expectedSeq, s.Tail)
	}
	return nil
}

// Appended returns the state after a successful append of n entries.
func (s ActorState) Appended(token uint64, n int) ActorState {
	s.Tail += uint64(n)
	s.Token = token
	return s
}

// CheckSnapshot applies the rules of SaveSnapshot: ErrFenced for a lower
// token, else ErrInvalid if seq exceeds the tail or is lower than the
// current snapshot's Seq. An equal Seq replaces the snapshot.
func (s ActorState) CheckSnapshot(actor string, token, seq uint64) error {
	if err := s.checkFence("snapshot of", actor, token); err != nil {
		return err
	}
	if seq > s.Tail {
		return fmt.Errorf("%w: snapshot of %q at seq %d is beyond the tail %d", ErrInvalid, actor, seq, s.Tail)
	}
	if s.HasSnapshot && seq < s.SnapshotSeq {
		return fmt.Errorf("%w: snapshot of %q at seq %d is older than the stored one at %d", ErrInvalid, actor, seq, s.SnapshotSeq)
	}
	return nil
}

// Snapshotted returns the state after a successful SaveSnapshot.
func (s ActorState) Snapshotted(token, seq uint64) ActorState {
	s.Token = token
	s.HasSnapshot = true
	s.SnapshotSeq = seq
	return s
}

// CheckTruncate applies the rules of Truncate: ErrFenced for a lower token,
// else ErrInvalid if throughSeq exceeds the snapshot's Seq (any throughSeq
// above 0 when there is no snapshot).
func (s ActorState) CheckTruncate(actor string, token, throughSeq uint64) error {
	if err := s.checkFence("truncate of", actor, token); err != nil {
		return err
	}
	if throughSeq > s.SnapshotSeq {
		if !s.HasSnapshot {
			return fmt.Errorf("%w: truncate of %q through seq %d, but it has no snapshot", ErrInvalid, actor, throughSeq)
		}
		return fmt.Errorf("%w: truncate of %q through seq %d is beyond its snapshot at %d", ErrInvalid, actor, throughSeq, s.SnapshotSeq)
	}
	return nil
}

// Truncated returns the state after a successful Truncate. Only the token
// changes: the tail and snapshot survive truncation.
func (s ActorState) Truncated(token uint64) ActorState {
	s.Token = token
	return s
}
