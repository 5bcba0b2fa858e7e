package node

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/raftlock"
)

// Network carries a clustered node's traffic with the other nodes: gRPC
// (actor calls, forwarding, topology) and Raft over TCP, gossip over
// memberlist's transport. Options.Network sets one; nil, the default, is
// plain TCP and UDP on node.bind. A single node (coordination.backend
// memory) has no such traffic and ignores it.
//
// It exists so that a test harness can cut and heal links between nodes
// in one process (package loomtest does, with package faultnet), and so
// that an embedding application can route node traffic its own way. It
// cannot weaken a guarantee, and so is built into every binary: whatever a
// Network does to the bytes (drop, delay, cut), the protocols see a bad
// network, which they are built to survive; TLS, when configured, runs
// over it, so it sees ciphertext only. It is a Go value, not a setting:
// no flag or config key sets one. (The loomchaos build's chaos hook,
// Options.Chaos, carries its own network wrappers, with clock and disk
// faults besides; a node takes one or the other.)
//
// The node calls Listen and Gossip once each per channel while it
// starts, and Dial from any goroutine at any time.
type Network interface {
	// Listen wraps ln, which the node opened on node.bind for ch:
	// connections for ch are accepted through the result, which the node
	// closes when it stops.
	Listen(ch Channel, ln net.Listener) net.Listener
	// Dial connects to addr, another node's address for ch, giving up
	// when ctx ends.
	Dial(ctx context.Context, ch Channel, addr string) (net.Conn, error)
	// Gossip wraps t, memberlist's transport bound to node.bind and the
	// gossip port; the result's Shutdown must shut t down.
	Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Channel is a kind of traffic between nodes that goes over TCP
// connections a Network listens for and dials.
type Channel string

// Channels.
const (
	ChannelGRPC Channel = "grpc" // actor calls, forwarding, topology
	ChannelRaft Channel = "raft" // the Raft transport
)

// errNetworkAndChaos refuses a node given both a Network and the chaos
// hook, which carries its own.
var errNetworkAndChaos = errors.New("node: Options.Network and Options.Chaos are both set: the chaos hook carries the network itself")

// grpcListener wraps the gRPC listener in the node's Network or chaos
// hook.
func (n *Node) grpcListener(ln net.Listener) net.Listener {
	if nw := n.opts.Network; nw != nil {
		return nw.Listen(ChannelGRPC, ln)
	}
	return n.chaos.grpcListener(ln)
}

// grpcDialer is the dialer of the node's connection pool (nil: gRPC's).
func (n *Node) grpcDialer() func(context.Context, string) (net.Conn, error) {
	if nw := n.opts.Network; nw != nil {
		return func(ctx context.Context, addr string) (net.Conn, error) {
			return nw.Dial(ctx, ChannelGRPC, addr)
		}
	}
	return n.chaos.grpcDialer()
}

// networkRaft is the base of the Raft transports (see
// Node.raftTransports) through the node's Network, on rc.BindAddr.
func (n *Node) networkRaft(rc *raftlock.Config) (raft.StreamLayer, error) {
	nw := n.opts.Network
	ln, err := net.Listen("tcp", rc.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("node: raft listen on %s: %w", rc.BindAddr, err)
	}
	return raftlock.DialStreamLayer(nw.Listen(ChannelRaft, ln), func(ctx context.Context, addr string) (net.Conn, error) {
		return nw.Dial(ctx, ChannelRaft, addr)
	}), nil
}

// networkGossip gives memberlist a transport through the node's Network;
// without one it does nothing.
func (n *Node) networkGossip(cc *cluster.Config) error {
	nw := n.opts.Network
	if nw == nil {
		return nil
	}
	nt, err := cluster.NewNetTransport(*cc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	cc.Transport = nw.Gossip(nt)
	return nil
}
