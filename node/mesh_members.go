package node

import (
	"cmp"
	"context"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/raftlock"
)

// Raft groups on some of the nodes (cluster.groupMembers: voters).
//
// Each group runs on cluster.voters nodes, chosen by rendezvous hashing of
// (group, node id) with bounded loads (groupMembersOf) among the nodes
// that are alive or not gone for cluster.deadVoterTimeout: every node
// computes the same choice from the same membership, a node's arrival or
// departure changes the members of some of the groups, and each node is a
// member of about groups*voters/nodes groups. A node outside a group keeps
// an idle replica of it (its Raft instance hears from no leader), forwards
// its commands to the leader that gossip names (Meta.Leads), and refuses
// to read it (raftlock.ErrNotReplica); actors live on their group's
// leader, so a node reads only the groups it leads.

// partialGroups reports whether each Raft group runs on some of the nodes
// only.
func (m *mesh) partialGroups() bool {
	return m.groupCount() > 1 && m.n.cfg.Cluster.GroupMembers == config.GroupMembersVoters
}

// hintedLeader is the leader of group g as gossip tells it: another alive
// member that says it leads g (the smallest node id if several do, while
// the news of a new leader spreads). "" if none does. This node's own
// claim is left out: its Raft knows whether it leads, and what it last
// gossiped may be older than that (a leadership just handed on).
func (m *mesh) hintedLeader(g int) (raft.ServerID, raft.ServerAddress) {
	var best cluster.Member
	for _, mem := range m.members.Alive() {
		if mem.Meta.Leads&(1<<g) == 0 || mem.Meta.RaftID == "" || mem.NodeID == m.n.cfg.Node.ID {
			continue
		}
		if best.NodeID == "" || mem.NodeID < best.NodeID {
			best = mem
		}
	}
	return raft.ServerID(best.Meta.RaftID), raft.ServerAddress(best.Meta.RaftAddr)
}

// publishGroups gossips which groups this node leads and, with groups on
// some of the nodes, which of its replicas have caught up, when either
// changed.
func (m *mesh) publishGroups(ctx context.Context) {
	meta := m.meta
	meta.Leads = 0
	// ReadyGroups only once every group has a leader: a member with
	// ReadyGroups tells the others that the cluster exists
	// (bootstrapServers), and the first servers of a new one would stop
	// voting in the groups that have not elected a leader yet.
	allLed := true
	for g := range m.groups.Len() {
		allLed = allLed && m.groupLeaderID(g) != ""
	}
	for g := range m.groups.Len() {
		s := m.groups.Group(g)
		if s.IsLeader() {
			meta.Leads |= 1 << g
		}
		if m.partialGroups() && allLed && s.CaughtUp() {
			meta.ReadyGroups |= 1 << g // for good, like RaftReady
		}
	}
	if meta.Leads == m.meta.Leads && meta.ReadyGroups == m.meta.ReadyGroups {
		return
	}
	uctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := m.members.UpdateMeta(uctx, meta); err != nil && ctx.Err() == nil {
		m.n.log.Debug("gossiping raft groups", "err", err) // in effect locally; spreads with later gossip
	}
	m.meta = meta
}

// readyIn reports whether mem gossips that its replica of group g caught
// up: Meta.ReadyGroups with groups on some of the nodes, else RaftReady.
func (m *mesh) readyIn(mem cluster.Member, g int) bool {
	if m.partialGroups() {
		return mem.Meta.ReadyGroups&(1<<g) != 0
	}
	return mem.Meta.RaftReady
}

// bootstrapMembers is the configuration group g is bootstrapped with:
// servers, or with groups on some of the nodes, those of them that
// groupMembersOf chooses for g, so that a cluster started whole does not
// move its groups right after it starts.
func (m *mesh) bootstrapMembers(g int, servers []raft.Server) []raft.Server {
	if !m.partialGroups() {
		return servers
	}
	nodes := make([]string, len(servers))
	for i, s := range servers {
		nodes[i] = raftlock.NodeOf(s.ID)
	}
	chosen := groupMembersOf(g, m.groups.Len(), nodes, m.n.cfg.Cluster.Voters)
	return slices.DeleteFunc(slices.Clone(servers), func(s raft.Server) bool {
		return !slices.Contains(chosen, raftlock.NodeOf(s.ID))
	})
}

// membersOf is the node ids group g should run on (groupMembersOf), chosen
// among the members with a Raft server that are alive or have not been
// dead or gone for cluster.deadVoterTimeout: a node that is down for a
// while keeps its groups, as it keeps its place as a voter, and its
// groups keep the quorum of the others meanwhile.
func (m *mesh) membersOf(g int, byNode map[string]cluster.Member) []string {
	limit := m.n.cfg.Cluster.DeadVoterTimeout
	var nodes []string
	for id, mem := range byNode {
		if mem.Meta.RaftID == "" || mem.Meta.RaftAddr == "" {
			continue
		}
		if (mem.State == cluster.StateDead || mem.State == cluster.StateLeft) && time.Since(mem.Since) > limit {
			continue
		}
		nodes = append(nodes, id)
	}
	return groupMembersOf(g, m.groups.Len(), nodes, m.n.cfg.Cluster.Voters)
}

