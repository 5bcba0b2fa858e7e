// Package journal defines Loom's per-actor append-only log: the Journal
// interface and its contract, the Entry type and its stable binary encoding,
// and FileJournal, the embedded bbolt backend used by a single node. The
// conformance suite every backend must pass is in package journaltest; an
// in-memory backend is in adapters/inmem.
//
// # Guarantees
//
// Every backend provides the following; journaltest checks each of them.
//
//   - Per-actor order: an actor's entries are numbered 1, 2, 3, ... without
//     gaps by the journal itself (Append stamps Seq, Actor and Token), and
//     Read returns them in that order.
//   - Conditional, atomic append: an Append stores all its entries or none.
//     It is rejected with ErrFenced if a higher token has written to the
//     actor, and otherwise with ErrConflict if expectedSeq is not the tail.
//     Fencing is checked first, so a fenced ex-owner always learns it is
//     fenced rather than retrying a conflict.
//   - Fencing everywhere: SaveSnapshot and Truncate are fenced like Append,
//     and each successful Append, SaveSnapshot or Truncate (even a Truncate
//     that removes nothing) raises the actor's highest token to its token.
//     The highest token is never lowered (but see Recovery below).
//   - Durability: when Append, SaveSnapshot or Truncate returns nil, the
//     change is durable as the backend promises (FileJournal: fsynced).
//   - No effect on rejection: ErrFenced, ErrConflict, ErrInvalid, ErrClosed,
//     ErrUnavailable, and a context that was done before the call, leave
//     the journal as it was. Any other error (ErrUnknownOutcome, an I/O
//     error, a context that ended while the operation was in flight)
//     leaves the outcome unknown.
//   - Isolation: the journal never keeps or returns the caller's slices;
//     mutating a Payload after Append, or an Entry returned by Read, does
//     not change what is stored.
//   - Stored form: what Read returns is exactly what UnmarshalEntry of
//     MarshalEntry of the appended entry gives (after stamping): Time in
//     UTC with nanosecond precision and no monotonic reading, an empty
//     Payload as nil. Entries whose Time cannot be stored (before 1677 or
//     after 2262, see TimeRepresentable) and actor keys longer than
//     MaxActorLen are rejected with ErrInvalid.
//
// The rules are written once, as the pure methods of ActorState
// (CheckAppend, CheckSnapshot, CheckTruncate) and CheckAppendArgs; every
// backend evaluates them, so backends agree on what is rejected and why.
//
// # Entry encoding (version 1)
//
// MarshalEntry writes, in this order (uvarint and varint are
// encoding/binary's; varints are minimal-length, which UnmarshalEntry
// enforces so that every accepted record re-encodes to the same bytes):
//
//	size      field
//	1         version, 0x01
//	1-10      Seq, uvarint
//	1         Kind
//	1-10      Token, uvarint
//	1         flags: bit 0 set = Time present; other bits must be 0
//	1-10      Time as UnixNano, zig-zag varint; only if flags bit 0 is set
//	1-10 + n  Actor: uvarint byte length n, then n bytes
//	1-10 + n  Method, same
//	1-10 + n  CorrelationID, same
//	1-10 + n  TraceID, same
//	1-10 + n  IdempotencyKey, same
//	1-10 + n  Payload, same
//	4         CRC-32C (Castagnoli) of every byte before it, big-endian
//
// For example Entry{Seq: 1, Kind: KindInvocation, Token: 7, Actor: "a",
// Method: "m", Payload: []byte("hi"), Time: time.Unix(0, 1)} encodes as
//
//	01 01 01 07 01 02 01 61 01 6d 00 00 00 02 68 69 c9 85 79 42
//
// A Snapshot (MarshalSnapshot) is encoded the same way:
//
//	1         version, 0x01
//	1-10      Seq, uvarint
//	1-10      Token, uvarint
//	1-10 + n  Data: uvarint byte length n, then n bytes
//	4         CRC-32C of every byte before it, big-endian
//
// so Snapshot{Seq: 3, Token: 7, Data: []byte("s")} is 01 03 07 01 73 1a db cb 47.
//
// Every future version keeps the version byte first and the CRC-32C last.
// A reader that finds an intact checksum and an unknown version reports
// ErrUnknownVersion (wrapped with ErrCorrupt) and never treats the record as
// damage. New fields go in a new version; version 1 never changes, which a
// golden test pins.
//
// # FileJournal
//
// One bbolt file per node, opened by OpenFile with FileOptions (start from
// DefaultFileOptions). The file is locked (flock) while open; a second
// OpenFile on it, from another process or from this one, fails with
// ErrLocked after FileOptions.LockTimeout.
//
// File layout. Five top-level buckets for the journal:
//
//	loom       "format" -> 0x01, the layout version
//	actors     actor key -> meta record
//	log        entry key -> entry record: each actor's older entries
//	recent     entry key -> entry record: each actor's newest entries
//	snapshots  actor key -> snapshot record
//
// and fourteen for the message queues, named "q.meta", "q.ids", ...
// (internal/queuesm's BucketNames), whose keys and records are those of
// queuesm.Buckets; see Message queues below.
//
// An entry key is uvarint(len(actor)) || actor || seq as 8 bytes
// big-endian, so an actor's entries sit together in seq order; a uvarint
// length is self-delimiting, so no actor's key prefix is a prefix of
// another's. One shared bucket per role (rather than a bucket per actor)
// keeps many small actors on few pages.
//
// An Append writes its entries to recent. When an actor would have more
// than 8 entries there (recentMax), the Append first moves them all to log,
// so all of an actor's log entries precede all of its recent ones, and
// Read reads log, then recent. The point is write cost: recent holds only
// the newest few entries of each actor, so it stays a small, shallow tree
// whose pages many actors share, and a group commit touching n actors
// rewrites about n/3 of its pages plus a root, instead of a leaf and a
// branch per actor deep inside a tree that holds every entry. Each actor's
// pages in log are rewritten once per 8 appends.
//
// The meta record holds the ActorState:
//
//	1      version, 0x01
//	1-10   Tail, uvarint
//	1-10   Token (the highest), uvarint
//	1      flags: bit 0 set = a snapshot is stored; other bits must be 0
//	1-10   SnapshotSeq, uvarint (0 without a snapshot)
//	4      CRC-32C of every byte before it, big-endian
//
// Entry and snapshot records are exactly MarshalEntry and MarshalSnapshot.
// An Append writes its entries and the actor's meta in one transaction, so
// an actor's stored entries are always the contiguous range
// (truncated-through, Tail], and the range is empty only when Tail equals
// the snapshot's Seq (or 0).
//
// Group commit. Append, SaveSnapshot and Truncate encode their records on
// the caller's goroutine and queue a request. One committer goroutine takes
// everything queued (at most FileOptions.MaxBatch requests) as soon as its
// previous commit has finished — there is no timer, unlike bbolt's
// DB.Batch, so a lone caller pays one commit — applies each request's checks
// and writes in one read-write transaction, commits (bbolt fsyncs the data,
// then the meta page), and answers them all. A request that is fenced,
// conflicts or is invalid is rejected on its own without aborting the
// others, and requests to the same actor in one batch see each other in
// queue order. Throughput under concurrency comes from sharing fsyncs, never
// from skipping them: fsync is always on.
//
// Context. A request whose context is done before the committer takes it
// returns ctx.Err() and has no effect. Once taken it is committed
// regardless; a caller whose context ends after that point gets an error
// wrapping ctx.Err() and does not learn the outcome (Tail or Read will
// tell). A caller whose context stays alive always waits for the answer.
//
// Reads. Read, Tail and LoadSnapshot run bbolt read-only transactions on the
// caller's goroutine, concurrently with the committer, and see every change
// whose call has returned. Each record's checksum is verified as it is read;
// a failure is returned as ErrCorrupt.
//
// Recovery. OpenFile verifies every record (so opening costs a read of the
// whole file) and repairs damage in one fsynced transaction before
// serving, reporting each repair through FileJournal.Recovered and as a
// warning on FileOptions.Logger:
//
//   - An actor's log keeps its longest valid prefix: the first entry that
//     fails its checksum, does not decode, is out of sequence or belongs to
//     another actor is dropped together with every later entry of that
//     actor.
//   - The tail becomes the end of that prefix, but never less than the Seq
//     of a snapshot, so the next Append continues where the valid log ends
//     and a holder that expected the old tail gets ErrConflict. If the
//     prefix ends below the snapshot's Seq, the entries between were lost
//     but the snapshot covers them; the prefix is then truncated too (as
//     Truncate through the snapshot would), so the log stays contiguous.
//   - A damaged snapshot record is dropped (LoadSnapshot then reports none).
//   - A damaged or missing meta record is rebuilt from the entries and the
//     snapshot; its highest token is then the highest one found in them,
//     which may be lower than the lost value.
//   - Records written by a newer release are not damage: OpenFile fails
//     with ErrUnknownVersion and changes nothing.
//
// Process crashes (kill -9) lose nothing acknowledged: bbolt commits are
// atomic and the test suite kills a writer mid-flight to check it. Power
// loss is covered by the fsyncs, to the extent the disk honours them.
//
// # Message queues
//
// FileJournal is also a queue.Store and a queue.Notifier: the queue rules
// (internal/queuesm, the machine every backend runs) run on the "q."
// buckets of the same file, inside the committer's transactions.
//
//   - Writes. Enqueue, Release, Retry, DeadLetter, Replay, Purge,
//     SetReminder and DeleteReminder are requests like an Append: queued,
//     group-committed with the appends and the other queue writes, and
//     fsynced before they return. A queue rule violation (queue.ErrInvalid,
//     ErrNotFound, ErrStale) is a reject like ErrFenced: it writes nothing
//     and the rest of the batch commits. Release first asks a read-only
//     transaction whether anything of the actor's is due, and queues
//     nothing (no write, no fsync) when not.
//   - Appends. In the same request, after the journal's rules (fenced,
//     conflict), every KindMessageSend entry must carry a valid message
//     under its IdempotencyKey (else ErrInvalid), the KindMessageDirect
//     entry (one at most, else ErrInvalid) a message id the store does not
//     know, with no ordered message of the actor pending (else ErrAck,
//     wrapping queue.ErrKnownID or queue.ErrNotHead), and the
//     KindMessageAck entries must name messages pending in the actor's
//     queue, each ordered one at the head (else ErrAck, wrapping
//     queue.ErrNotFound or queue.ErrNotHead); only then are the entries
//     written, the acks applied, the direct messages' ids remembered and
//     the sends enqueued. So an acknowledgement commits with
//     the turn's entries or not at all. Each request of a batch sees the
//     queue writes of those before it.
//   - Reads. Due, Ready, ListDead, Reminders and Stats run read-only
//     transactions on the caller's goroutine, like Read.
//   - Clock. FileOptions.Now stamps AcceptedAt and the instant an id is
//     acknowledged or purged, from which FileOptions.MessageIDRetention
//     runs; Release and Replay use the now their caller passes.
//   - Notifications. After each commit the committer calls the Notify
//     function, once per actor the batch gave something to deliver or
//     release, after answering the batch and holding no lock: it must not
//     block, or it delays the next commit.
//
// A file written before the queues (the same layout version, without the
// "q." buckets) opens as it is and gets the empty buckets, in one fsynced
// transaction; nothing older reads them, so the layout version stays 0x01.
// OpenFile's recovery leaves the queue buckets alone: their records carry
// their own checksums (queue's encodings), and dropping a damaged one would
// silently lose a message or break the indexes that refer to it, so a
// read or write that meets one fails with queue.ErrCorrupt instead.
//
// Close stops new operations (they return ErrClosed), lets the committer
// finish every request already queued, waits for in-flight reads, and closes
// the file. It may be called more than once.
package journal
