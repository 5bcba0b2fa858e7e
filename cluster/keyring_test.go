package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// keyed is testConfig with gossip keys.
func keyed(t *testing.T, id string, keys [][]byte, seeds ...string) Config {
	c := testConfig(t, id, seeds...)
	c.Keys = keys
	return c
}

// tryStart starts cfg with a short join timeout and returns Start's error.
func tryStart(t *testing.T, cfg Config) error {
	t.Helper()
	cfg.JoinTimeout = 1500 * time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Start(ctx)
}

// TestEncryptedGossipKeepsStrangersOut: nodes with the cluster's key form
// it; a node with another key, or none, cannot join it, and the members
// never see it.
func TestEncryptedGossipKeepsStrangersOut(t *testing.T) {
	key := NewKey()
	a := startNode(t, keyed(t, "a", [][]byte{key}))
	seed := a.LocalNode().Addr
	b := startNode(t, keyed(t, "b", [][]byte{key}, seed))
	waitFor(t, 5*time.Second, "a and b see each other", func() error { return seesAlive(a, "a", "b") })
	for name, keys := range map[string][][]byte{"wrong key": {NewKey()}, "no key": nil} {
		err := tryStart(t, keyed(t, "x-"+name[:2], keys, seed))
		if !errors.Is(err, ErrJoinFailed) {
			t.Errorf("%s: Start = %v, want ErrJoinFailed", name, err)
		}
	}
	if err := seesAlive(a, "a", "b"); err != nil {
		t.Fatalf("after the strangers tried: %v", err)
	}
	if err := seesAlive(b, "a", "b"); err != nil {
		t.Fatalf("after the strangers tried: %v", err)
	}
}

// TestKeyRotation rotates the cluster's key on every member without
// downtime: install, use, remove. Afterwards a node with only the new key
// joins and one with only the old key cannot.
func TestKeyRotation(t *testing.T) {
	old, next := NewKey(), NewKey()
	a := startNode(t, keyed(t, "a", [][]byte{old}))
	seed := a.LocalNode().Addr
	b := startNode(t, keyed(t, "b", [][]byte{old}, seed))
	c := startNode(t, keyed(t, "c", [][]byte{old}, seed))
	nodes := []*Cluster{a, b, c}
	alive := func() error {
		for _, n := range nodes {
			if err := seesAlive(n, "a", "b", "c"); err != nil {
				return err
			}
		}
		return nil
	}
	waitFor(t, 5*time.Second, "a, b and c form the cluster", alive)

	if err := a.UseKey(next); err == nil {
		t.Fatal("UseKey of a key not installed succeeded")
	}
	if err := a.RemoveKey(old); err == nil {
		t.Fatal("RemoveKey of the primary key succeeded")
	}
	for step, op := range []func(*Cluster) error{
		func(n *Cluster) error { return n.InstallKey(next) },
		func(n *Cluster) error { return n.UseKey(next) },
		func(n *Cluster) error { return n.RemoveKey(old) },
	} {
		for _, n := range nodes {
			if err := op(n); err != nil {
				t.Fatalf("step %d on %s: %v", step+1, n.cfg.NodeID, err)
			}
			// Gossip still flows between any two nodes' steps: a
			// change of the node's meta reaches every other member.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			meta := n.LocalNode().Meta
			meta.Version = fmt.Sprintf("step-%d", step+1)
			if err := n.UpdateMeta(ctx, meta); err != nil {
				t.Fatalf("step %d on %s: UpdateMeta: %v", step+1, n.cfg.NodeID, err)
			}
			cancel()
			waitFor(t, 5*time.Second, fmt.Sprintf("step %d: %s's new meta seen by all", step+1, n.cfg.NodeID), func() error {
				for _, o := range nodes {
					m, ok := stateOf(o, n.cfg.NodeID)
					if !ok || m.State != StateAlive || m.Meta.Version != meta.Version {
						return fmt.Errorf("%s sees %s as %+v", o.cfg.NodeID, n.cfg.NodeID, m)
					}
				}
				return nil
			})
		}
	}
	for _, n := range nodes {
		ks, err := n.Keyring()
		if err != nil || !bytes.Equal(ks.Primary, next) || len(ks.Keys) != 1 {
			t.Fatalf("%s keyring after rotation: %d keys, primary %s, %v; want only %s", n.cfg.NodeID, len(ks.Keys), KeyID(ks.Primary), err, KeyID(next))
		}
	}
	if err := tryStart(t, keyed(t, "old", [][]byte{old}, seed)); !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("a node with the removed key: Start = %v, want ErrJoinFailed", err)
	}
	startNode(t, keyed(t, "d", [][]byte{next}, seed))
	waitFor(t, 5*time.Second, "d joins with the new key", func() error {
		if m, ok := stateOf(a, "d"); !ok || m.State != StateAlive {
			return fmt.Errorf("a sees d as %+v", m)
		}
		return nil
	})
}

// TestKeyringErrors: the keyring calls on a cluster without keys, before
// Start, and with keys of the wrong size.
func TestKeyringErrors(t *testing.T) {
	plain := startNode(t, testConfig(t, "p"))
	if _, err := plain.Keyring(); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("Keyring without keys: %v, want ErrNoEncryption", err)
	}
	c, err := New(keyed(t, "q", [][]byte{NewKey()}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Keyring(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Keyring before Start: %v, want ErrNotStarted", err)
	}
	if _, err := New(keyed(t, "r", [][]byte{make([]byte, 20)})); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a 20-byte key: %v, want ErrInvalidConfig", err)
	}
	if _, err := ParseKey("not base64!"); err == nil {
		t.Fatal("ParseKey of junk succeeded")
	}
	k := NewKey()
	if got, err := ParseKey(EncodeKey(k)); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("ParseKey(EncodeKey(k)) = %x, %v", got, err)
	}
	if id := KeyID(k); len(id) != 16 || bytes.Contains([]byte(EncodeKey(k)), []byte(id)) {
		t.Fatalf("KeyID %q", id)
	}
}
