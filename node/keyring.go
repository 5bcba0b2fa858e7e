package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/loom-mesh/loom/cluster"
)

// Gossip keys. cluster.gossipKey seeds a node's keyring on its first start
// with it; from then on the keyring lives in the data dir
// (keyringFile), where every rotation (InstallGossipKey, UseGossipKey,
// RemoveGossipKey, and loom-node keyring through the admin API) is
// written before it is reported done, so a node restarted mid-rotation
// rejoins with the keys it had.

// keyringFile is the keyring's file in the data dir.
const keyringFile = "gossip.keyring"

// keyringDoc is the keyring file: base64 keys, the primary first.
type keyringDoc struct {
	Keys []string `json:"keys"`
}

// gossipKeys returns the keys the node's gossip starts with: the data
// dir's keyring, else cluster.gossipKey (then written there), else none.
func (n *Node) gossipKeys() ([][]byte, error) {
	path := filepath.Join(n.cfg.Node.DataDir, keyringFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var doc keyringDoc
		if err := json.Unmarshal(b, &doc); err != nil || len(doc.Keys) == 0 {
			return nil, fmt.Errorf("node: gossip keyring %s: not a keyring (%v); restore it, or remove it to start from cluster.gossipKey", path, err)
		}
		keys := make([][]byte, len(doc.Keys))
		for i, s := range doc.Keys {
			if keys[i], err = cluster.ParseKey(s); err != nil {
				return nil, fmt.Errorf("node: gossip keyring %s: key %d: %w", path, i, err)
			}
		}
		if n.cfg.Cluster.GossipKey == "" {
			n.log.Warn("gossip is encrypted with the keyring in the data dir, though cluster.gossipKey is not set", "keyring", path)
		}
		return keys, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("node: gossip keyring: %w", err)
	case n.cfg.Cluster.GossipKey == "":
		return nil, nil
	}
	k, err := cluster.ParseKey(n.cfg.Cluster.GossipKey)
	if err != nil {
		return nil, fmt.Errorf("node: cluster.gossipKey: %w", err)
	}
	keys := [][]byte{k}
	if err := writeKeyring(path, keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// writeKeyring replaces the keyring file with keys, readable by its owner
// only.
func writeKeyring(path string, keys [][]byte) error {
	doc := keyringDoc{Keys: make([]string, len(keys))}
	for i, k := range keys {
		doc.Keys[i] = cluster.EncodeKey(k)
	}
	b, _ := json.Marshal(doc)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("node: writing the gossip keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("node: writing the gossip keyring: %w", err)
	}
	return nil
}

// GossipKeyring describes a node's gossip keys by id (cluster.KeyID),
// never the keys themselves.
type GossipKeyring struct {
	Node    string   `json:"node"`
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"` // the primary first
}

// errNoGossip: the node has no gossip (a single node).
var errNoGossip = errors.New("node: not in a cluster: no gossip to encrypt")

// GossipKeyring returns this node's gossip keys by id.
func (n *Node) GossipKeyring() (GossipKeyring, error) {
	if n.mesh == nil || n.mesh.members == nil {
		return GossipKeyring{}, errNoGossip
	}
	st, err := n.mesh.members.Keyring()
	if err != nil {
		return GossipKeyring{}, err
	}
	kr := GossipKeyring{Node: n.cfg.Node.ID, Primary: cluster.KeyID(st.Primary)}
	for _, k := range st.Keys {
		kr.Keys = append(kr.Keys, cluster.KeyID(k))
	}
	return kr, nil
}

// Keyring operations, as the admin API and loom-node keyring name them.
const (
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// ChangeGossipKeyring applies op (KeyringInstall, KeyringUse or
// KeyringRemove) with key to this node's keyring, writes the keyring to
// the data dir, and returns it.
func (n *Node) ChangeGossipKeyring(op string, key []byte) (GossipKeyring, error) {
	if n.mesh == nil || n.mesh.members == nil {
		return GossipKeyring{}, errNoGossip
	}
	n.keyringMu.Lock()
	defer n.keyringMu.Unlock()
	c := n.mesh.members
	var err error
	switch op {
	case KeyringInstall:
		err = c.InstallKey(key)
	case KeyringUse:
		err = c.UseKey(key)
	case KeyringRemove:
		err = c.RemoveKey(key)
	default:
		err = fmt.Errorf("%w: keyring operation %q (want install, use or remove)", cluster.ErrInvalidConfig, op)
	}
	if err != nil {
		return GossipKeyring{}, err
	}
	st, err := c.Keyring()
	if err != nil {
		return GossipKeyring{}, err
	}
	if err := writeKeyring(filepath.Join(n.cfg.Node.DataDir, keyringFile), st.Keys); err != nil {
		return GossipKeyring{}, err
	}
	return n.GossipKeyring()
}

// KeyringRequest is the body of POST /v1/admin/keyring.
type KeyringRequest struct {
	Op  string `json:"op"`  // install, use or remove
	Key string `json:"key"` // base64
}

// keyringRoutes serves the gossip keyring: GET lists it by key id, POST
// changes it on this node.
func (n *Node) keyringRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/admin/keyring", func(w http.ResponseWriter, _ *http.Request) {
		kr, err := n.GossipKeyring()
		writeKeyringReply(w, kr, err)
	})
	mux.HandleFunc("POST /v1/admin/keyring", func(w http.ResponseWriter, r *http.Request) {
		var req KeyringRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "bad keyring request: "+err.Error(), http.StatusBadRequest)
			return
		}
		key, err := cluster.ParseKey(req.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		kr, err := n.ChangeGossipKeyring(req.Op, key)
		writeKeyringReply(w, kr, err)
	})
}

func writeKeyringReply(w http.ResponseWriter, kr GossipKeyring, err error) {
	switch {
	case errors.Is(err, errNoGossip), errors.Is(err, cluster.ErrNoEncryption):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, cluster.ErrInvalidConfig):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case err != nil:
		// The cluster's refusals (a key not installed, the primary
		// removed) say what to do.
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(kr)
	}
}
