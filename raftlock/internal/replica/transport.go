package replica

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// maxRPCsInFlight is 1: hashicorp/raft's pipelined replication is off, and
// the leader sends a follower one AppendEntries at a time.
//
// With pipelining on (raft's default, 2), a follower that answers an
// AppendEntries with Success=false (its log fell behind during a
// partition, or it could not store the entries: a full disk) can deadlock
// the leader's replication to it: the pipeline's consumer returns, the
// transport's decoder blocks handing it the next response, and the sender
// blocks on the full in-flight channel, for good. Heartbeats go on
// (another goroutine), so the follower never calls an election either: it
// stays behind forever, and a node whose own writes must be applied
// locally (raftlock's reads wait for that) stops serving. The chaos suite
// hit it after partitions and with a full disk (test/chaos, seeds 11 and
// 21); hashicorp/raft issue 612 reports the same.
const maxRPCsInFlight = 1

// TransportConfig is the configuration of a Raft network transport as a
// Group runs it, over stream (nil for Open's own TCP transport, which
// sets it): maxPool pooled connections per peer, timeout the
// I/O deadline of one RPC, and no pipelined replication (see
// maxRPCsInFlight). Open gives its own TCP transport this configuration; a
// transport for Config.Transport should have it too.
func TransportConfig(stream raft.StreamLayer, maxPool int, timeout time.Duration, log hclog.Logger) *raft.NetworkTransportConfig {
	return &raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         maxPool,
		MaxRPCsInFlight: maxRPCsInFlight,
		Timeout:         timeout,
		Logger:          log.Named("raft-net"),
	}
}
