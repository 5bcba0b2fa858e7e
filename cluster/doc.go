// Package cluster is a node's membership in a Loom cluster, built on
// hashicorp/memberlist (SWIM gossip): which nodes are alive, what each one
// advertises (Meta: node id, gRPC, Raft and HTTP addresses, version), and
// join / leave / update events for the layers above (placement rebuilds its
// ring from Alive; raftlock bootstraps and manages voters from it).
//
// # Lifecycle
//
// New validates a Config and builds a Cluster without starting anything.
// Start binds the gossip port and joins through the seeds, retrying with
// backoff until one answers or JoinTimeout passes (then *JoinError, wrapping
// ErrJoinFailed). Leave gossips a graceful leave and shuts down; Close does
// the same with LeaveTimeout if still running, closes subscriptions and
// waits for the package's goroutines. Close is idempotent; a Cluster is
// started at most once.
//
// # Guarantees
//
//   - Unique ids: a node whose id is already used by a live member is
//     refused: its Start fails with ErrDuplicateID naming the id, and the
//     existing member is not disturbed. The check runs on both sides of the
//     join (memberlist's MergeDelegate, before any state is merged) and is
//     confirmed by pinging the other address, so a stale record of a
//     crashed previous incarnation delays a restart (until failure detection
//     removes it) rather than refusing it. Past the join, memberlist itself
//     ignores alive messages for a live name from a different address.
//   - Failure detection: memberlist's SWIM probes with the Config's timing;
//     a node killed without leaving is reported StateDead within about
//     ProbeInterval x members + the suspicion timeout (a few seconds with
//     DevConfig).
//   - Left versus dead: Leave first gossips a leave intent in the node's
//     metadata, then memberlist's leave; members that received the intent
//     report StateLeft, others StateDead. memberlist's public API does not
//     distinguish the two, nor does it expose suspicion (StateSuspect is
//     never reported by this version, see State).
//   - Healing: memberlist forgets a dead member after GossipToTheDeadTime
//     and never contacts it again, so a partition longer than that would
//     never heal. A rejoin loop (one goroutine) therefore joins, every
//     RejoinInterval, the seeds and the last known addresses of dead
//     members (kept for ReconnectTimeout), skipping this node; any
//     partition heals within about one RejoinInterval after the network
//     does. Joining seeds that are alive is a cheap push/pull that also
//     repairs one-sided views (a member restarted at a new address).
//   - Events never block gossip: each subscription is buffered; a
//     subscriber that falls behind gets one EventResync in place of the
//     events it missed and re-reads Members (see Subscribe).
//   - Meta fits: the encoded Meta is checked against memberlist's 512-byte
//     limit up front (ErrMetaTooLarge), never truncated.
//   - Bounded input (memberlist's own bounds, which this package keeps):
//     an accepted TCP connection gets TCPTimeout for its whole exchange,
//     from its accept; a UDP packet is read into a 64 KiB buffer, which
//     holds the largest datagram UDP carries; a push/pull may announce at
//     most 20 MiB of encrypted state, or in clear 1,048,576 nodes and 20
//     MiB of user state, and is refused (closed) as soon as the length
//     that says more is read; fewer than 128 push/pulls are served at
//     once, the others closed. In clear, a header under those limits can
//     still make memberlist allocate some 100 MB for its node list; with
//     Config.Keys only a holder of the key gets past the length check.
//   - Encrypted gossip, when Config.Keys is set: memberlist's keyring
//     (AES-GCM) encrypts and authenticates every message; one that no
//     installed key opens is dropped, so a node without the cluster's key
//     cannot join or be heard. Keys rotate without downtime (keyring.go);
//     tools name a key by KeyID, never print it.
//
// # Concurrency
//
// memberlist owns the protocol state and calls this package's delegate from
// its own goroutines; the member registry (what Members, Alive and events
// report) and the subscriptions are owned by one mutex that those callbacks
// take briefly and that is never held across a call into memberlist.
// Lifecycle calls (Start, Leave, UpdateMeta, Close) are serialised by a
// second mutex. The goroutines this package starts are the rejoin loop and
// the short-lived joins of an attempt; Leave and Close stop and wait for
// them. (memberlist's own goroutines are stopped by its Shutdown.)
//
// # Logging
//
// Config.Logger receives this package's logs and memberlist's, whose
// "[DEBUG]", "[INFO]", "[WARN]" and "[ERR]" prefixes become slog levels.
package cluster
