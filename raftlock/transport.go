package raftlock

import (
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

// transportConfig is the Raft network transport's configuration for cfg,
// over stream (nil for NewTCPTransportWithConfig, which makes its own).
func transportConfig(cfg Config, stream raft.StreamLayer, log hclog.Logger) *raft.NetworkTransportConfig {
	return &raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         cfg.TransportMaxPool,
		MaxRPCsInFlight: maxRPCsInFlight,
		Timeout:         cfg.TransportTimeout,
		Logger:          log.Named("raft-net"),
	}
}

// NewStreamTransport builds a Raft transport over stream with the settings
// Open gives its own TCP transport (cfg's TransportMaxPool,
// TransportTimeout and Logger), for Config.Transport: a node whose Raft
// traffic goes through a wrapper (the chaos hook's StreamLayer) runs the
// same transport as one without.
func NewStreamTransport(stream raft.StreamLayer, cfg Config) *raft.NetworkTransport {
	log := cfg.Logger
	if log == nil {
		return raft.NewNetworkTransportWithConfig(transportConfig(cfg, stream, hclog.NewNullLogger()))
	}
	return raft.NewNetworkTransportWithConfig(transportConfig(cfg, stream, NewHCLogger(log)))
}
