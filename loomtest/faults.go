package loomtest

import (
	"context"
	"net"

	"github.com/hashicorp/memberlist"

	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// network is a node's node.Network: its faultnet hook's wrappers.
type network struct{ h *faultnet.Hook }

func (w network) Listen(ch node.Channel, ln net.Listener) net.Listener {
	return w.h.Listener(ln, faultnet.Channel(ch))
}

func (w network) Dial(ctx context.Context, ch node.Channel, addr string) (net.Conn, error) {
	return w.h.Dialer(faultnet.Channel(ch))(ctx, addr)
}

func (w network) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return w.h.Memberlist(t)
}

// setFaults gives every node's hook the address book (every node's
// gossip, Raft and gRPC host:port) and the rules of the cut links.
//
// The nodes share 127.0.0.1, so a hook cannot tell who connected to it
// (faultnet attributes inbound connections by source IP): a link is cut
// on both ends by the rule of the end that dialled, which blackholes the
// connection both ways, and gossip packets, which come from the sender's
// gossip port, are dropped on both ends. Hence cuts are always symmetric.
func (c *Cluster) setFaults() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	peers := map[string][]string{}
	for _, m := range c.members {
		addrs := []string{net.JoinHostPort("127.0.0.1", itoa(m.gossipPort))}
		if m.n != nil && !m.down {
			addrs = append(addrs, m.n.RaftAddr(), m.n.GRPCAddr())
		}
		peers[m.id] = addrs
	}
	for i, m := range c.members {
		f := faultnet.Faults{Peers: peers}
		for j, o := range c.members {
			if c.cuts[link(i, j)] {
				f.Rules = append(f.Rules, faultnet.Rule{Peer: o.id, Drop: true})
			}
		}
		if err := m.hook.Set(f); err != nil {
			c.t.Fatalf("loomtest: faults of %s: %v", m.id, err)
		}
	}
}

// link is the key of the link between i and j in Cluster.cuts.
func link(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}

// Partition cuts the link between nodes i and j, both ways, on every
// channel (gossip, Raft, gRPC): what each sends the other is lost, as on
// a real network (a blackhole, not a reset), so the protocols' own
// timeouts notice. Other links stay up: in a cluster of three, the third
// node still talks to both (a bridge). Isolate cuts a node off from all
// the others; Heal restores every link. Calls from the cluster's client
// are not affected: it stands outside the cluster's network.
//
// After a partition that splits the cluster into groups, WaitSettled
// waits for each group to see exactly its own members alive, for the
// group with a majority to agree on a Raft leader, for the nodes of the
// others to drop their actors (their sessions lapse), and for the
// majority to see those actors' locks free. Under a bridge (no split)
// membership and leadership may not settle at all: wait for what the test
// needs with WaitFor.
func (c *Cluster) Partition(i, j int) {
	c.t.Helper()
	if i == j {
		c.t.Fatalf("loomtest: Partition(%d, %d): a node cannot be cut from itself", i, j)
	}
	c.mu.Lock()
	c.member(i)
	c.member(j)
	c.cuts[link(i, j)] = true
	c.orphanMinorityLocked()
	c.mu.Unlock()
	c.setFaults()
}

// Isolate cuts every link of node i (see Partition): the cluster splits
// into i alone and the rest.
func (c *Cluster) Isolate(i int) {
	c.t.Helper()
	c.mu.Lock()
	c.member(i)
	for j := range c.members {
		if j != i {
			c.cuts[link(i, j)] = true
		}
	}
	c.orphanMinorityLocked()
	c.mu.Unlock()
	c.setFaults()
}

// Heal restores every link Partition and Isolate cut. Connections that
// lost data while cut fail on their next use, and the protocols
// reconnect; WaitSettled waits for the cluster to be whole again.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.mu.Lock()
	clear(c.cuts)
	c.mu.Unlock()
	c.setFaults()
}

// PauseLease stops node i's coordinator session requests from going out
// (node.Node.PauseLease) until ResumeLease, while everything else on it
// goes on, as for a process whose lease renewals stall. Its session
// lapses: the node drops its actors once its own clock says the lease may
// have run out, and the coordinator frees their locks at the TTL. The
// node stays a member and keeps its place in the ring, so the actors the
// ring places on it are unavailable until ResumeLease (the others are not
// affected). WaitSettled, meanwhile, waits for the node to have dropped
// its actors and for their locks to be free.
func (c *Cluster) PauseLease(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	if m.down || m.paused {
		c.mu.Unlock()
		c.t.Fatalf("loomtest: PauseLease(%d): %s is not running or already paused", i, m.id)
	}
	c.orphanLocked(m)
	m.paused = true
	n := m.n
	c.mu.Unlock()
	n.PauseLease()
}

// ResumeLease lets node i's session requests go out again: a lapsed
// session is replaced by a new one (WaitSettled waits for it), and the
// node serves again.
func (c *Cluster) ResumeLease(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	if !m.paused {
		c.mu.Unlock()
		c.t.Fatalf("loomtest: ResumeLease(%d): %s's lease is not paused", i, m.id)
	}
	m.paused = false
	n := m.n
	c.mu.Unlock()
	n.ResumeLease()
}

// orphanLocked records the actors active on m, with m's session: m is
// failing, and WaitSettled waits until that session holds none of their
// locks any more (or is still alive after all). c.mu is held.
func (c *Cluster) orphanLocked(m *member) {
	rt := m.n.Runtime()
	if rt == nil {
		return
	}
	lk := m.n.Health().Components.Locks
	if lk == nil || lk.Session == "" {
		return
	}
	for typ := range rt.Types() {
		for _, id := range rt.ActiveIDs(typ) {
			c.orphans[typ+"/"+id] = orphan{node: m.id, session: lk.Session}
		}
	}
}

// orphanMinorityLocked records the actors of the running nodes that the
// cuts leave outside a majority. c.mu is held.
func (c *Cluster) orphanMinorityLocked() {
	for _, g := range c.groupsLocked() {
		if len(g) >= c.quorum() {
			continue
		}
		for _, i := range g {
			c.orphanLocked(c.members[i])
		}
	}
}

// groupsLocked splits the running nodes into the groups the cut links
// leave connected. c.mu is held.
func (c *Cluster) groupsLocked() [][]int {
	seen := make([]bool, len(c.members))
	var groups [][]int
	for s, m := range c.members {
		if m.down || seen[s] {
			continue
		}
		g := []int{s}
		seen[s] = true
		for k := 0; k < len(g); k++ {
			for j, o := range c.members {
				if !o.down && !seen[j] && !c.cuts[link(g[k], j)] {
					seen[j] = true
					g = append(g, j)
				}
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// quorum is a majority of the cluster's nodes, running or not: with a
// cluster of three or five, all are Raft voters.
func (c *Cluster) quorum() int { return len(c.members)/2 + 1 }
