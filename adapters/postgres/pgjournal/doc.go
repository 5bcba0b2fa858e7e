// Package pgjournal is a journal.Journal and a queue.Store on PostgreSQL
// (11 or later; tested on 15): each actor's log is rows of one table, each mutation one
// call of a plpgsql function that checks the fence and the sequence under
// the actor's row lock and writes in the same transaction, and the
// mutations of many actors from one node are sent together, one batch and
// one transaction per round trip (group commit). It passes journaltest
// and queuetest against a real server.
//
// # Guarantees
//
// Everything journal.Journal promises, with these notes:
//
//   - Atomic, conditional mutations. Append, SaveSnapshot and Truncate each
//     call a function (journal_append, journal_snapshot, journal_truncate)
//     that locks the actor's head row (SELECT ... FOR UPDATE), refuses a
//     token lower than the highest seen (journal.ErrFenced, checked
//     first), then a wrong expected sequence (journal.ErrConflict) or a
//     bad snapshot or truncation (journal.ErrInvalid), and only then
//     writes the entries and the new head. Concurrent mutations of one
//     actor are serialised by the row lock; each sees the head as the one
//     before it left it. The function's verdict is cross-checked against
//     journal.ActorState's rules, which also make the refusal's error, so
//     it is the error every backend gives.
//   - Durability is PostgreSQL's (see package adapters/postgres): with fsync
//     and synchronous_commit on, an acknowledged mutation survives a crash
//     of the server; the tests kill every server process mid-load and
//     find every acknowledged append. An asynchronous standby promoted in
//     a failover can lose acknowledged mutations.
//   - Clear failures. Besides the journal's refusals (no effect), a
//     mutation fails with ErrUnavailable when it certainly had no effect
//     (no connection could be had, or the server answered with an error,
//     after which it rolled the batch back) and with ErrUnknownOutcome
//     when it was sent and no answer came back (a broken connection, the
//     QueryTimeout, the caller's context ending once its request was
//     sent, the server ending the session). An unknown outcome is never
//     reported as a refusal: nothing is retried after a send whose answer
//     was lost, because a retried append that had been applied would come
//     back as ErrConflict. Reads have no effect, so any failure of theirs
//     is ErrUnavailable. The two wrap journal.ErrUnavailable and
//     journal.ErrUnknownOutcome; which failures prove that nothing was
//     done is postgres.NotApplied's to say.
//   - Reads (Read, Tail, LoadSnapshot) are one statement each, from the
//     caller's goroutine, and see every mutation whose call has returned
//     (a commit is visible to every later statement). Read sees the log at
//     one instant, and checks each record's CRC-32C, its Seq against its
//     row and its actor (journal.ErrCorrupt).
//   - Full uint64 range. Tokens and sequence numbers are compared as
//     numeric(20,0), never as bigint.
//
// # Layout
//
// In the schema of Options.Postgres (default "loom"), created and upgraded
// by Open (postgres.Migrate):
//
//	journal_heads      actor, tail, token (the highest), snap_seq (NULL:
//	                   no snapshot): one row per actor ever written
//	journal_entries    actor, seq, rec: entry seq of actor, its
//	                   journal.MarshalEntry record (stamped with Seq,
//	                   Actor, Token as the other backends stamp them)
//	journal_snapshots  actor, rec: its journal.MarshalSnapshot record
//
// Actor keys are bytea: any string, a NUL byte and invalid UTF-8
// included, is an actor of its own. An actor never written has no rows,
// and reading it makes none. Truncate deletes entry rows; the head keeps
// the tail.
//
// # Group commit
//
// Append, SaveSnapshot and Truncate stamp and encode on the caller's
// goroutine and queue a request. Options.Committers committer goroutines
// each take everything queued (at most Options.MaxBatch) as soon as they
// are free, with no timer, and send it as one pgx batch on their own
// connection: one round trip, which PostgreSQL runs as one implicit
// transaction, so the whole batch shares one commit and one WAL flush,
// while a lone caller pays one round trip. Each caller gets its own
// function's answer. Refusals are answers, not errors, so they do not
// roll back the rest of the batch; an error the server answers does roll
// back all of it, and then each request is sent again alone (one
// request's failure is not the others'). A batch's requests are sent in
// actor order (keeping each actor's queue order), so two committers'
// batches take their journal row locks in the same order and never
// deadlock over them (for the queues, see below). The requests of one
// batch were all in flight at once, so any order is one they may have
// run in.
//
// On this 2-core machine (shared with other work, so the figures move),
// BenchmarkAppend at 64 callers gave 6,000 to 15,000 appends/s, against
// 2,000 to 3,800/s for single-row INSERTs, each its own transaction, on
// 64 connections; at one caller, both about 1,800/s (one fsynced commit
// each).
//
// Context: a request whose context ends before a committer takes it
// returns ctx.Err() and has no effect; once taken it is sent regardless,
// and a caller that stops waiting gets ErrUnknownOutcome wrapping
// ctx.Err().
//
// Close stops new operations (journal.ErrClosed), lets the committers send
// what is queued and wait for the answers, waits for in-flight reads and
// closes the pool. It may be called more than once.
//
// # Message queues
//
// The Journal is also a queue.Store and a queue.Notifier (queue.go): the
// durable per-actor message queues of the same actors, in the same schema
// (version 2: queue_messages, queue_reminders, queue_wake; see
// adapters/postgres, schema_queue.go). Every write is one call of a
// function applying the rules of internal/queuesm (ordering, ordered
// queues blocked by their head, scheduled messages released with a new
// Seq, reminders firing once however many periods were missed, dead
// letters, ids remembered for Options.QueueRetention after an ack or
// purge, then forgotten 64 at a time), sent by the committers with the
// journal's mutations; queuetest checks them. An Append carrying
// KindMessageAck, KindMessageDirect or KindMessageSend entries calls
// journal_append_queue: the journal's fence and sequence checks, then the
// direct messages' and the acknowledgements' rules (journal.ErrAck
// wrapping queue.ErrKnownID, ErrNotHead or ErrNotFound) before any write;
// then the entries, the acknowledgements, the direct messages' ids and
// the outbox's enqueues, in the same transaction, so a message is
// acknowledged exactly when its turn's entries commit.
//
// Delivery is decided by the actor's lock, as on every backend: only the
// holder delivers an actor's messages, its fencing token refuses a
// deposed holder's append, and the acknowledgement is part of that append.
// So messages are not leased to consumers (no SELECT ... FOR UPDATE SKIP
// LOCKED claim with a visibility timeout, after which a slow consumer's
// message would run twice): Due reads, and the acknowledgement decides.
// SKIP LOCKED serves housekeeping only: forgetting expired ids and
// sweeping lapsed lock sessions skip rows another transaction holds.
//
// Seq comes from a sequence (queue_seq), drawn as a message is accepted:
// among acceptances in flight at once, Seq follows the draw, not the
// commit, so a message can become visible after one with a higher Seq was
// accepted; a sender that waits for each Enqueue (or append) before the
// next gets its messages in Seq order, which is the FIFO the queues keep.
// Each actor's earliest actionable instant is kept in queue_wake by every
// write, so Ready is one index scan; Stats counts rows, so its cost grows
// with the number of messages held. Every write to an actor's queue first
// takes a transaction-level advisory lock of that actor's queue, so the
// writes to one queue are serialised in one order (the wake each leaves
// counts the others'), and two batches do not deadlock over one actor's
// messages. What can still deadlock (an outbox send to another actor, an
// id taken by another actor's message, a replay) is rolled back by the
// server's deadlock detector; such a request, like one that meets a
// serialization failure, is sent again alone, up to five times.
//
// Time is the calling node's clock (AcceptedAt, the ack instant, the
// retention), as for the embedded backends; Release and Replay use the now
// their caller passes, and Release writes nothing when nothing is due.
// Notify's function hears of this Journal's own writes at once and of
// other Journals' (other nodes on the same server and schema) through
// NOTIFY on the channel "loom_wake_" + schema, which a Journal whose Notify
// was called LISTENs on with a connection of its own. A notification is a
// hint that can be lost (a listener reconnecting, a restart): other
// nodes' writes are always found by Ready, at the next scan at the latest.
package pgjournal
