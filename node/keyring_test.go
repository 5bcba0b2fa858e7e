package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
)

// keyringCall sends a keyring request to nd's admin API (GET when op is
// empty) and decodes the answer.
func keyringCall(t *testing.T, nd *node.Node, op string, key []byte) (node.GossipKeyring, int) {
	t.Helper()
	url := "http://" + nd.HTTPAddr() + "/v1/admin/keyring"
	var resp *http.Response
	var err error
	if op == "" {
		resp, err = http.Get(url)
	} else {
		b, _ := json.Marshal(node.KeyringRequest{Op: op, Key: cluster.EncodeKey(key)})
		resp, err = http.Post(url, "application/json", bytes.NewReader(b))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var kr node.GossipKeyring
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&kr); err != nil {
			t.Fatal(err)
		}
	}
	return kr, resp.StatusCode
}

// TestGossipKeyRotation: a cluster started with cluster.gossipKey rotates
// its key through the admin API (install, use, remove on every node) while
// it serves calls; a node restarted afterwards rejoins with the keyring
// its data dir kept, not the old key of its configuration; a new node with
// only the old key cannot join.
func TestGossipKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	oldKey, newKey := cluster.NewKey(), cluster.NewKey()
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) { cfg.Cluster.GossipKey = cluster.EncodeKey(oldKey) })
	ctx := context.Background()
	call := func(via *node.Node, what string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for _, id := range []string{"a", "b", "c", "d"} {
			if _, err := builtin.CounterAdd.Call(cctx, via, id, builtin.CounterDelta{Delta: 1}); err != nil {
				t.Fatalf("%s: add to %s via %s: %v", what, id, via.ID(), err)
			}
		}
	}
	call(c.Nodes[0], "before the rotation")
	if _, status := keyringCall(t, c.Nodes[0], node.KeyringUse, newKey); status != http.StatusUnprocessableEntity {
		t.Fatalf("use of a key not installed: HTTP %d, want 422", status)
	}
	for _, op := range []string{node.KeyringInstall, node.KeyringUse, node.KeyringRemove} {
		key := newKey
		if op == node.KeyringRemove {
			key = oldKey
		}
		for _, nd := range c.Nodes {
			if _, status := keyringCall(t, nd, op, key); status != http.StatusOK {
				t.Fatalf("%s on %s: HTTP %d", op, nd.ID(), status)
			}
		}
		call(c.Nodes[2], "after "+op)
	}
	for _, nd := range c.Nodes {
		kr, status := keyringCall(t, nd, "", nil)
		if status != http.StatusOK || kr.Primary != cluster.KeyID(newKey) || !slices.Equal(kr.Keys, []string{cluster.KeyID(newKey)}) {
			t.Fatalf("keyring of %s: %+v (HTTP %d), want only %s", nd.ID(), kr, status, cluster.KeyID(newKey))
		}
	}

	// Restarted with the old key in its configuration, node 2 rejoins
	// with its data dir's keyring.
	restarted := c.Restart(t, 1, false)
	if kr, _ := keyringCall(t, restarted, "", nil); kr.Primary != cluster.KeyID(newKey) {
		t.Fatalf("keyring of the restarted node: %+v", kr)
	}
	call(restarted, "through the restarted node")

	cfg := nodetest.Config(t.TempDir(), "stranger", 0, c.Seed, 1)
	cfg.Cluster.GossipKey = cluster.EncodeKey(oldKey)
	cfg.Cluster.JoinTimeout = 2 * time.Second
	stranger, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: nodetest.Logger("stranger")})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = stranger.Start(sctx)
	_ = stranger.Shutdown(ctx)
	if !errors.Is(err, cluster.ErrJoinFailed) {
		t.Fatalf("a node with the removed key: Start = %v, want ErrJoinFailed", err)
	}
	if b, err := filepath.Glob(filepath.Join(cfg.Node.DataDir, "gossip.keyring")); err != nil || len(b) != 1 {
		t.Fatalf("the stranger's keyring file: %v, %v", b, err)
	}
}
