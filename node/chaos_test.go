//go:build loomchaos

package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// syncBuffer is an activation log in memory.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events(t *testing.T) []node.ChaosEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []node.ChaosEvent
	for line := range strings.SplitSeq(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var e node.ChaosEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("activation log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// freePortOn reserves a free TCP and UDP port on ip, below the ephemeral
// range.
func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	p, err := ports.Free(ip, 1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}

type chaosNode struct {
	n      *node.Node
	hook   *faultnet.Hook
	events *syncBuffer
	ip     string
	closed *closedConns
}

// closedConns records the gRPC addresses a node closed the pooled
// connection of ("closed the connection to a departed member"), from its
// log, whatever the test log level.
type closedConns struct {
	next  slog.Handler
	mu    *sync.Mutex
	addrs *[]string
}

func newClosedConns(next slog.Handler) *closedConns {
	return &closedConns{next: next, mu: &sync.Mutex{}, addrs: &[]string{}}
}

func (c *closedConns) Enabled(context.Context, slog.Level) bool { return true }

func (c *closedConns) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "closed the connection to a departed member" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "grpc" {
				c.mu.Lock()
				*c.addrs = append(*c.addrs, a.Value.String())
				c.mu.Unlock()
			}
			return true
		})
	}
	if c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *closedConns) WithAttrs(as []slog.Attr) slog.Handler {
	return &closedConns{next: c.next.WithAttrs(as), mu: c.mu, addrs: c.addrs}
}

func (c *closedConns) WithGroup(g string) slog.Handler {
	return &closedConns{next: c.next.WithGroup(g), mu: c.mu, addrs: c.addrs}
}

func (c *closedConns) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(*c.addrs)
}

// startChaosCluster starts n nodes with the chaos hook, each bound to its
// own 127.0.0.x.
func startChaosCluster(t *testing.T, n int) []*chaosNode {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*chaosNode, n)
	var seeds []string
	ports := make([]int, n)
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 41+i)
		ports[i] = freePortOn(t, ip)
		seeds = append(seeds, fmt.Sprintf("%s:%d", ip, ports[i]))
	}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		cfg := nodetest.Config(dir, id, ports[i], strings.Join(seeds, ","), n)
		cfg.Node.Bind = fmt.Sprintf("127.0.0.%d", 41+i)
		cfg.Node.HTTPPort = 0
		cn := &chaosNode{hook: faultnet.New(id, cfg.Node.Bind, uint64(i+1)), events: &syncBuffer{}, ip: cfg.Node.Bind,
			closed: newClosedConns(nodetest.Logger(id).Handler())}
		nd, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(cn.closed),
			Chaos: &node.ChaosOptions{Hook: cn.hook, Events: cn.events}})
		if err != nil {
			t.Fatal(err)
		}
		cn.n = nd
		nodes[i] = cn
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = nd.Shutdown(ctx)
		})
	}
	peers := map[string][]string{}
	for _, cn := range nodes {
		peers[cn.n.ID()] = []string{cn.ip}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, cn := range nodes {
		if err := cn.hook.Set(faultnet.Faults{Peers: peers}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[i] = cn.n.Start(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return nodes
}

func alive(n *node.Node) int {
	k := 0
	for _, m := range n.Info().Members {
		if m.State == "alive" {
			k++
		}
	}
	return k
}

// The chaos hook, wired: a partition set through the control API cuts a
// node off (gossip declares it dead on both sides), healing it rejoins
// it, the activation log records the lock grant, activation and write of
// a call, and the admin dump shows the journal.
func TestChaosHookPartitionsAndHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster and a partition")
	}
	nodes := startChaosCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodetest.WaitFor(t, 20*time.Second, "every node sees 3 alive", func() bool {
		return alive(nodes[0].n) == 3 && alive(nodes[1].n) == 3 && alive(nodes[2].n) == 3
	})
	if _, err := nodes[0].n.Invoke(ctx, "counter", "c1", "add", []byte(`{"delta":2}`)); err != nil {
		t.Fatal(err)
	}

	// Cut n3 off from n1 and n2, on both sides, through the HTTP API.
	put := func(cn *chaosNode, f faultnet.Faults) {
		t.Helper()
		f.Peers = cn.hook.Faults().Peers
		body, _ := json.Marshal(f)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+cn.n.HTTPAddr()+"/chaos/faults", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT /chaos/faults: %s", resp.Status)
		}
	}
	put(nodes[2], faultnet.Faults{Rules: []faultnet.Rule{{Peer: "*", Drop: true}}})
	put(nodes[0], faultnet.Faults{Rules: []faultnet.Rule{{Peer: "n3", Drop: true}}})
	put(nodes[1], faultnet.Faults{Rules: []faultnet.Rule{{Peer: "n3", Drop: true}}})
	nodetest.WaitFor(t, 30*time.Second, "n1 sees 2 alive and n3 sees 1", func() bool {
		return alive(nodes[0].n) == 2 && alive(nodes[2].n) == 1
	})
	// The majority still serves.
	if _, err := nodes[0].n.Invoke(ctx, "counter", "c1", "add", []byte(`{"delta":3}`)); err != nil {
		t.Fatalf("majority side: %v", err)
	}
	for _, cn := range nodes {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+cn.n.HTTPAddr()+"/chaos/faults", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	nodetest.WaitFor(t, 30*time.Second, "every node sees 3 alive again", func() bool {
		return alive(nodes[0].n) == 3 && alive(nodes[1].n) == 3 && alive(nodes[2].n) == 3
	})

	// The admin dump, synced, from the node that was cut off.
	nodetest.WaitFor(t, 20*time.Second, "n3's replica has both writes", func() bool {
		d, err := nodes[2].n.DumpJournal(ctx, "counter", "c1", true)
		return err == nil && len(d.Entries) == 2 && d.Tail.Seq == 2
	})
	resp, err := http.Get("http://" + nodes[2].n.HTTPAddr() + "/v1/admin/journal/counter/c1?sync=1")
	if err != nil {
		t.Fatal(err)
	}
	var d node.JournalDump
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/admin/journal: %s, %v", resp.Status, err)
	}
	if d.Entries[0].Seq != 1 || d.Entries[1].Seq != 2 || d.Entries[0].Token == 0 || d.Entries[1].Token < d.Entries[0].Token {
		t.Fatalf("dump entries: %+v", d.Entries)
	}

	// Some node's activation log has the grant, the activation and the
	// first write, under one token.
	var got []string
	for _, cn := range nodes {
		for _, e := range cn.events.events(t) {
			if e.Actor == "counter/c1" && e.Token == d.Entries[0].Token {
				got = append(got, e.Event)
			}
		}
	}
	want := []string{node.EventAcquired, node.EventActivated, node.EventWrite}
	if len(got) < 3 || !slices.Equal(got[:3], want) {
		t.Fatalf("activation log for token %d: %v, want %v first", d.Entries[0].Token, got, want)
	}
}

