// Package placement maps keys (actor references) to cluster members with a
// consistent-hash ring with bounded loads (github.com/buraksezer/consistent).
//
// The ring is only a hint about who should own a key: the lock holder is the
// truth, and a node that receives a call for an actor held elsewhere forwards
// it. Placement exists so that, most of the time, a call goes straight to the
// node that will end up holding the lock.
//
// # How a key is placed
//
// A key is hashed with xxhash64 into one of Config.PartitionCount partitions
// (hash mod PartitionCount). Partitions, not keys, are assigned to members:
// each member is put on a hash circle ReplicationFactor times, and each
// partition goes to the first member clockwise of the partition's hash that
// still has room, where "room" is the bounded-load rule below. The partition
// table is computed once when a Ring is built, so Locate is one hash, one
// modulo and one slice index: no lock, no allocation.
//
// # Guarantees
//
//   - Determinism: a Ring is a pure function of the set of member ids and
//     the Config. Order and duplicates in the input do not matter (the ids
//     are sorted and de-duplicated first, which also makes the library's
//     tie-breaking on hash collisions deterministic), so every node that sees
//     the same alive members places every key on the same member. Nodes must
//     therefore share one Config: changing PartitionCount moves nearly every
//     key.
//   - Bounded load: no member owns more than MaxLoad() partitions, which is
//     ceil(floor(PartitionCount/members) * Load). When that bound could not
//     hold every partition (a Load near 1, or more members than partitions),
//     the Ring raises the effective load (and, past PartitionCount members,
//     the partition count) just enough, deterministically; see NewRing.
//   - Minimal movement: adding or removing one member moves roughly the keys
//     the consistent-hash circle would move (about 1/(n+1) of them) plus the
//     few the load bound pushes on to the next member; the tests measure it.
//   - Empty ring: a ring with no members places nothing; Locate reports
//     ok == false rather than panicking.
//   - Immutability: a *Ring never changes after NewRing returns and is safe
//     for concurrent use. Table publishes successive rings through an
//     atomic.Pointer: readers (Locate, Ring, Version) never lock; writers
//     (Update) are serialised by a mutex and never block readers.
//
// # Raft groups
//
// GroupOf maps a key to one of k Raft groups with a jump consistent hash
// of its FNV-1a hash: a pure function of the key and k, pinned by the
// tests (raftlock keeps an actor's lock and journal in that group, so the
// mapping may never change). With several groups a node and the cluster
// client place an actor on its group's leader, not on the ring.
//
// Member ids must not contain a NUL byte (cluster node ids never do): the
// ring appends one to each id before hashing its virtual nodes so that ids
// such as "n1" and "n11" cannot produce the same virtual node name.
package placement
