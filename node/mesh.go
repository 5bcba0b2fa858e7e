package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
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
// ring over the alive members, the Raft store (coordinator and journal;
// nil when coordination is not raft: a cluster on Redis keeps gossip,
// placement and forwarding, and nothing of Raft), and the gRPC pool to
// the other nodes. It implements runtime.Router and raftlock.Forwarder.
type mesh struct {
	n       *Node
	members *cluster.Cluster
	table   *placement.Table
	groups  *raftlock.Groups // nil without Raft
	store   *raftlock.Store  // group 0 of groups: the cluster's membership and leader
	pool    *transport.Pool

	bootstrapped     bool         // owned by the watch goroutine
	lastLeader       string       // owned by the watch goroutine
	lastGroupLeaders []string     // groupLeaders as onChange last placed actors by them; owned by the watch goroutine
	lastTransfer     time.Time    // of a group's leadership (spreadLeaders); owned by the watch goroutine
	transferring     atomic.Bool  // a leadership transfer of spreadLeaders is running
	meta             cluster.Meta // what this node gossips; owned by the watch goroutine once it runs
	// refusedAt: when reconcile last logged that a member's Raft port
	// failed checkRaftPeer, by node id; owned by the watch goroutine.
	refusedAt map[string]time.Time
	// bootstrapping is true while this node, without Raft state, is one of
	// the servers a new cluster is being bootstrapped with (see
	// maybeBootstrap): only then may its Raft server vote before a leader
	// has added it (raftlock.Config.VoteGate).
	bootstrapping atomic.Bool

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

// Owner implements runtime.Router. With one Raft group (or none) it is
// the placement ring's member; with several, the leader of the actor's
// group (placement.GroupOf), so that the node that runs the actor's turns
// commits their appends itself, with no forward to a leader, and reads its
// journal from the replica that is never behind. ok is false while the
// group has no leader known here.
func (m *mesh) Owner(actorType, id string) (string, bool, bool) {
	key := actorType + "/" + id
	if k := m.groupCount(); k > 1 {
		node := m.groupLeader(placement.GroupOf(key, k))
		return node, node != "" && node == m.n.cfg.Node.ID, node != ""
	}
	node, ok := m.table.Locate(key)
	return node, ok && node == m.n.cfg.Node.ID, ok
}

// groupLeader is the node that leads Raft group g as this node knows it:
// "" if none is known.
func (m *mesh) groupLeader(g int) string { return m.leaderNode(m.groupLeaderID(g)) }

// groupLeaderID is the Raft server id of group g's leader as this node
// knows it: from its own replica, or, with groups on some of the nodes,
// from gossip (a group this node is outside of). "" if none is known.
func (m *mesh) groupLeaderID(g int) raft.ServerID {
	id, _ := m.groups.Group(g).Leader()
	if id == "" && m.partialGroups() {
		id, _ = m.hintedLeader(g)
	}
	return id
}

// groupLeaders lists each group's leader (groupLeader), with several
// groups; nil with one or none.
func (m *mesh) groupLeaders() []string {
	k := m.groupCount()
	if k < 2 {
		return nil
	}
	leaders := make([]string, k)
	for g := range leaders {
		leaders[g] = m.groupLeader(g)
	}
	return leaders
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
// to its gRPC address, found through gossip by the node its Raft id
// belongs to (raftlock.NodeOf).
type leaderForwarder struct {
	m     *mesh
	group int
}

func (f leaderForwarder) Forward(ctx context.Context, leader raft.ServerID, _ raft.ServerAddress, batch []byte) ([]byte, error) {
	m := f.m
	node := raftlock.NodeOf(leader)
	addr, ok := m.grpcAddr(node)
	if !ok {
		// Raft hears from this leader, whatever gossip thinks of it (a
		// partition of gossip alone): forward to its last known address
		// rather than let every session on this node lapse.
		addr, ok = m.knownGRPCAddr(node)
	}
	if !ok {
		return nil, fmt.Errorf("%w: leader %s is not a known member", runtime.ErrUnavailable, leader)
	}
	return m.pool.Forward(ctx, addr, f.group, batch)
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
	leaders := m.watchLeaders(ctx)
	m.onChange(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			m.onChange(ctx)
		case <-leaders:
			m.onChange(ctx)
		case <-tick.C:
			m.onChange(ctx)
		}
	}
}

// watchLeaders returns a channel that receives when any Raft group's
// leader changes, with several groups (actors follow their group's
// leader), until ctx ends; with one group or none, a channel that never
// receives.
func (m *mesh) watchLeaders(ctx context.Context) <-chan struct{} {
	poke := make(chan struct{}, 1)
	if m.groupCount() < 2 {
		return poke
	}
	for g := range m.groups.Len() {
		s := m.groups.Group(g)
		m.n.wg.Go(func() {
			for {
				select {
				case <-s.LeaderChanged():
				case <-ctx.Done():
					return
				}
				select {
				case poke <- struct{}{}:
				default:
				}
			}
		})
	}
	return poke
}

func (m *mesh) onChange(ctx context.Context) {
	ringMoved := m.table.Update(m.aliveIDs())
	// With several groups an actor lives on its group's leader (Owner):
	// a new leader moves the group's actors as a new ring moves keys.
	leaders := m.groupLeaders()
	leadersMoved := !slices.Equal(leaders, m.lastGroupLeaders)
	m.lastGroupLeaders = leaders
	moved := ringMoved || leadersMoved
	if moved {
		m.bump()
	}
	// With several groups every pass also hands off what is misplaced: a
	// call for an actor whose group had no leader known here was served
	// where it arrived (runtime's placeFor), and that activation moves to
	// the leader once one is known.
	if rt := m.n.runtime(); rt != nil && (moved || m.groupCount() > 1) {
		if n, err := rt.Rebalance(ctx); err != nil {
			m.n.log.Warn("hand-off incomplete", "err", err)
		} else if n > 0 {
			m.n.log.Info("handed off actors to their new owners", "actors", n)
		}
	}
	if d := m.n.dispatcher.Load(); d != nil && moved {
		// The actors whose messages this node delivers changed.
		d.Rescan()
	}
	m.closeDeparted()
	if m.store == nil {
		return
	}
	m.maybeBootstrap()
	m.publishReady(ctx)
	if m.groupCount() > 1 {
		m.publishGroups(ctx)
	}
	for g := range m.groups.Len() {
		if s := m.groups.Group(g); s.IsLeader() {
			m.reconcile(ctx, g, s)
		}
	}
	m.spreadLeaders(ctx)
	if leader := m.leader(); string(leader) != m.lastLeader {
		m.lastLeader = string(leader)
		m.bump()
	}
}

// groupCount is the number of Raft groups: 0 without Raft.
func (m *mesh) groupCount() int {
	if m.groups == nil {
		return 0
	}
	return m.groups.Len()
}

// leader is the Raft leader's server id: "" if none is known, or without
// Raft.
func (m *mesh) leader() raft.ServerID {
	if m.store == nil {
		return ""
	}
	id, _ := m.store.Leader()
	if id == "" && m.partialGroups() {
		id, _ = m.hintedLeader(0) // group 0 may run on other nodes
	}
	return id
}

// spreadLeaders moves the leadership of a Raft group away from this node
// when it leads more groups than its share (spreadTarget), to the voter
// of one of its groups that leads the fewest (by node id among equals),
// if that one leads fewer than its share: one group a pass, at most one
// a leaderTransferGap, so that the leaders of K groups end up spread over
// the nodes instead of on the first node elected. Each node counts the
// leaders as it knows them (groupLeaderID).
func (m *mesh) spreadLeaders(ctx context.Context) {
	k := m.groups.Len()
	if k == 1 || time.Since(m.lastTransfer) < leaderTransferGap {
		return
	}
	self := m.store.LocalID()
	leads := map[raft.ServerID]int{}
	var mine []int
	for g := range k {
		id := m.groupLeaderID(g)
		if id == "" {
			return // an election is under way
		}
		leads[id]++
		if id == self && m.groups.Group(g).IsLeader() {
			// In office only: a transfer under way refuses the entry that
			// takes office, so a group just won is kept until it serves.
			mine = append(mine, g)
		}
	}
	if len(mine) == 0 {
		return
	}
	alive := m.members.Alive()
	var (
		g     int
		s     *raftlock.Store
		to    *raft.Server
		share int
	)
	for i := len(mine) - 1; i >= 0 && to == nil; i-- {
		g, s = mine[i], m.groups.Group(mine[i])
		to, share = m.spreadTarget(g, s, self, alive, leads, len(mine))
	}
	if to == nil {
		return
	}
	// The transfer waits up to 5 s for the new leader's election: it runs
	// beside the watch loop, which meanwhile keeps the ring, the hand-offs
	// and the groups' membership in step with the members.
	if !m.transferring.CompareAndSwap(false, true) {
		return
	}
	m.lastTransfer = time.Now()
	m.n.wg.Go(func() {
		defer m.transferring.Store(false)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.TransferLeadership(tctx, to.ID, to.Address); err != nil {
			m.n.log.Warn("moving a raft group's leadership failed", "group", g, "to", raftlock.NodeOf(to.ID), "err", err)
			return
		}
		m.n.log.Info("moved a raft group's leadership", "group", g, "to", raftlock.NodeOf(to.ID), "led", len(mine), "share", share)
	})
}

// spreadTarget is the voter of group g (whose leader, this node, leads
// led groups) that g's leadership should move to, if any, and the share
// of the groups a node should lead: ceil(groups / voters), or, with
// groups on some of the nodes, ceil(groups / alive nodes), since every
// node is a voter of some of them.
func (m *mesh) spreadTarget(g int, s *raftlock.Store, self raft.ServerID, alive []cluster.Member, leads map[raft.ServerID]int, led int) (*raft.Server, int) {
	conf, err := s.Configuration()
	if err != nil {
		return nil, 0
	}
	var voters []raft.Server
	for _, sv := range conf.Servers {
		if sv.Suffrage == raft.Voter {
			voters = append(voters, sv)
		}
	}
	over := len(voters)
	if m.partialGroups() {
		over = max(len(alive), 1)
	}
	share := (m.groups.Len() + over - 1) / over
	if led <= share {
		return nil, share
	}
	ready := map[string]bool{}
	for _, mem := range alive {
		ready[mem.NodeID] = m.readyIn(mem, g)
	}
	var to *raft.Server
	for i, sv := range voters {
		if sv.ID == self || !ready[raftlock.NodeOf(sv.ID)] || leads[sv.ID] >= share {
			continue
		}
		if to == nil || leads[sv.ID] < leads[to.ID] || (leads[sv.ID] == leads[to.ID] && sv.ID < to.ID) {
			to = &voters[i]
		}
	}
	return to, share
}

// leaderTransferGap is the least time between two leadership transfers
// of spreadLeaders on one node.
const leaderTransferGap = 3 * time.Second

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
	// A Raft leader's connection (any group's) stays whatever gossip
	// thinks of it: commands are forwarded over it while Raft hears from
	// the leader (see forward), and closing it would cut those in flight
	// every pass.
	for g := range m.groupCount() {
		if leader, _ := m.groups.Group(g).Leader(); leader != "" {
			if addr, ok := grpcAddrIn(members, raftlock.NodeOf(leader)); ok {
				live[addr] = true
			}
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
	t := &loompb.ClusterTopology{Version: v, Leader: m.leaderNode(m.leader()), GroupLeaders: m.groupLeaders()}
	for _, mem := range m.members.Members() {
		t.Members = append(t.Members, &loompb.Member{
			NodeId: mem.NodeID, GrpcAddr: mem.Meta.GRPCAddr, HttpAddr: mem.Meta.HTTPAddr,
			RaftAddr: mem.Meta.RaftAddr, State: mem.State.String(),
		})
	}
	return t
}

// leaderNode is the node whose Raft server id is leader; empty if none.
func (m *mesh) leaderNode(leader raft.ServerID) string {
	if leader == "" {
		return ""
	}
	return raftlock.NodeOf(leader)
}

// publishReady gossips, once, that this node's Raft server has caught up
// with the leader's log, which the leader waits for before it makes the
// server a voter, once it has caught up in every group. (With groups on
// some of the nodes a node may never be in all of them: their leaders
// wait for Meta.ReadyGroups instead, and RaftReady then only closes the
// bootstrap, as it does with one group.)
func (m *mesh) publishReady(ctx context.Context) {
	if m.meta.RaftReady {
		return
	}
	for g := range m.groups.Len() {
		if !m.groups.Group(g).CaughtUp() {
			return
		}
	}
	meta := m.meta
	meta.RaftReady = true
	uctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := m.members.UpdateMeta(uctx, meta); err != nil && ctx.Err() == nil {
		// In effect locally; it spreads with later gossip.
		m.n.log.Debug("gossiping raft readiness", "err", err)
	}
	m.meta = meta
	m.n.log.Info("raft server caught up with the leader", "raftID", meta.RaftID)
}

// maybeBootstrap bootstraps the Raft cluster, like Consul's
// bootstrap_expect: once bootstrapExpect members are alive and none of
// them belongs to a cluster already (none had Raft state when it started,
// none has caught up with a leader), the one with the smallest id among
// the first bootstrapExpect (by id) bootstraps them all as voters, under
// the Raft server ids they gossip. While that is so, those servers may
// vote before a leader has added them (m.bootstrapping); a node that
// starts without state beside a cluster that exists (a new node, or one
// whose data dir was wiped) never bootstraps and never votes until the
// leader has added it. A node with Raft state never bootstraps again.
// The Raft groups are bootstrapped together, with the same servers (with
// groups on some of the nodes, each group with those of them it runs on,
// by its first one); a group a failure left out is bootstrapped on the
// next pass.
func (m *mesh) maybeBootstrap() {
	// With groups on some of the nodes, the servers of a new cluster keep
	// voting outside their configurations (bootstrapping) until the
	// cluster exists, not only until they bootstrapped: the groups they
	// did not bootstrap may still need their votes.
	partial := m.partialGroups()
	if m.hasState() || m.bootstrapped && !partial {
		m.bootstrapping.Store(false)
		return
	}
	servers, ok := m.bootstrapServers()
	m.bootstrapping.Store(ok)
	if !ok || m.bootstrapped {
		return
	}
	self := m.store.LocalID()
	did := false
	for g := range m.groups.Len() {
		members := m.bootstrapMembers(g, servers)
		if members[0].ID != self {
			continue // a group's first server bootstraps it; the others vote for it
		}
		if err := m.groups.Group(g).Bootstrap(members); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			m.n.log.Warn("raft bootstrap failed", "group", g, "err", err)
			return // the groups bootstrapped already refuse it again, harmlessly
		}
		did = true
	}
	if did {
		m.bootstrapped = true
		m.n.log.Info("raft cluster bootstrapped", "voters", len(servers), "groups", m.groups.Len())
	}
}

// hasState reports whether every Raft group of this node has Raft state.
func (m *mesh) hasState() bool {
	for g := range m.groups.Len() {
		if !m.groups.Group(g).HasState() {
			return false
		}
	}
	return true
}

// bootstrapServers is the configuration a new cluster would be bootstrapped
// with, the first bootstrapExpect alive members by node id, with this node
// among them; ok is false if there is none (too few members, metadata not
// gossiped yet, or a member that belongs to a cluster already).
func (m *mesh) bootstrapServers() ([]raft.Server, bool) {
	expect := m.n.cfg.Cluster.BootstrapExpect
	alive := m.members.Alive()
	if len(alive) < expect {
		return nil, false
	}
	for _, mem := range alive {
		if mem.Meta.RaftState || mem.Meta.RaftReady || mem.Meta.ReadyGroups != 0 {
			return nil, false
		}
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].NodeID < alive[j].NodeID })
	alive = alive[:expect]
	servers := make([]raft.Server, 0, expect)
	self := false
	for _, mem := range alive {
		if mem.Meta.RaftAddr == "" || mem.Meta.RaftID == "" {
			return nil, false // metadata not gossiped yet
		}
		self = self || mem.Meta.RaftID == string(m.store.LocalID())
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(mem.Meta.RaftID), Address: raft.ServerAddress(mem.Meta.RaftAddr)})
	}
	return servers, self
}

