// Package raftlock is Loom's embedded coordinator, replicated journal and
// message store: one hashicorp/raft group whose state machine holds the
// sessions, the locks with their fencing tokens, every actor's journal and
// its queue of durable messages. A *Store is one node's member of the
// group; it implements lock.Coordinator and journal.Journal, and its
// Queues (Store.Queues) implement queue.Store and queue.Notifier; it
// passes the three conformance suites (locktest, journaltest and
// queuetest, the latter two also when every call goes to a follower).
// Groups splits the actors over several such groups on one Raft port
// (see Several groups), and passes the same suites.
//
// It is built in three layers. The replicated command layer
// (internal/replica: a replica.Group) runs Raft, its log and transport,
// group commit, forwarding to the leader, retries, the leader's office
// clock and membership, and its dedup table (internal/replica/dedup)
// makes commands exactly-once; it knows nothing of locks or journals. The
// rules are plain state machines (internal/locksm, internal/journalsm,
// and internal/queuesm for the message queues) over key-ordered buckets
// (internal/kv). This package joins them: the commands and their encoding
// (commands.go), the fsm that applies them to fsm.db (fsm*.go), and the
// Store's API (api.go, and queue.go for Store.Queues, the queue.Store of
// the actors whose journals the Store keeps: an append's KindMessageAck
// and KindMessageSend entries are applied to the queues in the same
// command, after the journal's rules and the queues' rules passed).
//
// # Guarantees
//
//   - Durability: a write (Append, SaveSnapshot, Truncate, CreateSession,
//     Renew, Acquire, a queue write such as Enqueue, ...) returns success
//     only after its Raft entry was committed, that is fsynced to the log
//     (raft-wal or raft-boltdb, fsync always on) of a quorum of voters. Writes other
//     than journal and queue writes also wait until this node's replica
//     has applied them.
//   - Read-your-writes on the node: Read, Tail, LoadSnapshot, Holder and
//     the queue reads read this node's replica, never the leader's, after
//     it has applied this node's latest journal or queue write. Because a
//     grant waits for the local apply, a node that acquired an actor's lock
//     reads that actor's journal with every append committed before the
//     grant. Nothing is read on the strength of being leader. Reads of an
//     actor whose lock was taken elsewhere may lag; Sync waits until the
//     replica has caught up with everything committed before it.
//   - Fencing: an Append, SaveSnapshot or Truncate is rejected with
//     journal.ErrFenced if its token is lower than the highest token that
//     has written the actor (the journal contract), or lower than the
//     token of the lock on the same key while that lock is held (its
//     session alive at the stamped time) even if the new holder has not
//     written yet: a paused ex-owner is harmless the moment a new owner
//     acquires. Appends with no lock held are allowed (only the first rule
//     applies), which the journal contract requires.
//   - Fencing tokens come from one counter in the state machine, raised on
//     every grant to one more than the larger of the counter and the
//     highest token that has written the key's journal. So tokens strictly
//     increase per key (and across keys), are never reused and never 0,
//     and a new holder is never fenced by the journal's history. Several
//     grants in one Raft entry get different tokens (a Raft index would
//     not do). A session re-acquiring its own lock gets the same token.
//   - Exactly-once commands: every command carries an id (this Store's
//     origin, node id plus a random nonce per Open, and a counter) and its
//     birth time (this replica's clock when it was created; no replica
//     can apply it at an earlier clock). The state machine remembers the
//     result of each command with an id while it is among the last
//     DedupWindow (100,000) such commands or was applied less than
//     DedupRetention (30 s, by the state machine's clock) ago; a command
//     it remembers is not applied again and gets its first result. Sends
//     whose outcome is unknown (leadership lost, the leader unreachable,
//     a forward timed out or cancelled on a leader change) are sent again,
//     the same commands with the same ids, flagged as retries, so a write
//     that returns took effect once. A retry that comes after the state machine may
//     have forgotten its result (it is not remembered, and it was born no
//     later than the newest result forgotten) is not applied and fails
//     with ErrUnknownOutcome: a caller is never told "not applied" (a
//     conflict, a fence) about a command that was. A first attempt is
//     never refused that way: the committer sends a command again only
//     after its previous send returned, so its first copy reaches the log
//     before any retry. The exception is a forward request held up (in
//     the network, or in the socket of a stopped leader) for longer than
//     both bounds after its sender gave up, which the leader then begins
//     before it sees the cancellation: such a late first copy is not
//     recognised and runs again (an append then fails with a conflict
//     that nobody waits for). Every replica makes the same decisions, from
//     the entry and its own state alone.
//   - One clock: the leader stamps every entry with its clock; the state
//     machine's clock is the largest stamp applied so far, and every
//     expiry decision uses it, so all replicas agree. A session has lapsed
//     once its deadline is before that clock. A leader's clock starts, on
//     taking office, at the later of the state machine's clock and its
//     wall clock (Config.Now), and then advances by its monotonic clock
//     (Config.Monotonic): a step of its wall clock while it leads moves no
//     stamp, and a leader whose wall clock is behind goes on from where
//     the last one stopped.
//   - Leader changes: a new leader first commits a Barrier, so every entry
//     of earlier terms is applied locally, then a leader-start command
//     that expires the sessions that had lapsed by the previous leader's
//     last stamp and extends every other one to at least a full TTL from
//     the new leader's stamp (as Consul does): a leader whose clock runs
//     ahead, or which cannot know when renewals sent to its predecessor
//     arrived, never expires a session its owner kept renewing. Only then
//     does it commit commands or accept forwarded ones. A failed attempt
//     (a leadership transfer under way refuses the entry) is tried again,
//     with backoff, for as long as the node leads.
//   - Errors: rule violations come back as the contracts' sentinels
//     (journal.ErrFenced, ErrConflict, ErrInvalid; lock.ErrHeld as a
//     *lock.HeldError, ErrSessionExpired, ErrNotHeld, ErrInvalid), with
//     the state machine's message; they had no effect. After Close every
//     method fails with an error matching journal.ErrClosed and
//     lock.ErrClosed. A context that ends before a command was sent returns
//     ctx.Err() (no effect); after it was sent, an error wrapping
//     ErrUnknownOutcome and ctx.Err(). A retry refused because it may
//     have outlived its remembered result (see Exactly-once commands)
//     wraps ErrUnknownOutcome alone.
//
// # Storage
//
// Under Config.DataDir/raft: wal/ (hashicorp/raft-wal, the default for a
// new data dir: the Raft log in append-only segment files, one write and
// one fsync per batch of entries, old entries deleted a segment at a time,
// the stable store in its meta.db) or raft.db (raft-boltdb/v2, with
// Config.LogStore LogStoreBolt or in a data dir made with it: the Raft log
// and stable store, fsynced; bbolt's free-page list is not written with
// each commit but rebuilt by scanning the file on open, as etcd does,
// which makes every log write smaller); a data dir keeps the store it was
// made with, snapshots/ (raft's file snapshot store, the last
// SnapshotRetain kept), and fsm.db, the state machine, a bbolt file opened
// with NoSync. The Raft log is the durable record; fsm.db is a cache of
// applying it. On every start fsm.db is deleted and rebuilt: Raft restores
// the latest snapshot into a fresh file and replays the log after it. The
// old file cannot be trusted as a starting point: without fsync it may hold
// a torn write after a crash, and even intact it may be ahead of the latest
// snapshot (entries applied after it) or behind the log, and Raft would
// re-apply entries on top of it. Rebuilding costs a restore of the latest
// snapshot and a replay of the entries after it (about SnapshotThreshold
// when snapshots keep up).
//
// The state machine is written behind: ApplyBatch applies commands to an
// in-memory overlay of changed records (per bucket, values and tombstones)
// on top of fsm.db, answers, and moves on; once the overlay holds 32k
// records or 16 MiB it is handed to a flush, which writes it to fsm.db in
// one bbolt transaction, sorted, on a goroutine of its own, while the next
// overlay fills. So thousands of appends share each page written, instead
// of every Raft entry rewriting a few pages per append in a transaction of
// its own. Every decision and every read sees the same state whatever the
// flush timing: lookups go from the active overlay to the one being
// flushed (kept readable until the FSM goroutine has seen its commit) to
// the file, and iteration merges the three in key order. Replicas flush at
// different moments and agree. The overlays cost memory (some 10 MiB each
// at the bounds with small entries; two at most), and so does the dedup
// index (some 80 bytes a result: 8 MiB at DedupWindow, more when
// DedupRetention holds more, 50 MiB at 20,000 writes/s), not durability:
// the Raft log is the record, and on restart fsm.db is rebuilt from it
// anyway. There is no
// timer: an idle overlay is as readable as the file, and the next snapshot
// flushes it. A read shares a lock with the applies, which take it alone,
// so that it sees whole batches: a long Read delays the applies a little
// (it copies records out and decodes them after).
//
// An FSM snapshot is the bbolt file itself: Snapshot, which Raft calls on
// the FSM goroutine between two applies, flushes the overlay (after any
// flush still running) and opens a read transaction, so the file it
// writes (tx.WriteTo) is exactly the state at the snapshot's index.
// Restore writes the received file next to fsm.db, migrates it if an
// earlier release wrote it (formats 1 to 3, fsm_layout.go), checks it
// (buckets, meta, the dedup table against the meta's count), waits for a
// running flush, renames the file over fsm.db and drops the overlays.
// fsm_layout.go documents the buckets and records: an actor's entries are
// adjacent in one bucket, and the dedup table is kept in chunks of 64
// results, each with the clock it was applied at, with an index in memory
// (rebuilt by Restore), so that a command costs a flush a share of one
// record, not two records and two deletes.
//
// # State machines
//
// The rules are three plain state machines, internal packages with no
// Raft, network or clock of their own: internal/locksm (sessions, locks
// and fencing tokens), internal/journalsm (the actors' journals) and
// internal/queuesm (the actors' message queues, dead letters and
// reminders, on buckets of their own, q.*). Each applies one command at a
// time to a few buckets (internal/kv.Bucket, the part of a bbolt bucket
// they use), as a function of those records and of the stamped clock
// passed in. The journals see the locks only through the lock fence (the
// token of the lock held on a key), and the locks see the journals only
// through the highest token that has written a key. The queues see the
// journals only through an append: the append command runs the journal's
// rules (CheckAppend), then the queues' rules for its KindMessageSend
// entries (CheckOutbox) and KindMessageAck entries (CheckAcks), and only
// if all passed writes the entries, takes the acknowledged messages out
// of their queue and enqueues the sent ones (applyAppend), so a message's
// ack commits with the state change of its turn, in one command, on every
// replica; an append without message entries reads a byte or two of each
// entry and is the journal's alone. The fsm (fsm_apply.go) decodes each
// entry, moves the clock, asks the dedup table (internal/replica/dedup,
// by the command's id, birth time and retry flag) whether the command
// runs, was applied before (its remembered result) or may have been
// forgotten (ErrUnknownOutcome), and hands each command that runs to the
// machine it belongs to, over the overlay and fsm.db; their tests run
// them on an in-memory kv.Mem, and a test replays random sequences on
// both and compares.
//
// # Message queues
//
// Every queue write (Enqueue, Release, Retry, DeadLetter, Replay, Purge,
// SetReminder, DeleteReminder) is one command, opQueue with the write and
// its argument (queue.go), group-committed, forwarded and deduplicated like
// an append, and answered with a result whose code is the queue's sentinel.
// Enqueue is stamped with the leader's clock (AcceptedAt), and the clock
// that ages remembered ids (Config.MessageIDRetention) is the state
// machine's, so every replica forgets the same ids; Release and Replay
// carry the caller's now (they forget no ids), and Retry its RetryAt. A
// refused ack or send matches both the journal's sentinel (journal.ErrAck,
// journal.ErrInvalid) and the queue's (queue.ErrNotFound, queue.ErrNotHead,
// queue.ErrInvalid). Reads (Due, Ready, ListDead, Reminders, Stats) run on
// this node's replica after its own latest writes, like Read: Due and Ready
// may lag the leader, which is harmless, since an ack is judged when it is
// applied. Release first asks the replica whether actor has anything to
// release, and proposes nothing if not, so a dispatcher's look costs no
// Raft entry. After each applied batch, every replica calls the Notify
// function once per actor the batch gave something to deliver, on the FSM
// goroutine, holding none of the fsm's locks.
//
// # Several groups
//
// Groups (groups.go) is a node's member of K Raft groups, each a Store of
// its own under DataDir/raft/g<g> (group 0 under DataDir/raft, so a data
// dir of one Store is a data dir of one group): its own log, leader,
// committer, office clock, dedup table, membership and fsm.db. An actor
// belongs to the group GroupOf gives its key (a jump consistent hash of
// its FNV-1a hash), and its lock, journal, queue, dead letters and
// reminders live there, so every rule above is one group's state machine
// deciding alone: a grant's token comes from the group's counter (tokens
// strictly increase per key, the order fencing compares, not across
// groups), and an ack commits with its turn. Sessions span the groups:
// group 0 issues the id and the others create a session with that id
// (create-session-as), so Holder names the same session in any group;
// each group renews and lapses it by its own clock, and Renew fails if
// any group has let it lapse. A message an append sends to an actor of
// another group is stored in the sender's group with the append, then
// relayed (groups_queue.go): enqueued in the receiver's group under its
// id, then handed off in the sender's, by the sending node at once and by
// the sender group's leader for what is left; ids make the move
// idempotent, and the queues are sharded (queue.Sharded): ids and Seq
// order are per group. K is recorded in DataDir/raft/groups and never
// changes. Every group votes under the server id of group 0's data dir,
// so OpenGroups refuses (ErrDamagedDataDir) a data dir in which a group
// has state and another group's directory was lost: that group would
// come back empty and vote as the server that had its log. The groups
// share the node's Raft port through MuxStreams (a one-byte header and
// the group number before a group's connection; group 0 headerless), and
// forward requests name their group. node/ bootstraps every group with
// the same servers, runs each group's membership on its own leader, and
// spreads the leaders over the voters (Store.TransferLeadership).
//
// A group may run on some of the nodes (Config.Partial). A node outside
// it keeps its Store open with an idle Raft instance, forwards its
// commands to the leader that Config.LeaderHint names while its own Raft
// knows none, returns their answers without waiting for its replica to
// apply them (Exec waits only while Replicating, and stops waiting once
// the node is not), and refuses reads with ErrNotReplica, which matches
// journal.ErrUnavailable and lock.ErrUnavailable: a stale replica is
// never read. Groups' Ready and Stats leave such groups out.
//
// # Commands and group commit
//
// Each write becomes a command, encoded in a small versioned binary format
// (commands.go; uvarints and length-prefixed bytes; journal entries and
// snapshots inside are journal.MarshalEntry and MarshalSnapshot records,
// already stamped with Seq, Actor and Token, since an append succeeds only
// at the seqs it expects), with an id and a birth time (see Exactly-once
// commands). The replica layer frames commands into Raft entries and
// forward requests (replica.Wire) behind a version byte, which raftlock
// sets: this release writes version 3 and reads logs of versions 1 to 3,
// applying each entry by the rules of the release that wrote it (the queue
// rules only to version 3 entries: see commands.go); an earlier release
// refuses its entries and forwards, and a release that reads only version 1
// applies the dedup rules differently, so the nodes of a cluster must not
// run two releases. The Store hands each command to its replica.Group
// (Exec), telling it whether the caller waits for this replica to apply it
// (every write but a journal or queue write). The Group's committer
// goroutine takes everything queued (up to MaxBatch commands,
// MaxBatchBytes) as soon as its previous send has returned, with no timer,
// and sends it as one Raft entry if this node is the leader, or as one
// forward request to the leader otherwise. The leader queues forwarded
// commands with its own, so commands from every node share its entries. The
// state machine applies each entry (and each run of entries Raft hands it
// at once) as one unit to its overlay (see Storage) and returns a result
// per command.
//
// # Forwarding
//
// Forwarding, retries and nudges are the replica layer's; its package
// documentation says what they guarantee. A follower sends its batch
// through Config.Forwarder to the leader's HandleForward (the gRPC
// transport lives in transport/; tests call HandleForward in process). It
// may have MaxForwardsInFlight (default 4) batches there at once, while
// the leader commits at most MaxInFlight (default 1) entries at a time:
// the leader queues forwarded commands with its own, so a follower's next
// batch joins the leader's next entry instead of waiting at the follower
// for the batch ahead of it (measured with 64 writers spread over three
// nodes: about a quarter more writes/s and larger entries; more Raft
// entries in flight only added fsyncs). Errors, timeouts and leader
// changes are retried transparently (the same commands with the same ids,
// flagged as retries: see Exactly-once commands) until the caller's
// context ends; commands in different batches are concurrent calls, whose
// order nothing promises. A forward request lasts at most ForwardTimeout,
// and ends the moment this node sees the leader change or lose contact,
// so that a paused leader does not hold the forward slots while the node
// that won the election in its place waits for one. The answer carries
// the Raft index of the batch; callers that wait for the local apply then
// wait until their replica has applied it, and the follower nudges the
// leader to append a Barrier when nothing else would tell it of the
// commit soon. Journal writes do not wait for the local apply (a stream of
// them sends no nudges); a read on the node waits for its own latest
// journal write and nudges if it has to.
//
// # Who owns what
//
//   - The Store owns its fsm and its replica.Group (rep), and adds only
//     what is raftlock's: command ids (origin, seq), the codec of its
//     commands and results, the leader-start command (the Group's
//     TakeOffice hook) and the reaper (its WhileLeading hook).
//   - The Group owns Raft, the log store, snapshot store and transport
//     (with the vote gate and the per-data-dir server id), the committer
//     and its queue, forwarding and nudges, leadership and the office
//     clock. Group.mu guards the committer's queue and closed; Group.lmu
//     guards leadership (ready, the generation, the changed channel). Only
//     its watcher goroutine starts and stops the leadership goroutine,
//     which alone sets ready and runs the hooks (see the replica package).
//   - The state machine (fsm) is written only by Raft's FSM goroutine
//     (ApplyBatch, Snapshot, Restore) and by the flush goroutine it
//     starts (at most one at a time; it writes fsm.db from an overlay
//     nobody changes any more). fsm.mu guards the bbolt handle and the
//     overlays: an apply holds it alone (readers see whole batches),
//     readers share it, Restore and Close take it alone; the flush
//     goroutine never takes it. fsm.progress (a replica.Progress) guards
//     the applied index, the state machine's clock and a failure; writers
//     wait on it (WaitApplied). The dedup index is the FSM goroutine's
//     alone.
//   - Goroutines: the Group's (the committer and its senders, the
//     watcher, the leadership goroutine, the vote gate) are started by
//     Open and stopped by Close, which waits for them; Raft's own
//     goroutines stop in raft.Shutdown, and Close closes the transport's
//     pooled connections, which ends the goroutines other nodes serve them
//     with (nothing is left to the garbage collector's finalizers); a
//     flush is waited for by the next flush, Snapshot, Restore and Close.
//
// If applying a committed entry or flushing the overlay fails (an I/O
// error on fsm.db), the node stops applying and every operation fails with
// ErrStateMachine; a restart rebuilds the state from the log. (Entries
// answered before a failed flush were decided on the correct state; only
// this replica's copy is lost, and the log has them.)
//
// # Membership
//
// Bootstrap creates a cluster (call it on one node, or on all with the same
// servers); HasState says whether a node already has Raft state (then it
// must not be bootstrapped: it rejoins its cluster with its data dir).
//
// With Config.PerDirServerID a server id belongs to a data dir (NodeID +
// "@" + random hex, in raft/server-id; NodeOf maps it back): a node whose
// data dir was wiped comes back as a new server, never as the one whose
// votes and log it lost. Config.VoteGate closes the other half of that
// hole: hashicorp/raft counts a vote for the server it asked, by address,
// and an empty log grants any vote, so a server outside its own
// configuration refuses vote and pre-vote requests (answering them in a
// wrapper around the transport) unless the gate says a new cluster is
// being bootstrapped with it. Once a leader has added it, it has every
// entry committed before its addition and votes by Raft's rules.
// CaughtUp tells whether a follower has applied about as far as the
// leader's commit index, which node/ waits for before promoting it.
// AddVoter, AddNonvoter and RemoveServer run on the leader (ErrNotLeader
// elsewhere); Leader, State, IsLeader, Configuration and Stats describe the
// node; the Store delegates all of them to its replica.Group. The
// bootstrap_expect logic (wait for N members, pick the node that
// bootstraps, add servers as non-voters, promote caught-up ones, remove
// dead servers and replaced incarnations) is node/'s, built on these.
// hashicorp/raft does not tell a removed server of its removal; node/ closes
// it.
//
// # Sessions and the reaper
//
// Renew is one command per session (one per node), whatever the number of
// locks. A lapsed session is deleted, with its locks, by the first command
// that touches it (Renew, Acquire, Release, or an Append fenced by its
// lock), and the leader commits a reap command every ReapInterval when its
// replica has sessions past their deadline. Holder judges a lock held while
// its session's deadline is not before the later of the replica's clock and
// the node's own clock: exact on the leader, a hint elsewhere.
//
// # Connections
//
// The Raft transport (Open's own over TCP, and TLSStreamLayer) closes an
// accepted connection that has not sent the first bytes of a request
// within replica.AcceptTimeout (10 s) of its accept; with TLS the
// handshake must fit in that time too. Past its first bytes a connection
// has no deadline and a request no size bound: Raft pools connections idle
// between requests and streams a snapshot for as long as its size takes,
// and its wire format has no framing to bound a request by. (Its msgpack
// decoder grows a buffer as bytes arrive, so a length it is told costs
// nothing until it is sent.) So a peer that starts a request and stops
// holds its connection; mutual TLS that accepts node certificates only
// (TLSStreamLayer with such a server configuration) is what keeps peers
// that are not nodes from getting that far.
package raftlock
