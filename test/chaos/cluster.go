package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/ports"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Bin is the loom-node binary (Build).
	Bin string
	// Nodes is the cluster's size.
	Nodes int
	// DataDir holds the nodes' data dirs and the config file.
	DataDir string
	// LogDir receives one log file per node (node-N.log).
	LogDir string
	// SessionTTL and RenewInterval are the nodes' coordinator session
	// settings; short, so that faults heal within a short run.
	SessionTTL, RenewInterval time.Duration
	// Clock is the time since the run started (log markers).
	Clock func() time.Duration
	// DeadVoterTimeout is how long a Raft voter may stay dead or left
	// before the leader removes it (cluster.deadVoterTimeout); 0 keeps
	// the default.
	DeadVoterTimeout time.Duration
	// SnapshotEvery is journal.snapshotEvery: 0 takes no snapshot, so the
	// journal audit sees every entry.
	SnapshotEvery int
	// RaftLogStore is cluster.raftLogStore; "" keeps the default.
	RaftLogStore string
	// RaftGroups is cluster.raftGroups; 0 keeps the default.
	RaftGroups int
	// GroupMembers is cluster.groupMembers; "" keeps the default.
	GroupMembers string
	// PoolMaxSize is actorPools.default.maxSize; 0 keeps the default.
	PoolMaxSize int
	// Unsafe starts every node in this --debug-unsafe mode (the proof
	// that the checkers bite).
	Unsafe string
	// Seed picks the cluster's loopback subnet.
	Seed int64
	// Redis, when set (host:port), puts the nodes' coordination
	// (sessions, locks, fencing tokens), journals and message queues on
	// that redis-server, under RedisPrefix: no Raft store is opened;
	// gossip, placement and gRPC forwarding stay.
	Redis, RedisPrefix string
	// Postgres, when set (a connection string), puts the nodes' journals
	// and message queues on that PostgreSQL server, in PostgresSchema;
	// coordination stays in their Raft group.
	Postgres, PostgresSchema string
	// RabbitMQ, when set (an AMQP URL), keeps the durable messages sent
	// from outside actors in that broker, under RabbitMQPrefix, every
	// send through it (no message applied on acceptance).
	RabbitMQ, RabbitMQPrefix string
	// Secure runs the nodes with every security feature on, as
	// `loom-node cluster --secure` does (security.go): mutual TLS
	// verified both ways on gRPC, Raft and HTTPS, gossip encryption and
	// bearer tokens; the suite's clients then use HTTPS, a client
	// certificate and a token.
	Secure bool
}

// Cluster is a set of loom-node processes on loopback that form one Loom
// cluster (bootstrapExpect = the cluster's size, every node told every other
// node's gossip address, so any one can restart alone). Every node runs
// with the chaos hook (--chaos-hook) on an IP of its own, 127.A.B.11,
// .12, ... (A and B drawn from the seed; Linux routes all of 127/8 to lo),
// and writes its activation log next to its log.
type Cluster struct {
	// Nodes are the members the checks expect; a node added by AddNode
	// is one until RemoveNode.
	Nodes  []*Node
	all    []*Node // every node ever started, removed ones too
	opts   ClusterOptions
	hc     *http.Client
	dumpHC *http.Client // for journal dumps, which take longer
	sec    *security    // nil: plaintext
	cfg    string       // the config file every node shares
	base   string       // its contents
	subnet string       // "127.A.B."
	next   int          // the next node's number
	expect int          // bootstrapExpect
}

