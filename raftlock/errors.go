package raftlock

import (
	"errors"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/queue"
)

// Sentinel errors of raftlock, in addition to those of the journal and lock
// contracts (journal.ErrFenced, lock.ErrHeld, ...), which the Store returns
// wrapped as those contracts say. Test with errors.Is.
var (
	// ErrNotLeader: the operation must run on the leader and this node is
	// not (or not yet ready to serve as) the leader. Returned by
	// HandleForward and the membership methods; Coordinator and Journal
	// methods never return it, they forward and retry instead. No effect.
	ErrNotLeader = errors.New("raftlock: not the leader")

	// ErrUnknownOutcome: a command was handed to Raft (or to the leader),
	// and the caller's context ended, or the Store closed, before its
	// outcome was known; or a retry of it came after the state machine may
	// have forgotten its result (see DedupRetention), and was not applied
	// again. It may or may not have taken effect. When a context ended the
	// error also wraps ctx.Err(). It matches lock.ErrUnknownOutcome and
	// journal.ErrUnknownOutcome, since a Store is both.
	ErrUnknownOutcome error = unknownOutcomeError{}

	// ErrStateMachine: this node's state machine failed to apply a
	// committed command (an I/O error on fsm.db). The node stops applying
	// and every operation fails with this error; restart it, and it
	// rebuilds its state from the Raft log and snapshots.
	ErrStateMachine = errors.New("raftlock: state machine failed")
)

// ErrNotReplica: a read on a node that does not replicate the key's Raft
// group (Config.Partial: the group runs on some of the nodes, or this node
// has not heard from a leader for an election timeout). No effect: read
// on a member, the group's leader. It matches journal.ErrUnavailable and
// lock.ErrUnavailable.
var ErrNotReplica error = notReplicaError{}

type notReplicaError struct{}

func (notReplicaError) Error() string { return "raftlock: this node does not replicate the group" }

func (notReplicaError) Unwrap() []error {
	return []error{journal.ErrUnavailable, lock.ErrUnavailable}
}

// errClosed is returned by every operation after Close. It matches
// journal.ErrClosed, lock.ErrClosed and queue.ErrClosed, since a Store is
// all three.
var errClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "raftlock: store closed" }

func (closedError) Is(target error) bool {
	return target == journal.ErrClosed || target == lock.ErrClosed || target == queue.ErrClosed
}

type unknownOutcomeError struct{}

func (unknownOutcomeError) Error() string { return "raftlock: outcome unknown" }

func (unknownOutcomeError) Unwrap() []error {
	return []error{lock.ErrUnknownOutcome, journal.ErrUnknownOutcome}
}
