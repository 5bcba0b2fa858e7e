package raftlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
	"github.com/loom-mesh/loom/raftlock/internal/replica/replicatest"
)

// groupsCluster is n nodes of k groups each on loopback TCP (a port per
// group and node), forwarding in process, one forwarder per group.
type groupsCluster struct {
	t     testing.TB
	k     int
	now   func() time.Time
	tweak func(*Config)
	fwds  []*memForwarder
	dirs  []string
	addrs [][]string // node → group → Raft address
	nodes []*Groups  // nil while a node is down
}

func newGroupsCluster(t testing.TB, n, k int, now func() time.Time) *groupsCluster {
	t.Helper()
	return newGroupsClusterWith(t, n, k, now, nil)
}

// newGroupsClusterWith is newGroupsCluster with tweak applied to every
// node's config.
func newGroupsClusterWith(t testing.TB, n, k int, now func() time.Time, tweak func(*Config)) *groupsCluster {
	t.Helper()
	c := &groupsCluster{t: t, k: k, now: now, tweak: tweak, nodes: make([]*Groups, n), dirs: make([]string, n), addrs: make([][]string, n)}
	for range k {
		c.fwds = append(c.fwds, newMemForwarder())
	}
	t.Cleanup(c.closeAll)
	for i := range n {
		c.dirs[i] = t.TempDir()
		c.start(i, nil)
	}
	for g := range k {
		var servers []raft.Server
		for _, gs := range c.nodes {
			servers = append(servers, gs.Group(g).LocalServer())
		}
		if err := c.nodes[0].Group(g).Bootstrap(servers); err != nil {
			t.Fatalf("Bootstrap group %d: %v", g, err)
		}
		c.leader(g)
	}
	return c
}

// start opens node i, at addrs (one per group) or on free ports.
func (c *groupsCluster) start(i int, addrs []string) {
	c.t.Helper()
	cfg := testConfig(c.t, nodeID(i), c.dirs[i], "127.0.0.1:0", c.now, len(c.nodes) == 1)
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	gs, err := OpenGroups(cfg, c.k, func(g int, cfg *Config) {
		if addrs != nil {
			cfg.BindAddr = addrs[g]
		}
		cfg.Forwarder = c.fwds[g]
	})
	if err != nil {
		c.t.Fatalf("OpenGroups %s: %v", nodeID(i), err)
	}
	c.nodes[i] = gs
	c.addrs[i] = nil
	for g := range c.k {
		c.fwds[g].set(nodeID(i), gs.Group(g))
		c.addrs[i] = append(c.addrs[i], string(gs.Group(g).Addr()))
	}
}

// stop closes node i, as a crash would as far as the others can tell.
func (c *groupsCluster) stop(i int) {
	c.t.Helper()
	for g := range c.k {
		c.fwds[g].set(nodeID(i), nil)
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("Close %s: %v", nodeID(i), err)
	}
	c.nodes[i] = nil
}

func (c *groupsCluster) closeAll() {
	for i, gs := range c.nodes {
		if gs != nil {
			for g := range c.k {
				c.fwds[g].set(nodeID(i), nil)
			}
			_ = gs.Close()
		}
	}
}

// leader waits for a node that leads group g and returns its index.
func (c *groupsCluster) leader(g int) int {
	c.t.Helper()
	stores := make([]*Store, len(c.nodes))
	for i, gs := range c.nodes {
		if gs != nil {
			stores[i] = gs.Group(g)
		}
	}
	return c.leaderOf(stores)
}

func (c *groupsCluster) leaderOf(stores []*Store) int {
	c.t.Helper()
	return (&testCluster{t: c.t, nodes: stores}).leader()
}

// keyIn returns a key of group g.
func keyIn(g, k int) string {
	for i := 0; ; i++ {
		if key := fmt.Sprintf("counter/k%d", i); GroupOf(key, k) == g {
			return key
		}
	}
}