// StartCluster starts the processes and waits until every node is healthy
// (its coordinator session is open, which needs a Raft leader) and sees
// every other one alive, within ctx.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.Nodes < 1 {
		return nil, errors.New("chaos: a cluster needs at least one node")
	}
	for _, d := range []string{o.DataDir, o.LogDir} {
		// A replay into the same output dir starts afresh.
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c := &Cluster{opts: o, expect: o.Nodes}
	if o.Secure {
		// Beside the nodes' data dirs, so that a wipe keeps them.
		sec, err := newSecurity(filepath.Join(o.DataDir, "tls"))
		if err != nil {
			return nil, err
		}
		c.sec = sec
	}
	c.hc = c.HTTPClient(2*time.Second, nil)
	c.dumpHC = c.HTTPClient(12*time.Second, nil)
	c.cfg = filepath.Join(o.DataDir, "loom.config.yaml")
	cfg := fmt.Sprintf("coordination:\n  sessionTTL: %s\n  renewInterval: %s\njournal:\n  snapshotEvery: %d\n",
		o.SessionTTL, o.RenewInterval, o.SnapshotEvery)
	if o.Redis != "" {
		cfg = fmt.Sprintf("coordination:\n  backend: redis\n  sessionTTL: %s\n  renewInterval: %s\n"+
			"journal:\n  backend: redis\n  redis: {addr: %q, keyPrefix: %q}\n  snapshotEvery: %d\n",
			o.SessionTTL, o.RenewInterval, o.Redis, o.RedisPrefix, o.SnapshotEvery)
	}
	if o.Postgres != "" {
		cfg = fmt.Sprintf("coordination:\n  backend: raft\n  sessionTTL: %s\n  renewInterval: %s\n"+
			"journal:\n  backend: postgres\n  postgres: {url: %q, schema: %q}\n  snapshotEvery: %d\n",
			o.SessionTTL, o.RenewInterval, o.Postgres, o.PostgresSchema, o.SnapshotEvery)
	}
	if o.RabbitMQ != "" {
		cfg += fmt.Sprintf("messaging:\n  backend: rabbitmq\n  applyOnAccept: false\n  rabbitmq: {url: %q, prefix: %q}\n",
			o.RabbitMQ, o.RabbitMQPrefix)
	}
	if o.PoolMaxSize > 0 {
		cfg += fmt.Sprintf("actorPools:\n  default:\n    maxSize: %d\n", o.PoolMaxSize)
	}
	var clusterSection string
	if o.DeadVoterTimeout > 0 {
		clusterSection += fmt.Sprintf("  deadVoterTimeout: %s\n", o.DeadVoterTimeout)
	}
	if o.RaftLogStore != "" {
		clusterSection += fmt.Sprintf("  raftLogStore: %s\n", o.RaftLogStore)
	}
	if o.RaftGroups != 0 {
		clusterSection += fmt.Sprintf("  raftGroups: %d\n", o.RaftGroups)
	}
	if o.GroupMembers != "" {
		clusterSection += fmt.Sprintf("  groupMembers: %s\n", o.GroupMembers)
	}
	clusterSection += c.sec.gossipConfig()
	if clusterSection != "" {
		cfg += "cluster:\n" + clusterSection
	}
	c.base = cfg
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	sub := uint64(o.Seed) % (250 * 250)
	c.subnet = fmt.Sprintf("127.%d.%d.", 1+sub/250, 1+sub%250)
	for range o.Nodes {
		n, err := c.newNode()
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		n.setArgs(c, c.Nodes)
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := n.WaitHealthy(ctx, c.hc); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if _, err := c.AwaitConverged(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.sec.prove(ctx, c); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// newNode makes the cluster's next node (not started): its IP, free ports
// on it, its data dir, log and activation log.
func (c *Cluster) newNode() (*Node, error) {
	c.next++
	ip := c.subnet + strconv.Itoa(10+c.next)
	// Below the kernel's ephemeral range: a restarted node gets them back.
	free, err := ports.Free(ip, 4)
	if err != nil {
		return nil, err
	}
	n := &Node{
		ID: fmt.Sprintf("node-%d", c.next), IP: ip,
		HTTPPort: free[0], GRPCPort: free[1], RaftPort: free[2], GossipPort: free[3],
		bin: c.opts.Bin, clock: c.opts.Clock, scheme: c.sec.scheme(), cfg: c.cfg,
	}
	if c.sec != nil {
		// Its own config: the shared one plus its certificate.
		own, err := c.sec.nodeConfig(n.ID, ip)
		if err != nil {
			return nil, err
		}
		n.cfg = filepath.Join(c.opts.DataDir, n.ID+".config.yaml")
		if err := os.WriteFile(n.cfg, []byte(c.base+own), 0o600); err != nil {
			return nil, err
		}
	}
	n.DataDir = filepath.Join(c.opts.DataDir, n.ID)
	n.LogPath = filepath.Join(c.opts.LogDir, n.ID+".log")
	n.EventsPath = filepath.Join(c.opts.LogDir, n.ID+".events.jsonl")
	c.all = append(c.all, n)
	return n, nil
}

// All lists every node ever started, removed ones too.
func (c *Cluster) All() []*Node { return slices.Clone(c.all) }

// setArgs sets n's command line: join every other node of peers.
func (n *Node) setArgs(c *Cluster, peers []*Node) {
	var join []string
	for _, p := range peers {
		if p != n {
			join = append(join, p.GossipAddr())
		}
	}
	n.args = []string{"run", "--config", n.cfg, "--node-id", n.ID, "--data-dir", n.DataDir,
		"--bind", n.IP,
		"--http-port", strconv.Itoa(n.HTTPPort), "--grpc-port", strconv.Itoa(n.GRPCPort),
		"--raft-port", strconv.Itoa(n.RaftPort), "--gossip-port", strconv.Itoa(n.GossipPort),
		"--bootstrap-expect", strconv.Itoa(c.expect), "--gossip", gossipPreset,
		"--chaos-hook", "--chaos-events", n.EventsPath}
	if c.opts.Unsafe != "" {
		n.args = append(n.args, "--debug-unsafe", c.opts.Unsafe)
	}
	if len(join) > 0 {
		n.args = append(n.args, "--join", strings.Join(join, ","))
	}
}

// gossipPreset is the timing preset every node runs with (--gossip).
const gossipPreset = config.GossipLocal

// Config is the configuration the nodes run with: the first node's config
// file, read as loom-node reads it, with the settings their command line
// adds that the suite's bounds depend on (the timing preset).
func (c *Cluster) Config() (config.Config, error) {
	cfg, err := config.Load(c.all[0].cfg)
	if err != nil {
		return cfg, fmt.Errorf("chaos: reading the nodes' config: %w", err)
	}
	cfg.Cluster.Gossip = gossipPreset
	cfg.Cluster.BootstrapExpect = c.expect
	return cfg, nil
}

// AddNode starts one more node that joins the cluster (churn), waits for
// its health and returns it; it is then one of Nodes.
func (c *Cluster) AddNode(ctx context.Context) (*Node, error) {
	n, err := c.newNode()
	if err != nil {
		return nil, err
	}
	n.setArgs(c, append(slices.Clone(c.Nodes), n))
	if err := n.Start(); err != nil {
		return nil, err
	}
	c.Nodes = append(c.Nodes, n)
	return n, n.WaitHealthy(ctx, c.hc)
}

// RemoveNode stops n gracefully (it leaves the cluster) and drops it from
// Nodes.
func (c *Cluster) RemoveNode(ctx context.Context, n *Node) error {
	c.Nodes = slices.DeleteFunc(c.Nodes, func(x *Node) bool { return x == n })
	return n.Terminate(ctx)
}

// Stop kills every process (paused ones too) and waits for them.
func (c *Cluster) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range c.all {
		_ = n.Kill(ctx)
	}
}

// Node returns the node with the id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// HTTPClient is a client for the nodes' HTTP ports with the timeout, over
// t (nil: net/http's default): plain, or, in a secure cluster, HTTPS with
// the suite's client certificate and its token on every request. Every HTTP
// client of the suite comes from here; URLs from Node.URL.
func (c *Cluster) HTTPClient(timeout time.Duration, t *http.Transport) *http.Client {
	return c.sec.httpClient(timeout, t)
}

// ClientOptions are the options the suite's Go clients dial the cluster
// with (TLS files and the token in a secure cluster).
func (c *Cluster) ClientOptions() client.Options { return c.sec.clientOptions() }

// Security says what the nodes run with, for the report.
func (c *Cluster) Security() string { return c.sec.describe() }

// GRPCAddrs lists every node's gRPC address (seeds for the client).
func (c *Cluster) GRPCAddrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.GRPCAddr())
	}
	return out
}

