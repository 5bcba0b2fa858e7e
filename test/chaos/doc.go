// Package chaos is Loom's chaos suite: it starts clusters of real
// loom-node processes on loopback, runs a recorded workload against them
// through the embedded client and the HTTP gateway, injects faults (kill -9,
// SIGSTOP past the session TTL), heals them, and then checks the history:
//
//   - linearizability of every register and counter actor (porcupine),
//   - counter bounds: the final value lies between the acknowledged
//     increments and the acknowledged plus the unknown ones,
//   - recovery: the longest time a loaded (hot) actor went without a
//     successful operation around each fault, against a bound,
//   - convergence after healing: every node healthy, one membership, one
//     Raft configuration and leader, one ring, a final write to every actor
//     succeeds, and every actor is active on exactly one node,
//   - load: a run whose load before the first fault was too low fails
//     instead of passing quietly.
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
// Faults that need no help from the node (kill -9, SIGSTOP/SIGCONT) are
// here. Network partitions, clock and disk faults need a chaos hook inside
// the node and come later.
//
// The package's tests run it: `go test ./test/chaos` runs the short default
// scenario (see chaos_test.go for the flags: -chaos.seed, -chaos.long,
// -chaos.out, -chaos.race).
package chaos