// A data dir keeps the number of groups it was made with.
func TestGroupsCountIsKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir, "127.0.0.1:0", nil, true)
	gs, err := OpenGroups(cfg, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenGroups(cfg, 2, nil); err == nil || !strings.Contains(err.Error(), "made with 3 Raft groups, not 2") {
		t.Fatalf("OpenGroups with 2 groups on a dir of 3 = %v", err)
	}
	gs, err = OpenGroups(cfg, 3, nil)
	if err != nil {
		t.Fatalf("OpenGroups again with 3: %v", err)
	}
	_ = gs.Close()

	// A data dir of one Store is a data dir of one group.
	single := t.TempDir()
	s := openSingle(t, single, "127.0.0.1:0", nil)
	_ = s.Close()
	one := testConfig(t, "n1", single, "127.0.0.1:0", nil, true)
	if _, err := OpenGroups(one, 2, nil); err == nil || !strings.Contains(err.Error(), "made with 1 Raft group, not 2") {
		t.Fatalf("OpenGroups with 2 groups on a Store's dir = %v", err)
	}
	gs, err = OpenGroups(one, 1, nil)
	if err != nil {
		t.Fatalf("OpenGroups with 1 group on a Store's dir: %v", err)
	}
	_ = gs.Close()
}

// A node whose data dir lost one group's directory, while another group
// has Raft state, refuses to start: the group would come back empty and
// vote under the server id that had its log. Before any group has state
// (a first start cut short) a missing group is made anew.
func TestGroupsRefuseALostGroupDir(t *testing.T) {
	t.Parallel()
	c := newGroupsCluster(t, 1, 3, nil)
	dir := c.dirs[0]
	if _, err := c.nodes[0].Of(keyIn(2, 3)).Acquire(t.Context(), mustSession(t, c.nodes[0]), keyIn(2, 3)); err != nil {
		t.Fatal(err)
	}
	c.stop(0)
	if err := os.RemoveAll(filepath.Join(dir, "raft", "g2")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, nodeID(0), dir, "127.0.0.1:0", nil, true)
	if gs, err := OpenGroups(cfg, 3, nil); !errors.Is(err, ErrDamagedDataDir) || !strings.Contains(err.Error(), filepath.Join(dir, "raft", "g2")) {
		if err == nil {
			_ = gs.Close()
		}
		t.Fatalf("OpenGroups after raft/g2 was removed = %v, want ErrDamagedDataDir naming it", err)
	}

	// No group has state yet: a missing group is not damage.
	fresh := t.TempDir()
	cfg = testConfig(t, nodeID(0), fresh, "127.0.0.1:0", nil, true)
	gs, err := OpenGroups(cfg, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(fresh, "raft", "g1")); err != nil {
		t.Fatal(err)
	}
	gs, err = OpenGroups(cfg, 3, nil)
	if err != nil {
		t.Fatalf("OpenGroups of a dir without Raft state, raft/g1 removed: %v", err)
	}
	_ = gs.Close()
}

func mustSession(t *testing.T, gs *Groups) lock.SessionID {
	t.Helper()
	id, err := gs.CreateSession(t.Context(), "owner", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestGroupsLockConformance runs locktest against one node of three
// groups whose leaders' clock is locktest's FakeClock.
func TestGroupsLockConformance(t *testing.T) {
	t.Parallel()
	locktest.Run(t, func(t *testing.T) (lock.Coordinator, func(time.Duration)) {
		clock := locktest.NewFakeClock(time.Time{})
		c := newGroupsCluster(t, 1, 3, clock.Now)
		return c.nodes[0], clock.Advance
	})
}

// TestGroupsJournalConformance runs journaltest against a follower of a
// three-node cluster of three groups. Reopen restarts the node.
func TestGroupsJournalConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster per subtest")
	}
	t.Parallel()
	clusters := map[journal.Journal]*groupsCluster{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			c := newGroupsCluster(t, 3, 3, nil)
			i := (c.leader(0) + 1) % 3
			clusters[c.nodes[i]] = c
			return c.nodes[i]
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			c := clusters[old]
			for i, gs := range c.nodes {
				if gs == old {
					for g := range c.k {
						c.fwds[g].set(nodeID(i), nil)
					}
					c.start(i, c.addrs[i]) // the suite closed it
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					defer cancel()
					if err := c.nodes[i].Sync(ctx); err != nil {
						t.Fatalf("Sync after restart: %v", err)
					}
					clusters[c.nodes[i]] = c
					return c.nodes[i]
				}
			}
			t.Fatal("reopen of a journal the harness did not open")
			return nil
		},
	})
}

