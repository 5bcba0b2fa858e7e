package raftlock

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// streamOf is a raft.StreamLayer over a TCP listener, as a wrapper would be.
type streamOf struct{ net.Listener }

func (s streamOf) Dial(a raft.ServerAddress, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), d)
}

// Pipelined replication stays off on a transport built for
// Config.Transport: it can deadlock a follower's replication (see
// replica.TransportConfig; the replica package checks Open's own
// transport).
func TestTransportsDoNotPipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewStreamTransport(streamOf{ln}, FastConfig())
	defer tr.Close()
	if _, err := tr.AppendEntriesPipeline("x", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("NewStreamTransport pipelines: %v", err)
	}
}
