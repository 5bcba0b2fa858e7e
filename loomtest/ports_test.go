package loomtest

import (
	"net"
	"testing"

	"github.com/loom-mesh/loom/builtin"
)

// A gossip port taken after the kit picked it is replaced: the node
// starts on another one.
func TestStartReplacesATakenGossipPort(t *testing.T) {
	c := newCluster(t, Options{Nodes: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	c.members[0].gossipPort = taken
	c.start()
	if got := c.members[0].gossipPort; got == taken {
		t.Fatalf("the node's gossip port is still %d, which another listener holds", got)
	}
	if _, err := builtin.CounterAdd.Call(t.Context(), c.Client(), "a", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatalf("call through the started node: %v", err)
	}
}