// A session is one id in every group; a key's lock and journal live in
// its group, and its fencing tokens increase there.
func TestGroupsSessionSpansGroups(t *testing.T) {
	t.Parallel()
	c := newGroupsCluster(t, 1, 3, nil)
	gs := c.nodes[0]
	ctx := t.Context()
	id, err := gs.CreateSession(ctx, "n1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for g := range c.k {
		key := keyIn(g, c.k)
		tok, err := gs.Acquire(ctx, id, key)
		if err != nil {
			t.Fatalf("Acquire %s (group %d): %v", key, g, err)
		}
		if _, err := gs.Append(ctx, key, tok, 0, entry("x")); err != nil {
			t.Fatalf("Append %s: %v", key, err)
		}
		for o := range c.k {
			info, held, err := gs.Group(o).Holder(ctx, key)
			if err != nil || held != (o == g) {
				t.Fatalf("group %d: Holder(%s of group %d) = %+v, %v, %v", o, key, g, info, held, err)
			}
			if held && info.Session != id {
				t.Fatalf("group %d holds %s for session %s, want %s", o, key, info.Session, id)
			}
			tail, err := gs.Group(o).Tail(ctx, key)
			if err != nil || (tail.Seq == 1) != (o == g) {
				t.Fatalf("group %d: Tail(%s of group %d) = %+v, %v", o, key, g, tail, err)
			}
		}
	}
	if err := gs.Renew(ctx, id); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	// The session lapses in one group: Renew says so.
	if err := gs.Group(2).DestroySession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := gs.Renew(ctx, id); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew of a session ended in one group = %v, want ErrSessionExpired", err)
	}
	if n, err := gs.EndSessionsOf(ctx, "n1", ""); err != nil || n != 1 {
		t.Fatalf("EndSessionsOf = %d, %v; want 1", n, err)
	}
	for g := range c.k {
		if _, held, _ := gs.Holder(ctx, keyIn(g, c.k)); held {
			t.Fatalf("the lock of group %d outlived its session", g)
		}
	}
}

// A group whose leader is lost elects another while the other groups
// keep serving; its keys are served again once it has.
func TestGroupsLeaderLossInOneGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	t.Parallel()
	c := newGroupsCluster(t, 3, 2, nil)
	ctx := t.Context()
	// Group 1's leader leads group 1 only: group 0's moves elsewhere.
	l1 := c.leader(1)
	if l0 := c.leader(0); l0 == l1 {
		to := (l1 + 1) % 3
		if err := c.nodes[l0].Group(0).TransferLeadership(ctx, nodeID(to), raft.ServerAddress(c.addrs[to][0])); err != nil {
			t.Fatalf("TransferLeadership: %v", err)
		}
		// The transfer returns once the new leader won; the old one leaves
		// office when its own Raft tells it, a moment later.
		replicatest.WaitFor(t, 15*time.Second, "node "+strconv.Itoa(l0)+" out of office in group 0", func() error {
			if c.nodes[l0].Group(0).IsLeader() {
				return errors.New("still in office")
			}
			return nil
		})
	}
	survivor := (l1 + 1) % 3
	if c.leader(0) == l1 {
		t.Fatalf("group 0 is still led by node %d", l1)
	}
	gs := c.nodes[survivor]
	id, err := gs.CreateSession(ctx, "writer", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k0, k1 := keyIn(0, c.k), keyIn(1, c.k)
	tok0, err := gs.Acquire(ctx, id, k0)
	if err != nil {
		t.Fatal(err)
	}
	tok1, err := gs.Acquire(ctx, id, k1)
	if err != nil {
		t.Fatal(err)
	}

	c.stop(l1)
	// Group 0 serves without a pause while group 1 has no leader.
	seq := uint64(0)
	for !gs.Group(1).IsLeader() && !c.nodes[(l1+2)%3].Group(1).IsLeader() {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := gs.Append(short, k0, tok0, seq, entry("g0"))
		cancel()
		if err != nil {
			t.Fatalf("Append to group 0 while group 1 elects: %v", err)
		}
		seq++
		if seq > 10000 {
			t.Fatal("group 1 elected no leader")
		}
	}
	if seq == 0 {
		t.Fatal("group 1 had a leader again before group 0 was written to")
	}
	if _, err := gs.Append(ctx, k1, tok1, 0, entry("g1")); err != nil {
		t.Fatalf("Append to group 1 after its election: %v", err)
	}
	t.Logf("%d appends to group 0 while group 1 elected a leader", seq)
}
