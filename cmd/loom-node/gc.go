package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's target (GOGC) of a node
// process whose environment does not set GOGC: the heap may grow to three
// times what is live before a collection, instead of Go's default two. A
// durable call allocates a few kilobytes on each node it touches (the gRPC
// frames, the Raft entry, the state machine's bbolt pages), and at Go's
// default allocation and collection took about a fifth of the nodes' CPU;
// at 200 `loom-node cluster` spends about a tenth less CPU per durable call
// for 10–40 MB more peak memory a node, about 20 MB typically
// (docs/performance.md). A node's live heap is small: the actors' state and
// the pools, bounded by actorPools; the journals live on disk.
const defaultGCPercent = 200

// tuneGC applies defaultGCPercent unless GOGC is set, which the Go runtime
// has then applied already (GOGC=100 restores Go's default, GOGC=off turns
// the collector off as usual; GOMEMLIMIT works alongside either).
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
