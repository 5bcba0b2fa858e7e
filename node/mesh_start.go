package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/transport"
)

// advertised is the address other nodes use to reach a listener bound on
// the node's bind address.
func (n *Node) advertised(ln net.Addr) string {
	host := n.cfg.Node.Bind
	if n.cfg.Node.Advertise != "" {
		host = n.cfg.Node.Advertise
	}
	_, port, _ := net.SplitHostPort(ln.String())
	return net.JoinHostPort(host, port)
}

// startMesh opens what a clustered node needs before its runtime: the gRPC
// listener, the Raft store (with coordination.backend raft), gossip
// membership and the placement ring. The Raft store becomes the node's
// coordinator and, with journal.backend raft, its journal.
func (n *Node) startMesh(ctx context.Context) error {
	c := n.cfg
	m := &mesh{n: n, refusedAt: map[string]time.Time{}}
	n.mesh = m

	gln, err := net.Listen("tcp", net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.Node.GRPCPort)))
	if err != nil {
		return fmt.Errorf("node: grpc listen: %w", err)
	}
	n.grpcLn = n.grpcListener(gln)
	po := transport.PoolOptions{Logger: n.log, TracerProvider: n.tracerProvider(), Propagator: n.propagator(),
		Dialer: n.grpcDialer(), MaxMessageBytes: grpcMessageBytes(c.Node.MaxPayloadBytes)}
	if n.tls != nil {
		po.TLS, po.TLSLeaf = n.tls.ClientConfig(), n.tls.Leaf
	}
	m.pool = transport.NewPool(po)

	if c.Coordination.Backend == config.CoordinationRaft {
		if err := n.openRaft(m); err != nil {
			return err
		}
	}

	tbl, err := placement.NewTable(placement.DefaultConfig())
	if err != nil {
		return err
	}
	m.table = tbl

	cc := cluster.DefaultConfig()
	if c.Cluster.Gossip == config.GossipLocal {
		cc = cluster.DevConfig()
	}
	cc.NodeID = c.Node.ID
	cc.BindAddr = c.Node.Bind
	cc.BindPort = c.Node.GossipPort
	cc.AdvertiseAddr = c.Node.Advertise
	cc.Seeds = c.Cluster.JoinAddrs()
	cc.JoinTimeout = c.Cluster.JoinTimeout
	cc.RejoinInterval = c.Cluster.RejoinInterval
	cc.Logger = n.log.With("component", "gossip")
	if cc.Keys, err = n.gossipKeys(); err != nil {
		return err
	}
	cc.Meta = cluster.Meta{
		NodeID:   c.Node.ID,
		GRPCAddr: n.advertised(gln.Addr()),
		HTTPAddr: n.advertised(n.ln.Addr()),
		Version:  Version,
	}
	if store := m.store; store != nil {
		cc.Meta.RaftAddr = string(store.Addr())
		cc.Meta.RaftID = string(store.LocalID())
		cc.Meta.RaftState = store.HasState()
	}
	m.meta = cc.Meta
	m.changed = make(chan struct{})
	if err := n.chaos.configureGossip(&cc); err != nil {
		return err
	}
	if err := n.networkGossip(&cc); err != nil {
		return err
	}
	members, err := cluster.New(cc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	m.members = members
	if err := members.Start(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	tbl.Update(m.aliveIDs())
	return nil
}

// openRaft opens the node's Raft store, the coordinator of a cluster with
// coordination.backend raft: cluster.raftGroups groups on the Raft port.
func (n *Node) openRaft(m *mesh) error {
	c := n.cfg
	rc := raftlock.DefaultConfig()
	if c.Cluster.Gossip == config.GossipLocal {
		rc = raftlock.FastConfig()
	}
	rc.NodeID = raft.ServerID(c.Node.ID)
	rc.MessageIDRetention = c.Messaging.IDRetention
	rc.PerDirServerID = true
	rc.VoteGate = m.bootstrapping.Load
	rc.DataDir = c.Node.DataDir
	rc.LogStore = c.Cluster.RaftLogStore
	rc.BindAddr = net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.Node.RaftPort))
	if c.Node.Advertise != "" {
		rc.AdvertiseAddr = net.JoinHostPort(c.Node.Advertise, strconv.Itoa(c.Node.RaftPort))
	}
	rc.Logger = n.log.With("component", "raft")
	k := c.Cluster.RaftGroups
	trans, err := n.raftTransports(&rc, k)
	if err != nil {
		return err
	}
	groups, err := raftlock.OpenGroups(rc, k, func(g int, gc *raftlock.Config) {
		gc.Forwarder = leaderForwarder{m, g}
		if k > 1 && c.Cluster.GroupMembers == config.GroupMembersVoters {
			gc.Partial = true
			gc.LeaderHint = func() (raft.ServerID, raft.ServerAddress) { return m.hintedLeader(g) }
		}
		if trans != nil {
			gc.Transport = trans[g]
		}
	})
	if errors.Is(err, raftlock.ErrLogStoreMismatch) {
		return fmt.Errorf("node: %w (set cluster.raftLogStore)", err)
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	m.groups, m.store = groups, groups.Group(0)
	if m.partialGroups() {
		groups.Queues().SetRemoteDead(n.remoteDead)
	}
	return nil
}

