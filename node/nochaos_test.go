//go:build !loomchaos

package node_test

import (
	"errors"
	"testing"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
)

// Without the loomchaos tag, New refuses the chaos hook and every unsafe
// mode.
func TestTestMachineryIsNotBuiltIn(t *testing.T) {
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	for name, o := range map[string]node.Options{
		"chaos hook":  {Config: cfg, Chaos: &node.ChaosOptions{}},
		"unsafe mode": {Config: cfg, Unsafe: "ignore-lock"},
	} {
		if _, err := node.New(o); !errors.Is(err, node.ErrNotBuiltIn) {
			t.Errorf("%s: New = %v, want ErrNotBuiltIn", name, err)
		}
	}
	if len(node.UnsafeModes) != 0 {
		t.Errorf("unsafe modes built in: %v", node.UnsafeModes)
	}
}
