package replica

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// TestOpenTransportDoesNotPipeline: Open's own TCP transport has
// pipelined replication off (see maxRPCsInFlight).
func TestOpenTransportDoesNotPipeline(t *testing.T) {
	t.Parallel()
	fsm := newCounter()
	g, err := Open(counterConfig(t, "solo", fsm, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.ownTrans.AppendEntriesPipeline("x", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("Open's transport pipelines: %v", err)
	}
}
