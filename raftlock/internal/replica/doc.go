// Package replica is raftlock's replicated command layer: a Group is one
// node's member of a hashicorp/raft group that commits commands for a
// state machine (FSM) and knows nothing of what they do. Commands are
// opaque encoded bytes to it and results opaque values (R). Its user
// supplies the state machine (OpenFSM), what the layer needs to know of
// commands and results (Codec: a command's name for messages, how to flag
// a copy as a retry, a result's form in a forward response, and the result
// that says "not the leader, send it again"), the version of the framing
// (Wire), the sentinels its errors wrap (Errors), and two leader hooks
// (TakeOffice, WhileLeading). The package dedup is the table with which
// the state machine applies each command once.
//
// # Guarantees
//
//   - Group commit: Exec queues a command for the Group's one committer
//     goroutine, which takes everything queued (up to MaxBatch commands,
//     MaxBatchBytes) as soon as a send slot is free, with no timer, and
//     sends it as one unit: one Raft entry stamped with the leader's clock
//     (Wire.EncodeBatch) if this node is the leader in office, at most
//     MaxInFlight at a time, or one forward request to the leader
//     otherwise. The leader queues forwarded commands with its own, so
//     commands from every node share its entries. Exec returns once the
//     entry is committed (fsynced to the log of a quorum) and applied on
//     the leader; with wait, once this node's replica has applied it too;
//     without, BeforeRead waits for it instead, so the node reads its own
//     writes.
//   - Forwarding: a follower sends a batch through Config.Forwarder to the
//     leader's HandleForward, at most MaxForwardsInFlight at once. A
//     forward lasts at most ForwardTimeout and ends the moment this node
//     sees the leader change or lose contact: a leader that was paused or
//     cut off would otherwise hold the request, and its slot, until its
//     connection died. The committer waiting for a slot routes again on
//     the same event, so a node that became the leader commits through
//     Raft at once. The answer carries the Raft index of the batch.
//   - Retries: a send whose outcome is unknown (leadership lost, the
//     leader unreachable, a forward timed out or cancelled) goes back to
//     the head of the queue and is sent again, the same command bytes
//     flagged as retries (Codec.MarkRetry), with a backoff of 1 to 128 ms,
//     until its caller's context ends; a forwarded command the receiver
//     did not commit (it is not the leader any more) is answered
//     Codec.Retry and sent again too. A command is sent again only after
//     its previous send returned, so its first copy reaches the log before
//     any retry. The state machine applies each command once (dedup); the
//     layer never decides that a command did or did not take effect.
//   - Nudges: a follower learns that an entry committed from the next
//     AppendEntries. When a caller of a forwarded batch waits for the
//     local apply and nothing else is queued, the follower sends an empty
//     forward request (a nudge), on which the leader appends a Barrier,
//     rather than leave its callers waiting up to twice CommitTimeout.
//     Commands whose callers do not wait send no nudges; BeforeRead sends
//     one if it has to wait.
//   - The office clock: a new leader first commits a Barrier, so that
//     every entry of earlier terms is applied locally, then starts its
//     clock at the later of the state machine's clock and its wall clock
//     (Config.Now), advancing by its monotonic clock (Config.Monotonic),
//     and runs TakeOffice, whose entry (stamped with that clock) must apply
//     before the node is ready (IsLeader): only then does it commit
//     commands or accept forwarded ones. Every entry it commits is stamped
//     with this clock (Stamp); a step of its wall clock moves no stamp.
//     If the state machine fails to apply the office entry, the node hands
//     leadership to another.
//   - Membership: Bootstrap creates a cluster; AddVoter, AddNonvoter and
//     RemoveServer run on the leader (Errors.NotLeader elsewhere);
//     CaughtUp, Leader, State, IsLeader, Configuration, Stats,
//     AppliedIndex and Snapshot describe the node. With PerDirServerID a
//     server id belongs to a data dir (NodeOf maps it back), and VoteGate
//     keeps a server that is not in its own configuration from voting
//     (votegate.go).
//   - Errors: after Close, Exec, BeforeRead, HandleForward and the
//     membership changes fail with Errors.Closed. A context
//     that ends before a command was sent returns ctx.Err() (no effect);
//     after, an error wrapping Errors.UnknownOutcome and ctx.Err(). A
//     command queued when the Group closes fails with Errors.Closed if it
//     was never sent, Errors.UnknownOutcome if it was.
//
// # Who owns what
//
//   - Group.mu guards the committer's queue and the state of each call
//     (queued, in flight, done, abandoned) and closed. Callers enqueue and
//     wait; the committer goroutine (commitLoop) takes batches, and sender
//     goroutines it starts send and answer them.
//   - Group.lmu guards leadership: ready (leader and in office), the
//     generation, and the changed channel (and route context) that wakes
//     the committer and cancels forwards. Only the watcher goroutine
//     (watchLeadership, fed by Raft's NotifyCh and leader observations)
//     starts and stops the leadership goroutine (lead), which alone sets
//     ready and runs TakeOffice and WhileLeading.
//   - The FSM is Raft's: the Group only reads its progress, waits on it,
//     and closes it after Raft has shut down. (Progress is a tracker an FSM
//     can answer those calls from.)
//   - Goroutines: the committer and its senders, the watcher, the
//     leadership goroutine and the vote gate are started by Open and
//     stopped by Close, which waits for them; Raft's own goroutines stop in
//     raft.Shutdown, and Close closes the transport's pooled connections,
//     which ends the goroutines other nodes serve them with.
package replica
