package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// mesh is what a node has in a cluster: gossip membership, the placement
// ring over the alive members, the Raft store (coordinator and journal),
// and the gRPC pool to the other nodes. It implements runtime.Router and
// raftlock.Forwarder.
type mesh struct {
	n       *Node
	members *cluster.Cluster
	table   *placement.Table
	store   *raftlock.Store
	pool    *transport.Pool

	bootstrapped bool   // owned by the watch goroutine
	lastLeader   string // owned by the watch goroutine

	topoMu  sync.Mutex
	version uint64
	changed chan struct{} // closed and replaced on every topology change
}

var (
	_ runtime.Router     = (*mesh)(nil)
	_ raftlock.Forwarder = leaderForwarder{}
)

// NodeID implements runtime.Router.
func (m *mesh) NodeID() string { return m.n.cfg.Node.ID }

// Owner implements runtime.Router with the placement ring.
func (m *mesh) Owner(actorType, id string) (string, bool, bool) {
	node, ok := m.table.Locate(actorType + "/" + id)
	return node, ok && node == m.n.cfg.Node.ID, ok
}

// Forward implements runtime.Router: it sends the call to node's gRPC
// address.
func (m *mesh) Forward(ctx context.Context, node string, c runtime.Call) ([]byte, error) {
	addr, ok := m.grpcAddr(node)
	if !ok {
		return nil, fmt.Errorf("%w: node %s is not a known alive member", runtime.ErrUnavailable, node)
	}
	return m.pool.Invoke(ctx, addr, transport.Call{
		ActorType: c.ActorType, ActorID: c.ActorID, Method: c.Method,
		Payload: c.Payload, Hops: uint32(c.Hops),
	})
}

// leaderForwarder implements raftlock.Forwarder: commands for the leader go
// to its gRPC address, found through gossip by its Raft id (the node id).
type leaderForwarder struct{ m *mesh }

func (f leaderForwarder) Forward(ctx context.Context, leader raft.ServerID, _ raft.ServerAddress, batch []byte) ([]byte, error) {
	m := f.m
	addr, ok := m.grpcAddr(string(leader))
	if !ok {
		// Raft hears from this leader, whatever gossip thinks of it (a
		// partition of gossip alone): forward to its last known address
		// rather than let every session on this node lapse.
		addr, ok = m.knownGRPCAddr(string(leader))
	}
	if !ok {
		return nil, fmt.Errorf("%w: leader %s is not a known member", runtime.ErrUnavailable, leader)
	}
	return m.pool.Forward(ctx, addr, batch)
}

// knownGRPCAddr is node's gRPC address as any member state has it: alive,
// suspect, dead or left.
func (m *mesh) knownGRPCAddr(node string) (string, bool) {
	return grpcAddrIn(m.members.Members(), node)
}

// grpcAddr is the gRPC address of node if it is alive.
func (m *mesh) grpcAddr(node string) (string, bool) {
	return grpcAddrIn(m.members.Alive(), node)
}

func grpcAddrIn(members []cluster.Member, node string) (string, bool) {
	for _, mem := range members {
		if mem.NodeID == node && mem.Meta.GRPCAddr != "" {
			return mem.Meta.GRPCAddr, true
		}
	}
	return "", false
}

// aliveIDs lists the ids of the alive members.
func (m *mesh) aliveIDs() []string {
	alive := m.members.Alive()
	ids := make([]string, len(alive))
	for i, mem := range alive {
		ids[i] = mem.NodeID
	}
	return ids
}

// watch keeps the ring in step with membership, hands off actors the ring
// moved elsewhere, bootstraps Raft once bootstrapExpect members are alive,
// and, on the leader, reconciles the Raft configuration with membership.
// It runs until ctx ends.
func (m *mesh) watch(ctx context.Context) {
	events, cancel := m.members.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	m.onChange(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			m.onChange(ctx)
		case <-tick.C:
			m.onChange(ctx)
		}
	}
}

func (m *mesh) onChange(ctx context.Context) {
	if m.table.Update(m.aliveIDs()) {
		m.bump()
		if rt := m.n.runtime(); rt != nil {
			if moved, err := rt.Rebalance(ctx); err != nil {
				m.n.log.Warn("hand-off incomplete", "err", err)
			} else if moved > 0 {
				m.n.log.Info("handed off actors to their new owners", "actors", moved)
			}
		}
	}
	m.closeDeparted()
	m.maybeBootstrap()
	if m.store.IsLeader() {
		m.reconcile(ctx)
	}
	if leader, _ := m.store.Leader(); string(leader) != m.lastLeader {
		m.lastLeader = string(leader)
		m.bump()
	}
}

