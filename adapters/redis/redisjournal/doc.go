// Package redisjournal is a journal.Journal on Redis (7.0 or later): each
// actor's log is a Redis Stream, each mutation one Lua script that checks
// the fence and the sequence and writes in one atomic step, and the
// mutations of many actors from one node are pipelined together (group
// commit). It passes journaltest against a real redis-server.
//
// # Guarantees
//
// Everything journal.Journal promises, with these notes:
//
//   - Atomic, conditional mutations. Append, SaveSnapshot and Truncate are
//     each one script run (EVALSHA). The script reads the actor's head,
//     refuses a token lower than the highest seen (journal.ErrFenced,
//     checked first), then a wrong expected sequence (journal.ErrConflict)
//     or a bad snapshot or truncation (journal.ErrInvalid), and only then
//     writes the entries and the new head. Redis runs a script without
//     interleaving other commands and writes its effects to the
//     append-only file as one MULTI/EXEC block, which a restart replays
//     whole or not at all, so a crash never leaves half an append. The
//     script's verdict is cross-checked against journal.ActorState's
//     rules, which also make the refusal's error, so it is the error every
//     backend gives.
//   - Durability is Redis's (see package adapters/redis): with appendonly
//     yes and appendfsync always, an acknowledged mutation survives a kill
//     -9 of redis-server and of the node; with appendfsync everysec up to
//     a second of acknowledged mutations can be lost; a failover to an
//     asynchronous replica can lose them too. The tests run appendfsync
//     always and kill both processes.
//   - Clear failures. Besides the journal's refusals (no effect), a
//     mutation fails with ErrUnavailable when it certainly had no effect
//     (no connection could be made, or Redis refused the script before
//     running it: loading, busy, out of memory, read-only, MISCONF, auth)
//     and with ErrUnknownOutcome when it was sent and no answer came back
//     (a broken connection, a read timeout, the caller's context ending
//     while it was in flight). An unknown outcome is never reported as a
//     refusal: the journal's client has go-redis's retries off, because a
//     retried append that had been applied would come back as ErrConflict.
//     Reads have no effect, so any failure of theirs is ErrUnavailable.
//     The two wrap journal.ErrUnavailable and journal.ErrUnknownOutcome;
//     which Redis failures prove that nothing was done is
//     redis.NotApplied's to say.
//   - Reads (Read, Tail, LoadSnapshot) go straight to Redis from the
//     caller's goroutine and see every mutation whose call has returned
//     (one server: Redis is linearizable for single commands). With
//     appendfsync always they never see one that is not yet on disk
//     either: Redis writes and fsyncs the append-only file for a turn of
//     its event loop before it sends any reply of that turn. Read is one
//     XRANGE, a consistent view of the log; each record's CRC-32C, its Seq
//     against its stream id and its actor are checked (journal.ErrCorrupt).
//   - Full uint64 range. Sequence numbers and tokens are compared and
//     stored as decimal strings, never as Lua numbers (doubles).
//
// # Layout
//
// With P the key prefix (adapters/redis Options.KeyPrefix, "loom:" by
// default), actor A has two keys:
//
//	P j{A}h   head, a hash: tail, token (the highest), and when A has a
//	          snapshot snapseq (its Seq) and snap (journal.MarshalSnapshot)
//	P j{A}l   log, a stream: entry Seq s has id "s-0" and one field "e",
//	          its journal.MarshalEntry record (stamped with Seq, Actor,
//	          Token as the other backends stamp them)
//
// A stream fits a log exactly: ids are ordered, XADD with an explicit id
// refuses anything not above the last one (a second safety net under the
// script's check), XRANGE reads from any Seq, and XTRIM MINID drops a
// prefix (Truncate). The head is separate so that the scripts read three
// small fields instead of the stream's tail entry. A field absent from
// the head reads as 0 (tail, token) or "no snapshot"; an actor never
// written has no keys, and reading it creates none.
//
// The braces put an actor's two keys in one Redis Cluster slot, which a
// script needs. This package talks to one server; on a Cluster an actor
// key beginning with "}" would split its keys across slots.
//
// # Group commit
//
// Append, SaveSnapshot and Truncate stamp and encode on the caller's
// goroutine and queue a request. Options.Pipelines committer goroutines
// each take everything queued (at most Options.MaxBatch) as soon as they
// are free, with no timer, and send it as one go-redis pipeline of EVALSHAs
// on their own connection; each caller gets its own script's answer. Redis
// runs a pipeline's scripts in order and fsyncs once per event-loop turn,
// so a batch shares its round trip and its fsync: throughput grows with
// the number of concurrent callers (see BenchmarkAppend)
// while a lone caller pays one round trip. A NOSCRIPT answer (a restarted
// Redis keeps no script cache) means the script did not run: the scripts
// are loaded again and the requests that got it are sent once more.
//
// Context: a request whose context ends before a committer takes it
// returns ctx.Err() and has no effect; once taken it is sent regardless,
// and a caller that stops waiting gets ErrUnknownOutcome wrapping
// ctx.Err().
//
// Close stops new operations (journal.ErrClosed), lets the committers send
// what is queued and wait for the answers, waits for in-flight reads and
// closes the client. It may be called more than once.
//
// # Message queues
//
// The Journal is also a queue.Store and a queue.Notifier (queue.go,
// queuescripts.go): the durable per-actor message queues of the same
// actors, on the same server. Every write is one Lua script that applies
// the rules of internal/queuesm (ordering, ordered queues blocked by their
// head, scheduled messages released with a new Seq, reminders firing once
// however many periods were missed, dead letters, ids remembered for
// Options.QueueRetention after an ack or purge, pruned 64 at a time);
// queuetest checks them. An Append carrying journal.KindMessageAck or
// KindMessageSend entries runs appendQueueScript: the journal's fence and
// sequence checks, then the acknowledgements (journal.ErrAck wrapping
// queue.ErrNotFound or queue.ErrNotHead) before any write; then the
// entries, the acknowledgements and the outbox's enqueues, in one script,
// so a message is acknowledged exactly when its turn's entries commit.
//
// This gives Go what BullMQ gives Node users, on Redis: attempts
// (Message.Attempts, Retry), backoff (Retry's RetryAt, chosen by the
// caller), stalled-message recovery (a message not acknowledged, whoever
// crashed, stays pending and is delivered again: there is no lock to
// expire, the ack commits with the turn's state), and a failed set (the
// dead letters, with ListDead, Replay and Purge). The configuration
// accepts messaging backend type "bullmq" as another name of this adapter
// (config.MessagingBullMQ); the keys are this package's, not BullMQ's
// format, and BullMQ clients cannot read them.
//
// The queues are not Redis Streams read through consumer groups
// (XREADGROUP, XACK, XAUTOCLAIM). A consumer group decides who delivers
// a message by lease: an entry whose consumer is slow past the
// visibility timeout is claimed by another, so one message can run in two
// turns at once. Here the actor's lock decides it, as on every backend:
// only the lock holder delivers an actor's messages, its fencing token
// refuses a deposed holder's append, and the acknowledgement is part of
// that append. FIFO per actor with the head blocking, delayed messages
// joining the queue when due, reminders and dead-letter filters need
// per-actor ordered indexes, which sorted sets give.
//
// The queue's keys (listed in queue.go) span actors, and its scripts
// compute key names rather than declare them: the queue needs a
// standalone server, not a Redis Cluster. Time is the calling node's
// clock (AcceptedAt, the ack instant), as for the embedded backends.
package redisjournal
