package raftlock

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// NewStreamTransport builds a Raft transport over stream with the settings
// Open gives its own TCP transport (cfg's TransportMaxPool,
// TransportTimeout and Logger), for Config.Transport: a node whose Raft
// traffic goes through a wrapper (the chaos hook's StreamLayer) runs the
// same transport as one without.
func NewStreamTransport(stream raft.StreamLayer, cfg Config) *raft.NetworkTransport {
	var log hclog.Logger = hclog.NewNullLogger()
	if cfg.Logger != nil {
		log = NewHCLogger(cfg.Logger)
	}
	return raft.NewNetworkTransportWithConfig(replica.TransportConfig(stream, cfg.TransportMaxPool, cfg.TransportTimeout, log))
}
