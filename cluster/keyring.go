package cluster

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Gossip keys. A cluster whose Config.Keys is set encrypts its gossip
// with memberlist's keyring. A key is rotated without downtime the way
// Consul's is, one step on every node before the next:
//
//  1. InstallKey(new) on every node: each can now read what the new key
//     encrypts, and still sends with the old.
//  2. UseKey(new) on every node: each sends with the new key; nodes not
//     yet switched still read it (step 1).
//  3. RemoveKey(old) on every node.
//
// These change this node's keyring only, at once; a caller that rotates a
// cluster's key runs each step on every member (loom-node keyring does).
// Encryption cannot be turned on or off in a running cluster: a node
// started with keys drops clear gossip, and one started without cannot
// read encrypted gossip.

// ErrNoEncryption: the keyring calls need a Cluster started with keys.
var ErrNoEncryption = errors.New("cluster: gossip is not encrypted (no keys configured)")

// KeyLen is the length of the keys NewKey makes: AES-256.
const KeyLen = 32

// NewKey returns a new random gossip key of KeyLen bytes.
func NewKey() []byte {
	k := make([]byte, KeyLen)
	_, _ = rand.Read(k)
	return k
}

// ParseKey decodes a gossip key written in standard base64 (as
// EncodeKey writes it and `loom-node keygen` prints it) and checks its
// length.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: not base64: %w", err)
	}
	if err := checkKey(k); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}

// EncodeKey writes k in standard base64.
func EncodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// KeyID names a key without revealing it: the first 8 bytes of its
// SHA-256, in hex. Logs, APIs and tools show keys by their id.
func KeyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("a key is 16, 24 or 32 bytes (AES-128, -192, -256), not %d", len(k))
}

// KeyringState is this node's keyring: every key and the primary one.
type KeyringState struct {
	Primary []byte
	Keys    [][]byte // the primary first
}

// Keyring returns this node's keys. It fails with ErrNotStarted before
// Start and ErrNoEncryption without keys.
func (c *Cluster) Keyring() (KeyringState, error) {
	kr, err := c.keyring()
	if err != nil {
		return KeyringState{}, err
	}
	keys := kr.GetKeys() // memberlist keeps the primary first
	return KeyringState{Primary: kr.GetPrimaryKey(), Keys: keys}, nil
}

// InstallKey adds k to this node's keyring: it decrypts with it from now
// on. Installing a key already there is a no-op.
func (c *Cluster) InstallKey(k []byte) error {
	if err := checkKey(k); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	kr, err := c.keyring()
	if err != nil {
		return err
	}
	if err := kr.AddKey(k); err != nil {
		return fmt.Errorf("cluster: installing gossip key %s: %w", KeyID(k), err)
	}
	c.log.Info("gossip key installed", "key", KeyID(k))
	return nil
}

// UseKey makes k, which must be installed, the primary key: this node
// encrypts with it from now on.
func (c *Cluster) UseKey(k []byte) error {
	kr, err := c.keyring()
	if err != nil {
		return err
	}
	if !hasKey(kr.GetKeys(), k) {
		return fmt.Errorf("cluster: gossip key %s is not installed: install it first", KeyID(k))
	}
	if err := kr.UseKey(k); err != nil {
		return fmt.Errorf("cluster: using gossip key %s: %w", KeyID(k), err)
	}
	c.log.Info("gossip key in use", "key", KeyID(k))
	return nil
}

// RemoveKey removes k from this node's keyring. The primary key cannot be
// removed: make another primary first.
func (c *Cluster) RemoveKey(k []byte) error {
	kr, err := c.keyring()
	if err != nil {
		return err
	}
	if bytes.Equal(kr.GetPrimaryKey(), k) {
		return fmt.Errorf("cluster: gossip key %s is the primary key: use another one first", KeyID(k))
	}
	if !hasKey(kr.GetKeys(), k) {
		return fmt.Errorf("cluster: gossip key %s is not installed", KeyID(k))
	}
	if err := kr.RemoveKey(k); err != nil {
		return fmt.Errorf("cluster: removing gossip key %s: %w", KeyID(k), err)
	}
	c.log.Info("gossip key removed", "key", KeyID(k))
	return nil
}

func hasKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// keyring is the running keyring.
func (c *Cluster) keyring() (*memberlist.Keyring, error) {
	if kr := c.kr.Load(); kr != nil {
		return kr, nil
	}
	if len(c.cfg.Keys) > 0 {
		return nil, ErrNotStarted
	}
	return nil, ErrNoEncryption
}
