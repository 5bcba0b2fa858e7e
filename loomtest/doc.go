// Package loomtest is a test kit for applications built on Loom: from a
// plain `go test`, it starts a cluster of real Loom nodes in the test
// process, on loopback, with the application's actor types; gives a
// client to call them; injects the faults Loom is built to survive; and
// waits for the cluster to recover from them by watching the nodes'
// state, never by sleeping.
//
//	c := loomtest.Start(t, loomtest.Options{Nodes: 3, Types: []runtime.Definition{CartType}})
//	_, err := AddItem.Call(ctx, c.Client(), "cart-1", "apple")
//	owner, _ := c.ActiveOn("cart", "cart-1")
//	c.Kill(owner)     // a crash: no hand-off, locks not released
//	c.WaitSettled()   // the others see it dead, its session has lapsed
//	items, err := Items.Call(ctx, c.Client(), "cart-1") // from the journal, elsewhere
//
// Every node is a full node (package node): Raft coordinator and
// replicated journal (so a killed node loses nothing acknowledged, and a
// restarted one comes back with its data dir), gossip with the fast local
// preset, gRPC between nodes, HTTP (Node(i).HTTPAddr()). Nodes are torn
// down when the test ends. A cluster costs a few hundred milliseconds to
// start and a few goroutines per node; keep it small (three nodes), and
// expect a failover to take about the session TTL (Options.SessionTTL,
// 3 s) plus failure detection.
//
// # Faults
//
//   - Kill(i) crashes node i (node.Node.Crash): servers closed, gossip
//     stopped without a leave, the Raft store closed mid-flight, actors
//     dropped with their locks held. Its actors move once its session
//     lapses.
//   - Restart(i) starts node i again from its data dir, with its id and
//     ports; it ends its previous run's sessions as it starts, which frees
//     that run's actors at once. Stop(i) is the graceful shutdown (actors
//     handed off, session ended, cluster left).
//   - Partition(i, j) cuts the link between i and j both ways, on gossip,
//     Raft and gRPC; Isolate(i) cuts all of i's; Heal() restores them. A
//     cut link is a blackhole, as on a network: protocols notice by their
//     own timeouts.
//   - PauseLease(i) holds back node i's session renewals until
//     ResumeLease(i), as for a process whose renewals stall: its session
//     lapses, it drops its actors by its own clock, the coordinator frees
//     them at the TTL.
//   - Advance(d) moves the cluster's application clock forward (idle
//     timeouts, reminders, delayed messages, retries) and has every node
//     check it at once. Actor timers (SetTimer) and everything that
//     decides ownership stay on the real clock; see Advance.
//
// Each fault helper returns as soon as the fault is in place. WaitSettled
// then waits until the cluster has recovered as far as it can (see its
// documentation for exactly what it checks: membership, ring, Raft
// leader, sessions, and the failed node's locks freed). WaitFor waits for
// any condition of the test's own, with the same deadline.
//
// # No build tag needed
//
// The kit needs no build tag: what it uses is in every build of Loom and
// none of it can weaken a guarantee. Node.Crash and Node.PauseLease only
// do what a crash or a stalled process does. Partitions go through
// node.Options.Network, a wrapper of the node's own connections between
// nodes, into which the kit puts package faultnet's blackholes; whatever a
// Network does to bytes, Loom sees a bad network, and TLS runs over it.
// node.Options.Clock moves application timing only; leases, sessions and
// Raft's stamps never read it. None of these is reachable from the
// command line, the config or the HTTP API.
//
// What does need the loomchaos tag, and is not in this kit: clock skew
// of the lease code, disk faults (slow fsync, no space), one-way or lossy
// links, and the unsafe modes that break a guarantee on purpose
// (acknowledging before the journal is durable, ignoring locks) to prove
// that the chaos suite's checkers catch it. They exist for Loom's own
// chaos suite (test/chaos), run against real processes; a production
// binary, built without the tag, refuses them (node.ErrNotBuiltIn).
//
// # Limits
//
// The nodes share 127.0.0.1, so a node's fault layer cannot tell who
// connected to it; a cut is enforced by the end that dialled, and so is
// always both ways. Runtime.WithDelay measures from the real clock: a
// delayed message sent after an Advance is due at the real time plus its
// delay, which the advanced clock may have passed already; send it with
// runtime.WithDeliverAt(c.Now().Add(d)) instead. The cluster's client is
// outside the cluster's network: partitions never cut it.
package loomtest
