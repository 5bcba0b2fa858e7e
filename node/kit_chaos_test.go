//go:build loomchaos

package node_test

import (
	"errors"
	"testing"

	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// The chaos hook carries its own network: a node takes it or a Network,
// not both.
func TestChaosHookAndNetworkRefusedTogether(t *testing.T) {
	cfg := nodetest.Config(t.TempDir(), "n1", 0, "", 1)
	cfg.Node.Bind = "127.0.0.41"
	_, err := node.New(node.Options{Config: cfg, Network: &countingNetwork{},
		Chaos: &node.ChaosOptions{Hook: faultnet.New("n1", cfg.Node.Bind, 1)}})
	if err == nil {
		t.Fatal("New took both a Network and the chaos hook")
	}
	if errors.Is(err, node.ErrNotBuiltIn) {
		t.Fatalf("New: %v, want the conflict named", err)
	}
}
