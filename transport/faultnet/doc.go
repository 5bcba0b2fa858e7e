// Package faultnet is the chaos hook: fault injection inside one node's
// network layer, clock and disk, driven over HTTP by the chaos suite
// (test/chaos). It exists so that network partitions, one-way loss, clock
// skew and disk faults can be injected between processes on one machine
// without root.
//
// It is off unless a node is started with an explicit, test-only chaos
// flag: `loom-node run --chaos-hook` (node.Options.Chaos), which exists
// only in a binary built with the loomchaos tag: a default loom-node
// refuses the flag and does not link this package. The node then
// builds one Hook, serves its Handler under /chaos/ on its HTTP port,
// passes the hook's wrappers to its three network stacks, runs its
// session keeper and its Raft store's clock on the hook's clock and calls
// BeforeSync before every Raft log write (see node/chaos.go). A node
// without that flag never constructs a Hook and pays nothing.
//
// # Faults
//
// A Faults value is the whole fault state of one node; Set replaces it
// atomically, and an empty Faults heals everything. It holds:
//
//   - Rules on links to peers, by node id: traffic this node sends to a
//     peer (out), receives from it (in), or both, on some or all channels
//     (gossip, raft, grpc), is dropped (a blackhole, not a reset),
//     delayed, or, for gossip packets and new connections, lost with a
//     probability. A partition is a pair of symmetric rules on each side;
//     a one-way fault is an out rule on one side; a bridge is rules on two
//     of the three pairs.
//   - Peers, the address book that says which node an address belongs to
//     (node id → its IPs or host:ports): the suite knows every node's ports.
//   - Clock: an offset and a rate for the node's own lease and expiry code,
//     since processes on one machine share the kernel clock. The rate
//     skews both the wall clock (Hook.Now) and the monotonic one
//     (Hook.Monotonic, Hook.MonotonicNow); the offset steps only the wall
//     clock, as NTP or an operator does. Hook.MonotonicNow and
//     Hook.AfterFunc plug into lock.KeeperConfig (a keeper times its lease
//     monotonically), Hook.Now and Hook.Monotonic into raftlock.Config
//     (a Raft leader's stamps, by which sessions expire).
//   - Disk: a delay before every fsync and a "no space left" switch, for
//     the journal and the Raft log stores to call through BeforeSync.
//
// # How peers are told apart
//
// Outgoing traffic is matched by its destination: gossip knows the peer's
// node name, and every other destination address is looked up in Peers.
// Incoming traffic can only be matched by its source IP (a TCP connection's
// source port is ephemeral), so under the hook every node binds an address
// of its own in 127.0.0.0/8 (127.0.0.11, 127.0.0.12, ...; Linux routes the
// whole range to lo, no root needed) and the hook's dialers dial from it.
// The same per-node IPs let a root run add real kernel partitions with
// iptables later.
//
// # Semantics of a dropped link
//
// A drop is a blackhole, as on a real network: a dial to a blocked peer
// hangs until its timeout and fails; writes on an existing connection are
// swallowed (they "succeed") and reads deliver nothing (data that arrives
// is discarded), so the protocols' own timeouts fire. A connection that
// lost bytes this way is poisoned: once the rule is lifted its next read
// or write fails and closes it, so that nobody reads a stream with a hole
// in it; the protocols reconnect. A gossip packet to or from a blocked peer
// is not sent or not delivered.
//
// # Concurrency
//
// A Hook is safe for concurrent use; the fault state is an immutable value
// behind an atomic pointer, read on every I/O decision without locks.
package faultnet