// groupMembersOf is the node ids group g, of k, should run on: voters of
// the nodes (all of them, if fewer), by rendezvous hashing with
// bounded loads. Groups are placed in order, 0 first; each takes the
// nodes that rank first by the hash of (group, node id) among those
// that are not yet members of their share of the groups, ceil(k*voters /
// nodes). The hash alone moves few groups when a node comes or goes, but
// leaves some nodes in several times their share and others in none; the
// bound keeps every node within its share, at the cost of moving a few
// more groups. nodes must hold only members with a Raft id and address;
// its order does not matter.
func groupMembersOf(g, k int, nodes []string, voters int) []string {
	voters = min(voters, len(nodes))
	if voters == 0 {
		return nil
	}
	share := (k*voters + len(nodes) - 1) / len(nodes)
	load := make(map[string]int, len(nodes))
	type ranked struct {
		id    string
		score uint64
	}
	rs := make([]ranked, len(nodes))
	var out []string
	for group := 0; group <= g; group++ {
		for i, id := range nodes {
			h := fnv.New64a()
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(group))
			h.Write(b[:])
			h.Write([]byte(id))
			rs[i] = ranked{id, mix(h.Sum64())}
		}
		slices.SortFunc(rs, func(a, b ranked) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			return cmp.Compare(a.id, b.id)
		})
		out = out[:0]
		for _, r := range rs {
			if len(out) < voters && load[r.id] < share {
				out = append(out, r.id)
			}
		}
		// The last groups may find fewer nodes below their share than
		// they need: the bound gives way, to the least loaded nodes
		// first, never the group's size.
		if len(out) < voters {
			slices.SortStableFunc(rs, func(a, b ranked) int { return cmp.Compare(load[a.id], load[b.id]) })
			for _, r := range rs {
				if len(out) < voters && !slices.Contains(out, r.id) {
					out = append(out, r.id)
				}
			}
		}
		for _, id := range out {
			load[id]++
		}
	}
	return out
}

// mix is a 64-bit finaliser (splitmix64's): FNV's low-entropy outputs for
// short, similar inputs are spread before they are compared.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// reconcileMembers is reconcile's last step with groups on some of the
// nodes, on group g's leader: it makes the nodes groupMembersOf chooses
// voters of g and then, once all of them are, removes every other
// server, itself after handing leadership to one of them. Added servers
// start as non-voters (reconcile added them) and are promoted once they
// gossip that their replica of g caught up.
func (m *mesh) reconcileMembers(ctx context.Context, g int, store *raftlock.Store, byNode map[string]cluster.Member) {
	conf, err := store.Configuration()
	if err != nil {
		return
	}
	want := map[raft.ServerID]bool{}
	for _, id := range m.membersOf(g, byNode) {
		want[raft.ServerID(byNode[id].Meta.RaftID)] = true
	}
	if len(want) == 0 {
		return
	}
	allVoters := true
	for sid := range want {
		i := slices.IndexFunc(conf.Servers, func(s raft.Server) bool { return s.ID == sid })
		if i < 0 {
			allVoters = false // reconcile adds it as a non-voter on its next pass
			continue
		}
		s := conf.Servers[i]
		if s.Suffrage == raft.Voter {
			continue
		}
		allVoters = false
		if !m.readyIn(byNode[raftlock.NodeOf(sid)], g) {
			continue
		}
		if err := store.AddVoter(ctx, s.ID, s.Address); err != nil {
			m.n.log.Warn("promoting raft non-voter failed", "group", g, "raftID", s.ID, "err", err)
			continue
		}
		m.n.log.Info("promoted raft non-voter to voter", "group", g, "raftID", s.ID)
	}
	if !allVoters {
		return
	}
	self := store.LocalID()
	for _, s := range conf.Servers {
		if want[s.ID] || s.ID == self {
			continue
		}
		if err := store.RemoveServer(ctx, s.ID); err != nil {
			m.n.log.Warn("removing raft server failed", "group", g, "raftID", s.ID, "err", err)
			return
		}
		m.n.log.Info("removed raft server", "group", g, "raftID", s.ID, "why", "the group runs on other nodes")
	}
	if want[self] {
		return
	}
	// This node leads a group it should leave: hand the group to one of
	// its members, which removes this node on its own pass.
	for _, s := range conf.Servers {
		if want[s.ID] {
			if err := store.TransferLeadership(ctx, s.ID, s.Address); err != nil {
				m.n.log.Warn("handing raft leadership to a member failed", "group", g, "to", s.ID, "err", err)
				continue
			}
			m.n.log.Info("handed raft leadership to a member", "group", g, "to", s.ID)
			return
		}
	}
}
