package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/slowloris"
)

// memberlist's stream message types (its net.go; they are its protocol,
// append-only).
const (
	mlPushPullMsg = 6
	mlEncryptMsg  = 10
)

// TestGossipStreamTimeout: a connection to the gossip port that sends
// nothing, or a message type and then nothing, is closed once TCPTimeout
// has passed since it was accepted (memberlist puts that deadline on the
// whole exchange).
func TestGossipStreamTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cfg := testConfig(t, "a")
	cfg.TCPTimeout = timeout
	c := startNode(t, cfg)
	addr := c.LocalNode().Addr

	for _, tc := range []struct {
		name   string
		prefix []byte
	}{
		{"silent", nil},
		{"half a push/pull", []byte{mlPushPullMsg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, _ := slowloris.Dial(t, addr, tc.prefix).AwaitClose(t, 5*time.Second)
			if took < timeout {
				t.Errorf("closed after %v, before the %v timeout", took, timeout)
			}
		})
	}
}

// TestGossipOversizedStateRefused: a push/pull that announces more state
// than memberlist takes (20 MiB encrypted; 1,048,576 nodes in clear) is
// refused as soon as its length is read: the connection is closed well
// before TCPTimeout, and the node logs the limit.
func TestGossipOversizedStateRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    [][]byte
		request []byte
		logged  string
	}{
		// encryptMsg, then the ciphertext's length: 4 GiB.
		{"encrypted", [][]byte{bytes.Repeat([]byte{7}, 32)}, []byte{mlEncryptMsg, 0xff, 0xff, 0xff, 0xff},
			"remote node state is larger than limit"},
		// pushPullMsg, then its header in msgpack: {"Nodes": 2,000,000}.
		{"clear", nil, append([]byte{mlPushPullMsg, 0x81, 0xa5, 'N', 'o', 'd', 'e', 's', 0xce}, 0x00, 0x1e, 0x84, 0x80),
			"exceeds limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			cfg := testConfig(t, "a")
			cfg.TCPTimeout = 30 * time.Second // a close before it is a refusal
			cfg.Keys = tc.keys
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			c := startNode(t, cfg)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("logs:\n%s", logs.String())
				}
			})

			took, _ := slowloris.Dial(t, c.LocalNode().Addr, tc.request).AwaitClose(t, 10*time.Second)
			t.Logf("closed after %v", took.Round(time.Millisecond))
			if !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("the log does not say %q", tc.logged)
			}
		})
	}
}