// closeDeparted closes the pooled connections to every address that is
// not an alive or suspect member's (left, dead, or gone from the list) nor
// the Raft leader's, so
// that a departed node's streams and their goroutines do not linger. It
// looks at the pool, not at the members it saw before: a call in flight
// (a forward to a leader that just died, say) may dial a departed address
// again, and the next pass closes it. A member that comes back is dialled
// on its next call.
func (m *mesh) closeDeparted() {
	live := map[string]bool{}
	members := m.members.Members()
	for _, mem := range members {
		if mem.Meta.GRPCAddr != "" && (mem.State == cluster.StateAlive || mem.State == cluster.StateSuspect) {
			live[mem.Meta.GRPCAddr] = true
		}
	}
	// The Raft leader's connection stays whatever gossip thinks of it:
	// commands are forwarded over it while Raft hears from the leader (see
	// forward), and closing it would cut those in flight every pass.
	if leader, _ := m.store.Leader(); leader != "" {
		if addr, ok := grpcAddrIn(members, string(leader)); ok {
			live[addr] = true
		}
	}
	for _, addr := range m.pool.Addrs() {
		if !live[addr] {
			m.pool.CloseAddr(addr)
			m.n.log.Debug("closed the connection to a departed member", "grpc", addr)
		}
	}
}

// bump records a topology change and wakes the watchers.
func (m *mesh) bump() {
	m.topoMu.Lock()
	m.version++
	close(m.changed)
	m.changed = make(chan struct{})
	m.topoMu.Unlock()
}

// Changed implements transport.TopologySource.
func (m *mesh) Changed() <-chan struct{} {
	m.topoMu.Lock()
	defer m.topoMu.Unlock()
	return m.changed
}

// Topology implements transport.TopologySource: every member this node
// knows, with its addresses and state, and the Raft leader.
func (m *mesh) Topology() *loompb.ClusterTopology {
	m.topoMu.Lock()
	v := m.version
	m.topoMu.Unlock()
	leader, _ := m.store.Leader()
	t := &loompb.ClusterTopology{Version: v, Leader: string(leader)}
	for _, mem := range m.members.Members() {
		t.Members = append(t.Members, &loompb.Member{
			NodeId: mem.NodeID, GrpcAddr: mem.Meta.GRPCAddr, HttpAddr: mem.Meta.HTTPAddr,
			RaftAddr: mem.Meta.RaftAddr, State: mem.State.String(),
		})
	}
	return t
}

// maybeBootstrap bootstraps the Raft cluster, like Consul's
// bootstrap_expect: once bootstrapExpect members are alive, the one with
// the smallest id among the first bootstrapExpect (by id) bootstraps them
// all as voters. A node with Raft state never bootstraps again.
func (m *mesh) maybeBootstrap() {
	if m.store.HasState() || m.bootstrapped {
		return
	}
	expect := m.n.cfg.Cluster.BootstrapExpect
	alive := m.members.Alive()
	if len(alive) < expect {
		return
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].NodeID < alive[j].NodeID })
	alive = alive[:expect]
	if alive[0].NodeID != m.n.cfg.Node.ID {
		return // the first node bootstraps; this one is added by the leader
	}
	servers := make([]raft.Server, 0, expect)
	for _, mem := range alive {
		if mem.Meta.RaftAddr == "" {
			return // metadata not gossiped yet
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(mem.NodeID), Address: raft.ServerAddress(mem.Meta.RaftAddr)})
	}
	if err := m.store.Bootstrap(servers); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		m.n.log.Warn("raft bootstrap failed", "err", err)
		return
	}
	m.bootstrapped = true
	m.n.log.Info("raft cluster bootstrapped", "voters", len(servers))
}

// reconcile runs on the leader: alive members missing from the Raft
// configuration are added (as voters up to cluster.voters, then as
// non-voters), and voters dead or gone for longer than
// cluster.deadVoterTimeout are removed.
func (m *mesh) reconcile(ctx context.Context) {
	conf, err := m.store.Configuration()
	if err != nil {
		return
	}
	inConf := map[string]raft.Server{}
	voters := 0
	for _, s := range conf.Servers {
		inConf[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	byID := map[string]cluster.Member{}
	for _, mem := range m.members.Members() {
		byID[mem.NodeID] = mem
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		mem := byID[id]
		if _, ok := inConf[id]; ok || mem.State != cluster.StateAlive || mem.Meta.RaftAddr == "" {
			continue
		}
		sid, addr := raft.ServerID(id), raft.ServerAddress(mem.Meta.RaftAddr)
		if voters < m.n.cfg.Cluster.Voters {
			if err := m.store.AddVoter(cctx, sid, addr); err != nil {
				m.n.log.Warn("adding raft voter failed", "member", id, "err", err)
				continue
			}
			voters++
			m.n.log.Info("added raft voter", "member", id)
		} else if err := m.store.AddNonvoter(cctx, sid, addr); err != nil {
			m.n.log.Warn("adding raft non-voter failed", "member", id, "err", err)
		} else {
			m.n.log.Info("added raft non-voter", "member", id)
		}
	}
	limit := m.n.cfg.Cluster.DeadVoterTimeout
	for id, s := range inConf {
		if id == m.n.cfg.Node.ID {
			continue
		}
		mem, known := byID[id]
		gone := known && (mem.State == cluster.StateDead || mem.State == cluster.StateLeft) && time.Since(mem.Since) > limit
		if !gone {
			continue
		}
		if err := m.store.RemoveServer(cctx, s.ID); err != nil {
			m.n.log.Warn("removing dead raft server failed", "member", id, "err", err)
			continue
		}
		m.n.log.Info("removed raft server dead past the timeout", "member", id, "state", mem.State, "since", mem.Since)
	}
}