// A partition of the Raft leader's gossip alone (Raft and gRPC flow)
// must not lapse the followers' sessions: they forward their renewals to
// the leader Raft names, even while gossip calls it dead.
func TestChaosLeaderGossipPartitionKeepsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster and a partition")
	}
	nodes := startChaosCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodetest.WaitFor(t, 20*time.Second, "a leader", func() bool { return nodes[0].n.Info().Leader != "" })
	var leader *chaosNode
	var followers []*chaosNode
	for _, cn := range nodes {
		if cn.n.ID() == nodes[0].n.Info().Leader {
			leader = cn
		} else {
			followers = append(followers, cn)
		}
	}
	gossipOnly := []faultnet.Channel{faultnet.Gossip}
	set := func(cn *chaosNode, rules ...faultnet.Rule) {
		t.Helper()
		if err := cn.hook.Set(faultnet.Faults{Peers: cn.hook.Faults().Peers, Rules: rules}); err != nil {
			t.Fatal(err)
		}
	}
	set(leader, faultnet.Rule{Peer: "*", Drop: true, Channels: gossipOnly})
	for _, f := range followers {
		set(f, faultnet.Rule{Peer: leader.n.ID(), Drop: true, Channels: gossipOnly})
	}
	nodetest.WaitFor(t, 30*time.Second, "the followers see the leader dead", func() bool {
		return alive(followers[0].n) == 2 && alive(followers[1].n) == 2
	})
	// Well past a session TTL with the leader dead to gossip: the
	// followers' sessions live on, and they serve.
	time.Sleep(2 * nodetest.SessionTTL) // the span under test, not a wait for an event
	for _, f := range followers {
		// Degraded (gossip counts a member dead), not unhealthy (a
		// lapsed session).
		if h := f.n.Health(); h.Status == "unhealthy" {
			t.Errorf("%s: %s", f.n.ID(), h.Status)
		}
		if _, err := f.n.Invoke(ctx, "counter", "g-"+f.n.ID(), "add", []byte(`{"delta":1}`)); err != nil {
			t.Errorf("%s: %v", f.n.ID(), err)
		}
		// Its connection to the leader, over which it forwards, was never
		// closed as a departed member's.
		if slices.Contains(f.closed.list(), leader.n.GRPCAddr()) {
			t.Errorf("%s closed its connection to the leader (%s), which gossip calls dead but Raft follows", f.n.ID(), leader.n.GRPCAddr())
		}
	}
}
