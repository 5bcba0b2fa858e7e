// Package journalsm is raftlock's state machine for actors' journals: the
// rules of journal.Journal (append at the expected seq, save a snapshot,
// truncate, each fenced by its token), applied to three kv.Buckets, with no
// Raft, no network and no clock of its own. raftlock decodes each
// committed command and calls the Machine method of the same name; tests
// call them directly.
//
// # Guarantees
//
//   - Determinism: the outcome of every method (result, rule violation,
//     the records it writes) is a function of the state (the buckets), of
//     the arguments, among them the stamped clock now (the leader's stamp,
//     the same on every replica), and of what Locks answers at that clock,
//     itself such a function. Nothing reads the local clock, a random
//     source or a map's order.
//   - Fencing, the two rules: a write with a token below the highest token
//     that has written the actor is fenced (journal.ActorState's rules,
//     the journal contract), and so is one with a token below that of the
//     lock held on the actor's key at now (Locks), even before the new
//     holder has written: an ex-owner is harmless once a new owner
//     acquires. With no lock held only the first rule applies.
//   - A rule violation (a wrapped journal.ErrFenced, ErrConflict or
//     ErrInvalid) is found before the command writes to the journals. (The
//     lock fence may expire a lapsed session it meets, in the lock
//     machine's buckets.)
//   - Records are stored as given: entries and snapshots are
//     journal.MarshalEntry and MarshalSnapshot records already stamped
//     with their seq, actor and token by the caller, and an append
//     succeeds only at the seqs it expects.
//   - State, WrittenToken, Entries and Snapshot change nothing.
//
// The journals consult the locks only through Locks. So a machine per
// share of the actors, each on buckets of its own, needs nothing of the
// others but that fence (see raftlock's package documentation).
package journalsm
