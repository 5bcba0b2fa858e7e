// Package queuesm is the state machine of queue.Store: the rules of
// per-actor message queues, dead letters and reminders, applied to
// kv.Buckets with no clock, goroutine, network or journal of its own.
// Every backend that keeps its queues in ordered buckets runs it: the
// in-memory journal on kv.Mem, the bbolt file journal, and raftlock on
// every replica. A backend decodes a command and calls the Machine method
// of the same name; tests call them directly.
//
// # Guarantees
//
//   - Determinism: the outcome of every method (result, rule violation,
//     the records it writes, the OnWake calls it makes and their order) is
//     a function of the buckets, the Config and the arguments, among them
//     the stamped clock now (raftlock's leader stamp, or the local clock
//     of a single-node backend). Nothing reads a clock, a random source or
//     a map's iteration order.
//   - A rule violation is found before the command writes anything: it
//     comes back as rule, wrapping queue.ErrInvalid, ErrNotFound, ErrStale
//     or ErrNotHead, and the buckets are byte for byte as they were. err is
//     a storage failure or a corrupt record, fatal to the state machine.
//   - Bounded work: a write costs a few seeks per message it moves, plus
//     forgetting at most PruneBatch expired ids; Due, Ready, Wake and Stats
//     seek, they do not scan the queues. ListDead, Replay and Purge walk
//     the dead letters in DeadAt order.
//   - Reads (Due, Ready, Wake, ListDead, Reminders, Stats) change nothing.
//
// # The journal hook
//
// The queue rules of a journal append are two commands around the
// journal's own: before the append writes anything, the backend checks
// its journal rules (fenced, conflict) first, then CheckAcks on the ids of
// its KindMessageAck entries, in entry order, and CheckOutbox on each
// KindMessageSend entry; after writing the entries it calls Ack, then
// EnqueueOutbox for each send. An append's acks are applied before its
// sends, whatever the order of its entries.
//
// queuesm does not import journal, because journal's bbolt backend imports
// queuesm. So an ack violation comes back wrapping queue.ErrNotFound (not
// pending) or queue.ErrNotHead (an earlier ordered message is pending),
// and the backend wraps it once more, fmt.Errorf("%w: %w",
// journal.ErrAck, rule); an outbox violation wraps queue.ErrInvalid, and
// the backend wraps it in journal.ErrInvalid. Actor keys are checked with
// queue.CheckActor, the journal's rule.
//
// # Time
//
// now, and every instant stored, is UnixNano. An id acknowledged or purged
// at t is a duplicate for Enqueue until t+Retention, after which it is
// accepted anew whether or not a write has pruned it yet. Release and
// Replay prune nothing: their now is the caller's (the instant to release
// or replay at), not the store's clock, and a caller whose clock runs
// ahead must not make the store forget ids early. A zero
// Failure.RetryAt means now, as does a zero Failure.At for DeadAt.
package queuesm