// reconcile runs on the leader and keeps the Raft configuration in step
// with membership, as Consul's autopilot does:
//
//   - an alive member whose Raft server is not in the configuration is
//     added as a non-voter, never straight as a voter: its log may be
//     empty;
//   - a server whose node is alive under another Raft server id is that
//     node's previous incarnation (its data dir was wiped or replaced) and
//     is removed;
//   - a server whose node is dead or gone for longer than
//     cluster.deadVoterTimeout is removed;
//   - non-voters whose node gossips that it has caught up (RaftReady) are
//     promoted, in node id order, until there are cluster.voters voters.
//
// Every Raft group runs it on its own leader, over its own configuration
// (their servers are the same nodes, at the same address).
func (m *mesh) reconcile(ctx context.Context, group int, store *raftlock.Store) {
	conf, err := store.Configuration()
	if err != nil {
		return
	}
	inConf := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range conf.Servers {
		inConf[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	byNode := map[string]cluster.Member{}
	for _, mem := range m.members.Members() {
		byNode[mem.NodeID] = mem
	}
	nodes := slices.Sorted(maps.Keys(byNode))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	self := store.LocalID()
	partial := m.partialGroups()
	var members []string // with groups on some of the nodes: group's
	if partial {
		members = m.membersOf(group, byNode)
	}

	for _, id := range nodes {
		mem := byNode[id]
		sid := raft.ServerID(mem.Meta.RaftID)
		if sid == "" || mem.State != cluster.StateAlive || mem.Meta.RaftAddr == "" {
			continue
		}
		if _, ok := inConf[sid]; ok {
			continue
		}
		if partial && !slices.Contains(members, id) {
			continue
		}
		if err := m.n.checkRaftPeer(cctx, mem.Meta.RaftAddr); err != nil {
			// Gossip let it in (a cluster without a gossip key), but it
			// is no node of this cluster: Raft would try to replicate
			// to it for ever.
			if last, ok := m.refusedAt[id]; !ok || time.Since(last) > time.Minute {
				m.refusedAt[id] = time.Now()
				m.n.log.Warn("not adding a member to Raft: its Raft port did not present a node certificate from this cluster's CA (repeats are not logged for a minute)",
					"member", id, "raftAddr", mem.Meta.RaftAddr, "err", err)
			}
			continue
		}
		if err := store.AddNonvoter(cctx, sid, raft.ServerAddress(mem.Meta.RaftAddr)); err != nil {
			m.n.log.Warn("adding raft non-voter failed", "group", group, "member", id, "raftID", sid, "err", err)
			continue
		}
		inConf[sid] = raft.Server{Suffrage: raft.Nonvoter, ID: sid, Address: raft.ServerAddress(mem.Meta.RaftAddr)}
		m.n.log.Info("added raft non-voter", "group", group, "member", id, "raftID", sid)
	}

	limit := m.n.cfg.Cluster.DeadVoterTimeout
	for _, sid := range slices.Sorted(maps.Keys(inConf)) {
		s := inConf[sid]
		if sid == self {
			continue
		}
		node := raftlock.NodeOf(sid)
		mem, known := byNode[node]
		var why string
		switch {
		case known && mem.State == cluster.StateAlive && mem.Meta.RaftID != "" && raft.ServerID(mem.Meta.RaftID) != sid:
			why = "the node is back under a new raft id (its data dir was replaced)"
		case known && (mem.State == cluster.StateDead || mem.State == cluster.StateLeft) && time.Since(mem.Since) > limit:
			why = "dead past the timeout"
		default:
			continue
		}
		if err := store.RemoveServer(cctx, sid); err != nil {
			m.n.log.Warn("removing raft server failed", "group", group, "member", node, "raftID", sid, "err", err)
			continue
		}
		delete(inConf, sid)
		if s.Suffrage == raft.Voter {
			voters--
		}
		m.n.log.Info("removed raft server", "group", group, "member", node, "raftID", sid, "why", why, "state", mem.State, "since", mem.Since)
	}

	if partial {
		m.reconcileMembers(cctx, group, store, byNode)
		return
	}
	for _, id := range nodes {
		if voters >= m.n.cfg.Cluster.Voters {
			break
		}
		mem := byNode[id]
		s, ok := inConf[raft.ServerID(mem.Meta.RaftID)]
		if !ok || s.Suffrage == raft.Voter || mem.State != cluster.StateAlive || !mem.Meta.RaftReady {
			continue
		}
		if err := store.AddVoter(cctx, s.ID, s.Address); err != nil {
			m.n.log.Warn("promoting raft non-voter failed", "group", group, "member", id, "raftID", s.ID, "err", err)
			continue
		}
		voters++
		m.n.log.Info("promoted raft non-voter to voter", "group", group, "member", id, "raftID", s.ID)
	}
}
