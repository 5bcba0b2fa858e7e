// Package node assembles one Loom node from its parts: the journal, the
// coordinator and the node's session on it, the actor runtime with its
// registered types, and the HTTP server (gateway and health). It is what
// cmd/loom-node runs and what an application embedding Loom calls.
//
// New only checks the configuration; Start opens files, takes ports and
// starts goroutines; Shutdown undoes Start in reverse order: it stops
// accepting requests, lets running turns finish, releases actor locks and
// closes the journal, so nothing acknowledged is lost. A Node serves one
// Start/Shutdown cycle. Start, Shutdown, Runtime and Invoke may be called
// from any goroutine at any time: Shutdown during Start ends Start's waits
// (for a Raft leader, for bootstrapExpect members) at once, Start then
// fails with ErrShutDown after closing what it opened, and Shutdown
// returns once that is done; a second Shutdown waits for the first; Start
// after Shutdown, or twice, fails (ErrShutDown, ErrAlreadyStarted).
//
// In a cluster, membership drives the Raft configuration (mesh.go): the
// leader adds every alive member as a non-voter under the Raft server id
// its data dir gave it, promotes caught-up non-voters while there are
// fewer than cluster.voters voters, and removes servers dead past
// cluster.deadVoterTimeout and the previous incarnation of a node that
// came back on a wiped data dir. Such a node never votes nor bootstraps
// until a leader has added it, so it cannot lend a lagging candidate the
// vote of the server whose log it lost.
//
// TLS (the config's tls section; tls.go): HTTPS on the HTTP port, mutual
// TLS on gRPC and on the Raft transport, with roles from the certificates
// (package security/tlsconf): with tls.verifyIncoming, Raft and the
// node-internal gRPC method take node certificates only. The files are
// polled and reloaded (and by ReloadTLS), for new connections.
//
// The dashboard (dashboard.go; the page is package ui): /ui serves the
// page, and /v1/admin/nodes, /v1/admin/actors/{type}/{id},
// /v1/admin/queues and /v1/stats/calls the JSON it reads, each bounded by
// the cluster's members, types and methods, never by its actors. The
// cluster-wide ones ask the alive peers (scope=local) with the caller's
// Authorization header.
//
// Bearer tokens (the auth section; auth.go): with a token configured,
// every HTTP route but GET /health/live and /health/ready and the
// dashboard's static page, and every gRPC
// call of a client, needs a token with the route's scope; a route the
// table does not name needs admin, so a new route is closed until it is
// given a scope. Nodes call one another on their certificates alone.
// Reload (SIGHUP) reads the tokens file again.
//
// Limits (limits.go): no port lets a peer hold a connection by sending
// nothing or part of a request, nor makes the node read an unbounded
// input. The HTTP server bounds the handshake and headers (10 s, 32 KiB,
// 431 past it), the whole request (30 s plus 1 s per MiB of
// node.maxPayloadBytes; the gateway answers 413 past that size) and idle
// keep-alive connections (2 min); gRPC, Raft and gossip bound their own
// (packages transport, raftlock and cluster say how).
//
// For tests (package loomtest), in every build since none can break a
// guarantee: Crash stops a node as a crash would (no hand-off, locks left
// to lapse); PauseLease holds back its session renewals; Options.Network
// carries its traffic with the other nodes through a wrapper, into which
// a test can put partitions (network.go); Options.Clock is the clock of
// idle timeouts, reminders and delayed messages, never of leases, and
// CheckClock looks at it at once (clock.go). The faults that can break a
// guarantee, or need a process of their own, stay behind the loomchaos
// tag (Options.Chaos, Options.Unsafe).
//
// Single-node coordination: with coordination.backend "memory", locks live
// in process memory and vanish on exit, but the journal remembers the
// highest fencing token per actor. So that tokens keep increasing across
// restarts, the node keeps an epoch counter in <dataDir>/coordinator.epoch,
// raised (and fsynced) on every start, and places it in the high 32 bits of
// every token.
package node
