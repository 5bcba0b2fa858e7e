package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node/nodetest"
)

// TestKeyringCommands: loom-node keygen makes a usable key, and loom-node
// keyring rotates a running cluster's gossip key on every member through
// any one node, reporting each member's keyring by key id; a step that
// fails on the members says so and exits 1.
func TestKeyringCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	runOK := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("loom-node %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	oldKey := strings.TrimSpace(runOK("keygen"))
	newKey := strings.TrimSpace(runOK("keygen"))
	if _, err := cluster.ParseKey(newKey); err != nil || oldKey == newKey {
		t.Fatalf("keygen: %q, %q: %v", oldKey, newKey, err)
	}
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) { cfg.Cluster.GossipKey = oldKey })
	addr := c.Nodes[0].HTTPAddr()
	k, _ := cluster.ParseKey(newKey)
	newID := cluster.KeyID(k)

	var out, errb bytes.Buffer
	if code := run([]string{"keyring", "use", "--addr", addr, "--key", newKey}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "not done on 3 of 3 members") || !strings.Contains(errb.String(), "install it first") {
		t.Fatalf("use before install: exit %d, stderr %q", code, errb.String())
	}
	runOK("keyring", "install", "--addr", addr, "--key", newKey)
	runOK("keyring", "use", "--addr", addr, "--key", newKey)
	runOK("keyring", "remove", "--addr", addr, "--key", oldKey)
	list := runOK("keyring", "list", "--addr", c.Nodes[2].HTTPAddr())
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 3 {
			rows[f[0]] = f[1] + " " + f[2]
		}
	}
	for _, nd := range c.Nodes {
		if rows[nd.ID()] != newID+" "+newID {
			t.Fatalf("keyring list after the rotation:\n%s\nwant %s with only %s", list, nd.ID(), newID)
		}
	}
	if strings.Contains(list, oldKey) || strings.Contains(list, newKey) {
		t.Fatalf("keyring list shows a key itself:\n%s", list)
	}
}