// clusterInfo is the part of GET /v1/cluster the suite reads (node's
// ClusterInfo; declared here so the suite does not depend on node's
// internals).
type clusterInfo struct {
	Node    string    `json:"node"`
	Leader  string    `json:"leader"`
	Raft    *raftInfo `json:"raft"`
	Members []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"members"`
	Ring *struct {
		Members []string `json:"members"`
	} `json:"ring"`
	Actors map[string]int `json:"activeActors"`
}

// raftInfo is a node's Raft state in GET /v1/cluster: group 0's, and
// every group's.
type raftInfo struct {
	State     string   `json:"state"`
	Voters    []string `json:"voters"`
	Nonvoters []string `json:"nonvoters"`
	Groups    []struct {
		Group     int      `json:"group"`
		Leader    string   `json:"leader"`
		State     string   `json:"state"`
		Voters    []string `json:"voters"`
		Nonvoters []string `json:"nonvoters"`
	} `json:"groups"`
}

// Info reads GET /v1/cluster from a node.
func (c *Cluster) Info(ctx context.Context, n *Node) (clusterInfo, error) {
	var ci clusterInfo
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL("/v1/cluster"), nil)
	if err != nil {
		return ci, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return ci, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ci, fmt.Errorf("%s: GET /v1/cluster: %s", n.ID, resp.Status)
	}
	return ci, json.NewDecoder(resp.Body).Decode(&ci)
}

// Leader finds the Raft leader: the running node that reports itself in the
// Leader state. It polls until one does or ctx ends.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range c.Nodes {
			if n.State() != Running {
				continue
			}
			if ci, err := c.Info(ctx, n); err == nil && ci.Raft != nil && ci.Raft.State == "Leader" {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("chaos: no Raft leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// convergence reports what keeps the cluster from having converged (see
// convergenceProblems): it reads every node's state, health and
// GET /v1/cluster. An empty result means converged.
func (c *Cluster) convergence(ctx context.Context) []string {
	ids := make([]string, len(c.Nodes))
	views := make([]nodeView, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID
		views[i] = nodeView{ID: n.ID, State: n.State()}
		if views[i].State != Running {
			continue
		}
		views[i].Healthy = n.Healthy(ctx, c.hc)
		views[i].Info, views[i].Err = c.Info(ctx, n)
	}
	return convergenceProblems(ids, views, c.opts.Redis == "", c.opts.RaftGroups > 1 && c.opts.GroupMembers == "voters")
}

// Raft reports whether the nodes coordinate through their Raft store (not
// Redis): only then do they have a Raft leader and voters.
func (c *Cluster) Raft() bool { return c.opts.Redis == "" }

// nodeView is what convergence reads from one node: its process state, and
// for a running node its health and its GET /v1/cluster (or the error
// reading it).
type nodeView struct {
	ID      string
	State   NodeState
	Healthy bool
	Info    clusterInfo
	Err     error
}

// convergenceProblems applies the convergence rules to the nodes' views
// (ids are the expected members, the order views come in): every node
// running and healthy, every node sees every node alive, every node is a
// Raft server, with the same voters (at least min(N, 3)) and the same
// leader, exactly one node is the leader, and every ring has every node.
// Without raft (coordination on Redis) the Raft rules are left out, and a
// node that reports Raft state is a problem. With partial (each Raft group
// on some of the nodes: cluster.groupMembers voters), the Raft rules are
// per group instead (partialGroupProblems). An empty result means
// converged.
func convergenceProblems(ids []string, views []nodeView, raft, partial bool) []string {
	var problems []string
	// Compared sorted, as members, ring and servers are (a churned-in
	// node-10 sorts before node-2).
	ids = sorted(ids)
	// Nodes bootstrapped together are all voters; later ones join as
	// voters up to cluster.voters (3), the rest as nonvoters.
	minVoters := min(len(ids), 3)
	var voters []string
	leaders := map[string]bool{}
	selfLeaders := 0
	for _, n := range views {
		if n.State != Running {
			problems = append(problems, fmt.Sprintf("%s is %s", n.ID, n.State))
			continue
		}
		if !n.Healthy {
			problems = append(problems, n.ID+" is not healthy")
		}
		if n.Err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", n.ID, n.Err))
			continue
		}
		ci := n.Info
		var alive []string
		for _, m := range ci.Members {
			if m.State == "alive" {
				alive = append(alive, m.ID)
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, ids) {
			problems = append(problems, fmt.Sprintf("%s sees alive members %v, want %v", n.ID, alive, ids))
		}
		if ci.Ring == nil || !slices.Equal(sorted(ci.Ring.Members), ids) {
			problems = append(problems, fmt.Sprintf("%s: ring is not every node", n.ID))
		}
		if !raft {
			if ci.Raft != nil {
				problems = append(problems, n.ID+" reports Raft state, but the cluster coordinates on Redis")
			}
			continue
		}
		if ci.Raft == nil {
			problems = append(problems, n.ID+" reports no Raft state")
			continue
		}
		if partial {
			continue
		}
		v := sorted(ci.Raft.Voters)
		if servers := sorted(append(slices.Clone(v), ci.Raft.Nonvoters...)); len(v) < minVoters || !slices.Equal(servers, ids) {
			problems = append(problems, fmt.Sprintf("%s: Raft voters %v nonvoters %v, want at least %d voters and every node a server", n.ID, v, ci.Raft.Nonvoters, minVoters))
		}
		if voters == nil {
			voters = v
		} else if !slices.Equal(voters, v) {
			problems = append(problems, fmt.Sprintf("%s: Raft voters %v differ from %v", n.ID, v, voters))
		}
		leaders[ci.Leader] = true
		if ci.Raft.State == "Leader" {
			selfLeaders++
		}
	}
	if !raft {
		return problems
	}
	if partial {
		return append(problems, partialGroupProblems(ids, views)...)
	}
	if len(leaders) != 1 || leaders[""] {
		problems = append(problems, fmt.Sprintf("nodes name different leaders: %v", keys(leaders)))
	}
	if selfLeaders != 1 {
		problems = append(problems, fmt.Sprintf("%d nodes are in the Leader state", selfLeaders))
	}
	return problems
}

// partialGroupProblems: with each Raft group on some of the nodes, every
// node names the same leader of every group, exactly one node is in the
// Leader state in each, and that leader's configuration holds min(N, 3)
// voters, all of them members, and no non-voters.
func partialGroupProblems(ids []string, views []nodeView) []string {
	var problems []string
	want := min(len(ids), 3)
	groups := 0
	for _, n := range views {
		if n.Info.Raft != nil {
			groups = max(groups, len(n.Info.Raft.Groups))
		}
	}
	for g := range groups {
		named := map[string]bool{}
		var leading []string
		for _, n := range views {
			if n.State != Running || n.Err != nil || n.Info.Raft == nil || g >= len(n.Info.Raft.Groups) {
				continue
			}
			gi := n.Info.Raft.Groups[g]
			named[gi.Leader] = true
			if gi.State != "Leader" {
				continue
			}
			leading = append(leading, n.ID)
			v := sorted(gi.Voters)
			if len(v) != want || len(gi.Nonvoters) > 0 || slices.ContainsFunc(v, func(id string) bool { return !slices.Contains(ids, id) }) {
				problems = append(problems, fmt.Sprintf("group %d on %s: Raft voters %v nonvoters %v, want %d voters among the members and no non-voters",
					g, n.ID, v, gi.Nonvoters, want))
			}
		}
		if len(named) != 1 || named[""] {
			problems = append(problems, fmt.Sprintf("group %d: nodes name different leaders: %v", g, keys(named)))
		}
		if len(leading) != 1 {
			problems = append(problems, fmt.Sprintf("group %d: %d nodes are in the Leader state (%v)", g, len(leading), leading))
		}
	}
	if groups == 0 {
		problems = append(problems, "no node reports its Raft groups")
	}
	return problems
}

// AwaitConverged polls until the cluster has converged (see convergence)
// and returns how long that took; on ctx's end it returns the last
// problems seen.
func (c *Cluster) AwaitConverged(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		problems := c.convergence(ctx)
		if len(problems) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("cluster did not converge: %s", strings.Join(problems, "; "))
		case <-tick.C:
		}
	}
}

// ActiveActors sums each node's active actors per type.
func (c *Cluster) ActiveActors(ctx context.Context) (total map[string]int, perNode map[string]map[string]int, err error) {
	total, perNode = map[string]int{}, map[string]map[string]int{}
	for _, n := range c.Nodes {
		ci, err := c.Info(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		perNode[n.ID] = ci.Actors
		for t, k := range ci.Actors {
			total[t] += k
		}
	}
	return total, perNode, nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func keys[K ~string, V any](m map[K]V) []K {
	var out []K
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