// raftTransports returns the transports of the node's k Raft groups, all
// on its Raft port (raftlock.MuxStreams), or nil to let a single group
// open its own TCP transport. The port's stream is the chaos hook's, the
// Network's, or a TCP listener of the node's own, and each group's stream
// runs under TLS when the node has it.
func (n *Node) raftTransports(rc *raftlock.Config, k int) ([]raft.Transport, error) {
	wrap := n.raftTLS(*rc)
	base, err := n.chaos.raftStream(rc)
	if err != nil {
		return nil, err
	}
	own := false
	switch {
	case base != nil:
	case n.opts.Network != nil:
		if base, err = n.networkRaft(rc); err != nil {
			return nil, err
		}
	case wrap != nil || k > 1:
		ln, err := net.Listen("tcp", rc.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("node: raft listen on %s: %w", rc.BindAddr, err)
		}
		base, own = raftlock.TCPStreamLayer(ln), true
	default:
		return nil, nil
	}
	streams := []raft.StreamLayer{base}
	if k > 1 {
		streams = raftlock.MuxStreams(base, k, 0)
	}
	var adv net.Addr
	if rc.AdvertiseAddr != "" {
		adv, _ = net.ResolveTCPAddr("tcp", rc.AdvertiseAddr)
	}
	trans := make([]raft.Transport, k)
	for g, s := range streams {
		if wrap != nil {
			s = wrap(s) // TLS, which bounds what it accepts
		} else {
			s = raftlock.BoundAccepts(s, 0)
			if adv != nil {
				s = advertisedStream{s, adv}
			}
		}
		if a, ok := s.Addr().(*net.TCPAddr); own && (!ok || a.IP.IsUnspecified()) {
			_ = base.Close()
			return nil, fmt.Errorf("node: raft: %s is not an address peers can reach: set node.advertise", s.Addr())
		}
		t := raftlock.NewStreamTransport(s, *rc)
		n.raftTrans = append(n.raftTrans, t)
		trans[g] = t
	}
	return trans, nil
}

// advertisedStream is a Raft stream layer whose Addr, which Raft puts in
// its configuration, is the node's advertised Raft address.
type advertisedStream struct {
	raft.StreamLayer
	addr net.Addr
}

func (s advertisedStream) Addr() net.Addr { return s.addr }

// serveMesh starts the gRPC server and the membership watcher. They run
// before the runtime exists: followers forward their session commands to
// the leader over gRPC, and the watcher bootstraps Raft. Actor calls are
// refused as unavailable until the runtime is set.
func (n *Node) serveMesh(ctx context.Context) {
	m := n.mesh
	so := transport.ServerOptions{
		MaxMessageBytes: grpcMessageBytes(n.cfg.Node.MaxPayloadBytes),
		Actors:          actorHandler{n},
		Topology:        m,
		Messages:        n,
		Logger:          n.log,

		// The server only extracts the trace context of a call: the
		// runtime's turn span is the receiving side of a hop (a server span
		// per call on top of it would double the cost of tracing), and the
		// forwarding node's pool records the client side.
		Propagator: n.propagator(),
	}
	// A turn that reads JSON state (State.Get decodes it) runs deeper
	// than Go's initial goroutine stack, and growing the stack there cost
	// 25-30% of a node's CPU in remote gets of counters that hold a
	// value: grow each call's goroutine once, at its start (see the
	// option). A turn traced through the OpenTelemetry SDK runs deeper
	// still; the light tracer of a node that exports nowhere does not.
	so.CallStackBytes = 8 << 10
	if n.obs.tracing.UsesSDK() {
		so.CallStackBytes = 16 << 10
	}
	if m.groups != nil {
		so.Forward = m.groups // not a nil *Groups in the interface
	}
	if n.tls != nil {
		so.TLS = n.tls.ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient)
		so.CheckRoles = n.cfg.TLS.VerifyIncoming
	}
	so.Tokens = n.tokens
	n.grpcSrv = transport.NewServer(so)
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.grpcSrv.Serve(n.grpcLn); err != nil {
			n.log.Warn("grpc server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		m.watch(ctx)
	}()
}

// actorHandler serves calls forwarded by other nodes and clients.
type actorHandler struct{ n *Node }

func (h actorHandler) HandleInvoke(ctx context.Context, c transport.Call) ([]byte, error) {
	rt := h.n.runtime()
	if rt == nil {
		return nil, fmt.Errorf("%w: node %s is starting", runtime.ErrUnavailable, h.n.cfg.Node.ID)
	}
	return rt.InvokeForwarded(ctx, runtime.Call{
		ActorType: c.ActorType, ActorID: c.ActorID, Method: c.Method,
		Payload: c.Payload, Hops: int(c.Hops),
	})
}
