// Package chaos is Loom's chaos suite: it starts clusters of real
// loom-node processes on loopback (built with -tags loomchaos, the only
// build that has them), each with the chaos hook
// (`loom-node run --chaos-hook`, package transport/faultnet) on a loopback
// IP of its own, runs a recorded workload against them through the
// embedded client and the HTTP gateway, injects faults, heals them, and
// then checks the history. The workload writes, compare-and-sets and reads
// registers, adds to and reads counters, puts, deletes, gets and lists the
// keys of kv actors (kv.list), and every quarter second reads one hot
// register through every node's gateway and an embedded client at once.
// The checks:
//
//   - linearizability of every register, counter and kv actor
//     (porcupine; a kv actor is a map over a few keys whose list must
//     name exactly the keys present),
//   - counter bounds: the final value lies between the acknowledged
//     increments and the acknowledged plus the unknown ones,
//   - the journal audit: every actor's journal, dumped from every node
//     (GET /v1/admin/journal/{type}/{id}?sync=1), has contiguous seqs,
//     tokens that never go down, every acknowledged write exactly once, no
//     entry of a failed or never-invoked op, the same entries on every
//     replica, and no orphaned lock (a held lock is the current session's
//     of the node that has the actor active),
//   - single activation, from the nodes' activation logs
//     (--chaos-events): no token granted to two nodes, no two nodes
//     writing under one token, no write under a token older than an
//     earlier write's; and the total time two processes both had an actor
//     loaded (reported: fencing makes it harmless),
//   - recovery: the longest time a loaded (hot) actor went without a
//     successful operation around each fault, against a bound derived
//     from the nodes' configuration (bounds.go): session TTL + election
//     (twice Raft's heartbeat timeout, randomised, plus one election
//     timeout) + gossip's failure detection (a probe interval and its
//     timeout plus memberlist's suspicion timeout for the cluster's
//     size) + a margin (the workload's op timeout and a second), plus
//     the fault's designed outage if it has one; the report prints the
//     bound and its parts,
//   - commits after a leader pause: after the Raft leader is stopped
//     during a burst of forwarded writes, every follower commits again
//     within election + 1 s,
//   - convergence after every heal and at the end: every node healthy,
//     one membership, one Raft configuration and leader, one ring, a final
//     write to every actor succeeds, and every actor is active on exactly
//     one node,
//   - load: a run whose load before the first fault was too low fails
//     instead of passing quietly,
//   - durable messages (messages.go): beside the calls, senders send
//     counter increments as durable messages with unique ids through
//     random nodes' gateways (a send whose answer was lost is sent again
//     under its id until accepted), every 25th failing on purpose; after
//     the convergence every counter equals the sum of its accepted
//     increments, every accepted id is acknowledged exactly once in its
//     actor's journal on every replica (a failing one never), the queues
//     are empty with nothing in flight, and the dead letters are exactly
//     the failing messages. The unsafe mode message-ack-first (an
//     acknowledgement appended before the state change it belongs to)
//     must be caught by it.
//
// The report also gives, for each partition with a majority side, the
// success rate of the gateway calls to each side's nodes (the embedded
// client's calls belong to no side) and the longest window in which no
// write invoked during the partition was acknowledged (the majority side
// committed nothing: the minority cannot).
//
// The faults (nemesis.go, faults.go): kill -9 (a random node, the Raft
// leader, a hot actor's owner) and restart with the data dir kept or
// wiped; SIGSTOP past the session TTL; partitions through the hook, for
// gossip, Raft and gRPC alike (a minority, the leader, a clean split, a
// deaf node, a bridge, one longer than memberlist's GossipToTheDeadTime,
// gossip only); a node's clock running slow or fast (its lease keeper's
// and its Raft store's, by which a leader stamps entries and expires
// sessions; half the time the leader's) while a node is cut off; slow
// fsync on the leader and "no space left" on one node's Raft log; a node
// joining and leaving under load; a rolling restart. The clients (the
// test process, 127.0.0.1) are never cut off: both sides of a partition
// keep getting calls.
//
// TestChaos, the default scenario, runs with every security feature on
// (Scenario.Secure, security.go), as `loom-node cluster --secure` sets a
// cluster up: StartCluster creates a CA, a node certificate per node (its
// 127.A.B.x among its IPs, though nodes check roles, not addresses), a
// client certificate for the suite, a gossip key and one token with every
// scope (actors:call, tasks:run, admin, metrics) under the run's data dir
// (tls/, beside the nodes' dirs, so that a node killed -9 or wiped
// restarts with the same files), and gives each node a config file of its
// own with tls (verifyIncoming and verifyOutgoing), cluster.gossipKey and
// auth.tokensFile. Every HTTP request of the suite then goes over HTTPS
// with the client certificate and the token, and the embedded clients dial
// with the TLS files and the token: Node.URL, Cluster.HTTPClient and
// Cluster.ClientOptions are the one place that knows. The chaos hook still
// cuts every link: gRPC's and Raft's TLS run over its listener, dialer and
// StreamLayer, and memberlist encrypts above its transport. Before the
// load the suite proves the cluster secure (every node's gossip keyring
// holds the key, a request without a token gets 401, plain HTTP gets no
// API answer, gRPC refuses a handshake without a client certificate and
// the Go client without a token), so that nodes which ignored their
// settings fail the run instead of passing it in plaintext. The other
// scenarios run in plaintext and cover that path, so the default one does
// not run twice; -chaos.plain runs every scenario plain, -chaos.secure
// every one secure, and a secure scenario's name ends in -secure.
//
// Combined faults (combined.go), in the soak's random pool too, expose
// what no fault alone does. wipe-leader-loss makes a minority of
// followers lag (the leader's Raft traffic to them delayed by three
// quarters of the heartbeat timeout), kills -9 another follower, wipes
// its data dir and restarts it under its id, and kills the leader right
// after it: a wiped node that votes as the voter it was lets a lagger win
// without the entries the old majority committed, and the checkers see
// acknowledged writes lost and tokens going back. pause-leader-burst
// writes to the followers' actors open-loop (a new write every 20 ms per
// follower, whatever the earlier ones do) and SIGSTOPs the leader
// meanwhile: a follower whose forwards wait on the stopped leader without
// a deadline commits nothing until a connection dies.
//
// TestChaosKernelPartitions runs the partitions again, cut by the kernel
// (kernel.go): where the test runs as root with iproute2's ip and tc, it
// creates a network namespace (loomchaos-<pid>-<seed>), re-executes its
// own test binary inside it, so that the nodes and the clients share only
// that namespace's loopback, and there drops the packets between two
// nodes' addresses with tc filters on lo (a clsact qdisc, u32 matches on
// source and destination, redirected to an ifb device kept down); a heal
// deletes the filters. The nodes keep the chaos hook for everything else.
// The outer test streams the inner run's output, fails if it failed,
// deletes the namespace, and first deletes namespaces that killed runs
// left. It skips, saying why, without root, ip or tc, or where the
// namespace and its tc setup cannot be made. Its report names the
// scenario partitions-kernel-3 (-5 in the soak) and its network
// "kernel"; each partition's timeline entry notes the directions dropped
// and how many packets the kernel dropped (none is an error).
//
// TestChaosRedis runs the nodes on Redis (redis.go): coordination
// (sessions, locks, fencing tokens), journals and message queues on one
// throwaway redis-server (internal/redistest: appendonly yes, appendfsync
// always; the test fails if it cannot start one), no Raft store. Same
// workload and checkers; the faults, shuffled by the seed: kill -9 and
// SIGSTOP past the session TTL of a hot actor's owner, kill -9 of the
// redis-server and its restart on its append-only file (its downtime is
// the fault's designed outage), the server slow to write (CLIENT PAUSE
// WRITE for 200 ms to a third of the TTL at a time, 50-300 ms apart: every
// write and script waits, appends, renewals and grants alike, while reads
// go on, as under a slow fsync; DEBUG SLEEP would freeze the whole server,
// which the kill already covers), and a minority cut off through the hook
// (gossip and gRPC; the cut-off node still reaches Redis, keeps its
// session and its locks, and the majority cannot take its actors until the
// heal). Raft faults do not apply (no leader, no Raft log), and
// convergence leaves the Raft rules out (a node reporting Raft state is a
// problem there). The recovery bound has no election: session TTL + failure
// detection + margin. The journal audit also reads every actor's journal
// and lock straight from the server (redisjournal, redislock, in the test
// process) as the reference every node's dump must match. About 45 s.
//
// Every operation is recorded with its invoke and completion time (ns since
// the run started, monotonic) and an outcome: ok, failed (definitely not
// applied) or unknown (may have been applied). The outcome comes from the
// error class: transport.MaybeApplied for the embedded client, the status
// code for the gateway (200 ok; 500, 504 and 499 unknown; a refused
// connection failed; other transport errors unknown; other statuses failed).
// Failed operations are left out of the linearizability check; unknown ones
// are kept with a completion time of "never", so they may take effect at any
// point after they were invoked, or not at all.
//
// Every random choice (workload, fault kinds, targets, durations) is drawn
// from one seed, printed at the start of a run; timing is real, so a seed
// replays the same schedule, not the same interleaving. A run writes its
// artifacts (each node's log, the fault timeline, the history as JSON lines,
// porcupine's HTML for an illegal actor, and report.json) to an output
// directory whose path is printed.
//
// TestChaosCheckersBite runs nodes in an unsafe debug mode
// (--debug-unsafe: acknowledge before the append is durable, activate an
// actor whose lock another node holds, acknowledge a message before its
// effect, or, on Redis, append without the fencing check) under the faults
// that expose it, and passes only when the checkers catch it. Its
// redis-skip-fence row runs a Redis cluster whose journal's append script
// skips the token check (a loomchaos-only variant; the default script is
// untouched). Alone that cannot show: a stale owner appends at the seq it
// replayed, behind the new owner's entries, and the expected-seq check
// refuses it first; so the mode also moves a refused append to the log's
// end (where only the fence could refuse it) and holds every append 40 ms
// past its caller, as if on its way to Redis. Owners stopped past the TTL
// then wake with appends in flight that land after the new owner's under
// the old token: the journal audit (tokens going back) and the
// single-activation checker (a write under an older token than an earlier
// one's) must catch it.
//
// The package's tests run it: `go test ./test/chaos` runs the short default
// scenarios, the Redis scenario (TestChaosRedis), the combined faults
// (TestChaosCombined, a cluster each), the kernel partitions (as root) and
// the unsafe-mode proof; `go test ./test/chaos -run
// 'TestChaosRedis|TestChaosCheckersBite/redis'` only the Redis ones
// (see chaos_test.go for the flags: -chaos.seed, -chaos.long, -chaos.out,
// -chaos.race, -chaos.plain, -chaos.secure).
package chaos
