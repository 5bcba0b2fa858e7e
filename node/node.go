package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport"
)

// Options configure a Node.
type Options struct {
	// Config is the node's validated configuration (config.Default() for
	// embedded defaults).
	Config config.Config
	// Types are the application's actor types.
	Types []runtime.Definition
	// Builtins also registers the built-in counter, register and kv types.
	Builtins bool
	// Tasks are the application's stateless tasks (package task), run by
	// name over HTTP and gRPC (see tasks.go).
	Tasks []task.Definition
	// Logger receives the node's logs; nil builds one from Config.Logging
	// writing to stderr. The node adds its id to every line.
	Logger *slog.Logger
	// Chaos turns on the chaos hook in a clustered node. TEST ONLY (see
	// ChaosOptions), and only in a binary built with the loomchaos tag:
	// without it, New refuses a non-nil Chaos with ErrNotBuiltIn. nil,
	// the default, builds none of it.
	Chaos *ChaosOptions
	// Unsafe deliberately breaks a guarantee. DEBUG ONLY (see
	// UnsafeMode), with the loomchaos tag only, like Chaos; empty, the
	// default, is safe.
	Unsafe UnsafeMode
	// Network, if not nil, carries a clustered node's gRPC, Raft and
	// gossip traffic with the other nodes (see Network); nil is plain
	// TCP and UDP. Not with Chaos, which carries its own.
	Network Network
	// Clock, if not nil, is the clock of the node's application timing:
	// actors' idle timeouts, reminders' and delayed messages' due times,
	// message retries' backoff, how long idempotency keys are kept and
	// journal entries' times (see clock.go). Leases, sessions and Raft
	// never read it. nil is time.Now.
	Clock func() time.Time

	// httpLimits replaces the HTTP port's timeouts (limits.go): tests
	// shorten them (export_test.go).
	httpLimits *httpLimits
}

// Node is one Loom node.
type Node struct {
	opts Options
	cfg  config.Config
	log  *slog.Logger

	// mu guards the lifecycle: state, and the running Start's cancel and
	// done. It is never held while Start waits (for a Raft leader, say),
	// so Shutdown can always get it.
	mu          sync.Mutex
	state       lifecycle
	startCancel context.CancelFunc // ends the running Start's context
	startDone   chan struct{}      // closed when the running Start returns
	// stopMu serialises Shutdown's closing of the parts (a second
	// Shutdown waits for the first).
	stopMu sync.Mutex

	journal journal.Journal
	coord   lock.Coordinator
	keeper  *lock.Keeper
	ln      net.Listener
	srv     *http.Server
	served  chan error

	stopWatch context.CancelFunc
	wg        sync.WaitGroup

	// In a cluster (coordination.backend raft):
	mesh     *mesh
	grpcLn   net.Listener
	grpcSrv  *transport.Server
	stopMesh context.CancelFunc
	rtPtr    atomic.Pointer[runtime.Runtime]

	obs *observation // metrics, tracing, health (observe.go)

	chaos      *chaosState // the chaos hook (chaos.go); nil when off
	unsafeWait func()      // waits for what the unsafe mode runs (unsafe.go)

	tasks *task.Registry
	lease leaseGate // PauseLease's (crash.go)

	dispatcher atomic.Pointer[messaging.Dispatcher] // delivers messages; nil without a message store
	keyringMu  sync.Mutex                           // serialises gossip keyring changes and their file
	broker     broker                               // messages outside the journal (broker.go); nil without one

	tls       *tlsconf.Source          // nil when tls is off (tls.go)
	tokens    *auth.Tokens             // nil when auth is off (auth.go)
	raftTrans []*raft.NetworkTransport // the Raft groups' transports the node made, closed after the groups
}

// Version is the Loom version a node reports in its gossip metadata.
const Version = "0.1.0-dev"

// types is every actor type the node registers.
func (o Options) types() []runtime.Definition {
	types := append([]runtime.Definition(nil), o.Types...)
	if o.Builtins {
		types = append(types, builtin.Types()...)
	}
	return types
}

// New checks the configuration and builds a Node. It starts nothing.
func New(opts Options) (*Node, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if err := keeperConfig(opts.Config).Validate(); err != nil {
		return nil, fmt.Errorf("node: coordination.sessionTTL and coordination.renewInterval: %w", err)
	}
	var names []string
	for _, d := range opts.types() {
		names = append(names, d.Name())
	}
	if err := opts.Config.CheckActorTypes(names); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = NewLogger(opts.Config.Logging, os.Stderr)
	} else {
		// Lines logged with a call's context carry its correlation id.
		log = slog.New(observability.NewContextHandler(log.Handler()))
	}
	log = log.With("node", opts.Config.Node.ID)
	tasks, err := newTaskRegistry(opts.Tasks, log)
	if err != nil {
		return nil, err
	}
	if err := opts.Unsafe.validate(opts.Config); err != nil {
		return nil, err
	}
	chaos, err := newChaosState(opts.Chaos, opts.Config.Node.ID)
	if err != nil {
		return nil, err
	}
	if chaos != nil && opts.Network != nil {
		return nil, errNetworkAndChaos
	}
	if err := chaos.checkBind(opts.Config.Node.Bind); err != nil {
		return nil, err
	}
	return &Node{opts: opts, cfg: opts.Config, log: log, tasks: tasks, obs: newObservation(), chaos: chaos}, nil
}

// keeperConfig derives the session keeper's settings from the config.
func keeperConfig(c config.Config) lock.KeeperConfig {
	kc := lock.KeeperConfigForTTL(c.Coordination.SessionTTL)
	kc.RenewInterval = c.Coordination.RenewInterval
	kc.RequestTimeout = c.Coordination.RenewInterval
	kc.RetryMax = c.Coordination.RenewInterval
	return kc
}

// NewLogger builds the slog logger the logging config describes
// (observability.NewLogger: text or JSON, the level, and the correlation id
// of a call on the lines logged with its context).
func NewLogger(c config.LoggingConfig, w *os.File) *slog.Logger {
	return observability.NewLogger(c, w)
}

// Start opens the journal, opens the node's coordinator session, starts the
// runtime and serves HTTP. On error everything opened so far is closed.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	switch n.state {
	case stateStarting, stateRunning:
		n.mu.Unlock()
		return ErrAlreadyStarted
	case stateStopped:
		n.mu.Unlock()
		return ErrShutDown
	}
	n.state = stateStarting
	ctx, cancel := context.WithCancel(ctx)
	n.startCancel, n.startDone = cancel, make(chan struct{})
	done := n.startDone
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		stopped := n.state != stateStarting // Shutdown came meanwhile
		if err == nil && !stopped {
			n.state = stateRunning
		} else {
			n.state = stateStopped
		}
		n.mu.Unlock()
		cancel()
		switch {
		case stopped && err == nil:
			err = fmt.Errorf("%w while starting", ErrShutDown)
		case stopped:
			err = fmt.Errorf("%w while starting: %w", ErrShutDown, err)
		}
		if err != nil {
			// Close everything this Start opened; a Shutdown called
			// meanwhile waits for it (done).
			n.closeParts(context.Background())
		}
		close(done)
	}()
	err = n.start(ctx)
	return err
}

// start opens and starts the node's parts (see Start); on an error,
// Start closes whatever it opened.
func (n *Node) start(ctx context.Context) error {
	c := n.cfg
	if err := os.MkdirAll(c.Node.DataDir, 0o755); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	// The HTTP listener comes first: its address is part of the node's
	// gossip metadata.
	if err := n.openTLS(); err != nil {
		return err
	}
	if err := n.openAuth(); err != nil {
		return err
	}
	addr := net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.Node.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: http listen on %s: %w", addr, err)
	}
	n.ln = ln
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls.AskingConfig("https"))
	}
	if err := n.startObservation(ctx); err != nil {
		return err
	}

	var epoch uint64
	if c.Coordination.Backend != config.CoordinationMemory {
		// A coordinator the nodes share makes a cluster: gossip,
		// placement and forwarding, and Raft when it is the coordinator.
		if err := n.startMesh(ctx); err != nil {
			return err
		}
		watchCtx, stopMesh := context.WithCancel(context.Background())
		n.stopMesh = stopMesh
		n.serveMesh(watchCtx)
	}
	switch c.Journal.Backend {
	case config.JournalBBolt:
		jo := journal.DefaultFileOptions()
		jo.Logger = n.log
		jo.MessageIDRetention = c.Messaging.IDRetention
		j, err := journal.OpenFile(c.JournalPath(), jo)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.journal = j
		if epoch, err = nextEpoch(c.Node.DataDir); err != nil {
			return err
		}
	case config.JournalMemory:
		n.journal = inmem.NewJournalWith(inmem.Options{Retention: c.Messaging.IDRetention})
	case config.JournalRaft:
		n.journal = n.mesh.groups
	case config.JournalRedis:
		j, err := n.openRedisJournal(ctx)
		if err != nil {
			return err
		}
		n.journal = j
	case config.JournalPostgres:
		j, err := n.openPostgresJournal(ctx)
		if err != nil {
			return err
		}
		n.journal = j
	case config.JournalCosmos:
		j, err := n.openCosmosJournal(ctx)
		if err != nil {
			return err
		}
		n.journal = j
	default:
		return fmt.Errorf("node: journal backend %q not supported", c.Journal.Backend)
	}

	switch c.Coordination.Backend {
	case config.CoordinationMemory:
		n.coord = epochCoordinator{Coordinator: inmem.NewCoordinator(inmem.CoordinatorOptions{}), base: epoch << 32}
	case config.CoordinationRaft:
		n.coord = n.mesh.groups
		if id, _ := n.mesh.store.Leader(); id == "" {
			n.log.Info("waiting for a Raft leader", "bootstrapExpect", c.Cluster.BootstrapExpect, "raftState", n.mesh.store.HasState())
		}
	case config.CoordinationRedis:
		co, err := n.openRedisCoordinator()
		if err != nil {
			return err
		}
		n.coord = co
	case config.CoordinationPostgres:
		co, err := n.openPostgresCoordinator(ctx)
		if err != nil {
			return err
		}
		n.coord = co
	case config.CoordinationCosmos:
		co, err := n.openCosmosCoordinator(ctx)
		if err != nil {
			return err
		}
		n.coord = co
	default:
		return fmt.Errorf("node: coordination backend %q not supported", c.Coordination.Backend)
	}
	if ender, ok := n.coord.(sessionEnder); ok {
		// The sessions of this node's previous incarnation (a crash, a
		// kill -9) hold its actors' locks until their TTL runs out (and a
		// new Raft leader extends them): end them now. With Raft this
		// waits for a leader, as the keeper does.
		ended, err := ender.EndSessionsOf(ctx, c.Node.ID, "")
		if err != nil {
			return fmt.Errorf("node: ending the sessions of this node's previous run: %w", err)
		}
		if ended > 0 {
			n.log.Info("ended the coordinator sessions of this node's previous run", "sessions", ended)
		}
	}
	if c.Messaging.Backend == config.MessagingRabbitMQ {
		b, err := n.openBroker(ctx)
		if err != nil {
			return err
		}
		n.broker = b
	}
	kc := keeperConfig(c)
	n.chaos.configureKeeper(&kc)
	n.keeper = lock.NewKeeper(gatedCoordinator{n.observedCoordinator(), &n.lease}, c.Node.ID, kc, n.log)
	// In a cluster this waits for a Raft leader (and so for
	// bootstrapExpect members), bounded by ctx.
	if err := n.keeper.Start(ctx); err != nil {
		return fmt.Errorf("node: coordinator session: %w", err)
	}

	ro := runtime.Options{
		NodeID:          c.Node.ID,
		Journal:         n.observedJournal(),
		Coordinator:     n.observedCoordinator(),
		Session:         n.keeper,
		Pool:            func(t string) runtime.PoolConfig { return runtime.PoolConfig(c.ActorPools.For(t)) },
		SnapshotEvery:   c.Journal.SnapshotEvery,
		MaxPayloadBytes: c.Node.MaxPayloadBytes,
		Logger:          n.log,
		Observer:        n.obs.observer,
		Now:             n.opts.Clock,
	}
	if n.mesh != nil {
		ro.Router = n.mesh
	}
	n.configureMessaging(&ro)
	n.unsafeWait = n.unsafeRuntime(&ro)
	n.chaos.configureRuntime(&ro)
	rt, err := runtime.New(ro)
	if err != nil {
		return err
	}
	if err := rt.Register(n.opts.types()...); err != nil {
		_ = rt.Close(context.Background())
		return err
	}
	n.rtPtr.Store(rt)
	n.attachMetrics()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	n.stopWatch = stopWatch
	n.wg.Add(1)
	go n.watchLapses(watchCtx)
	n.watchTLS(watchCtx)

	n.srv = n.httpServer(n.handler()) // limits.go: its timeouts and size bounds
	n.srv.ErrorLog = slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)
	n.served = make(chan error, 1)
	go func() { n.served <- n.srv.Serve(ln) }()
	if err := n.startDispatcher(); err != nil {
		return err
	}
	if n.broker != nil {
		if err := n.broker.Consume(n.deliverExternal); err != nil {
			return fmt.Errorf("node: consuming from the message broker: %w", err)
		}
	}
	n.log.Info("node started", "http", n.HTTPAddr(), "grpc", n.GRPCAddr(), "journal", c.Journal.Backend, "coordination", c.Coordination.Backend, "data_dir", c.Node.DataDir)
	return nil
}

// GossipAddr is the gossip address ("" for a single node).
func (n *Node) GossipAddr() string {
	if n.mesh == nil || n.mesh.members == nil {
		return ""
	}
	return n.mesh.members.LocalNode().Addr
}

// RaftAddr is the Raft address ("" for a single node).
func (n *Node) RaftAddr() string {
	if n.mesh == nil || n.mesh.store == nil {
		return ""
	}
	return string(n.mesh.store.Addr())
}

// runtime returns the runtime once Start has built it, else nil.
func (n *Node) runtime() *runtime.Runtime { return n.rtPtr.Load() }

// GRPCAddr is the address the gRPC server listens on ("" for a single node).
func (n *Node) GRPCAddr() string {
	if n.grpcLn == nil {
		return ""
	}
	return n.grpcLn.Addr().String()
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	rt := n.runtime() // set before the HTTP server starts
	mux.Handle("/v1/", gateway.New(gateway.Options{
		Invoker:      rt,
		MaxBodyBytes: int64(n.cfg.Node.MaxPayloadBytes),
		Types:        rt.Types,
		Logger:       n.log,
		Tasks:        n,
		TaskNames:    n.tasks.Names,

		TracerProvider: n.tracerProvider(),
		Propagator:     n.propagator(),
		Messages:       n,
	}))
	n.observabilityRoutes(mux)
	mux.HandleFunc("GET /v1/cluster", n.clusterInfo)
	n.adminRoutes(mux)
	n.dashboardRoutes(mux)
	n.keyringRoutes(mux)
	n.chaos.routes(mux)
	if n.cfg.Node.Pprof {
		pprofRoutes(mux)
	}
	return n.requireTokens(withPeerAuth(mux))
}

// ClusterInfo is what GET /v1/cluster answers.
type ClusterInfo struct {
	Node    string         `json:"node"`
	Mode    string         `json:"mode"` // "single" or "cluster"
	Leader  string         `json:"leader,omitempty"`
	Raft    *RaftInfo      `json:"raft,omitempty"`
	Members []MemberInfo   `json:"members"`
	Ring    *RingInfo      `json:"ring,omitempty"`
	Actors  map[string]int `json:"activeActors"`
	// Connections are the gRPC addresses this node has pooled
	// connections to (closed when their member departs).
	Connections []string `json:"connections,omitempty"`
}

// RaftInfo is this node's view of Raft.
type RaftInfo struct {
	State        string `json:"state"`
	AppliedIndex uint64 `json:"appliedIndex"`
	// ID is this node's Raft server id (node id @ the data dir's suffix).
	ID string `json:"id"`
	// Voters and Nonvoters are the nodes of the configuration's servers;
	// a node listed twice has an old incarnation (a replaced data dir)
	// not yet removed. Servers has the Raft server ids.
	Voters    []string     `json:"voters"`
	Nonvoters []string     `json:"nonvoters,omitempty"`
	Servers   []RaftServer `json:"servers,omitempty"`
	// Groups are the Raft groups (cluster.raftGroups) the actors are
	// split into, by number; the fields above are group 0's.
	Groups []RaftGroupInfo `json:"groups"`
}

// RaftGroupInfo is one Raft group as this node sees it: its leader's
// node, this node's state in it and its configuration's nodes.
type RaftGroupInfo struct {
	Group        int      `json:"group"`
	Leader       string   `json:"leader"`
	State        string   `json:"state"`
	AppliedIndex uint64   `json:"appliedIndex"`
	Voters       []string `json:"voters"`
	Nonvoters    []string `json:"nonvoters,omitempty"`
	// Outside: with groups on some of the nodes, this node is not a
	// server of the group. Its State is then "Outside", and Voters,
	// Nonvoters and AppliedIndex are the leader's (or, if it cannot be
	// asked, as this node last knew them).
	Outside bool `json:"outside,omitempty"`
}

// RaftServer is one server of the Raft configuration.
type RaftServer struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	Suffrage string `json:"suffrage"`
}

// MemberInfo is one member as this node sees it.
type MemberInfo struct {
	ID    string `json:"id"`
	State string `json:"state"`
	HTTP  string `json:"http,omitempty"`
	GRPC  string `json:"grpc,omitempty"`
	Raft  string `json:"raft,omitempty"`
}

// RingInfo describes the placement ring.
type RingInfo struct {
	Members []string `json:"members"`
	Version uint64   `json:"version"`
}

// Info reports membership, Raft and placement as this node sees them.
func (n *Node) Info() ClusterInfo {
	ci := ClusterInfo{Node: n.cfg.Node.ID, Mode: "single", Actors: map[string]int{}}
	if rt := n.runtime(); rt != nil {
		for t := range rt.Types() {
			ci.Actors[t] = rt.Active(t)
		}
	}
	m := n.mesh
	if m == nil {
		ci.Members = []MemberInfo{{ID: n.cfg.Node.ID, State: "alive", HTTP: n.HTTPAddr()}}
		return ci
	}
	ci.Mode = "cluster"
	ci.Leader = m.leaderNode(m.leader())
	if m.store != nil {
		ci.Raft = n.raftInfo()
	}
	for _, mem := range m.members.Members() {
		ci.Members = append(ci.Members, MemberInfo{ID: mem.NodeID, State: mem.State.String(), HTTP: mem.Meta.HTTPAddr, GRPC: mem.Meta.GRPCAddr, Raft: mem.Meta.RaftAddr})
	}
	r := m.table.Ring()
	ci.Ring = &RingInfo{Members: r.Members(), Version: r.Version()}
	ci.Connections = m.pool.Addrs()
	return ci
}

// raftInfo is the Raft server's state and configuration, group 0's and
// every group's.
func (n *Node) raftInfo() *RaftInfo {
	m := n.mesh
	ri := &RaftInfo{ID: string(m.store.LocalID()), State: m.store.State().String(), AppliedIndex: m.store.AppliedIndex(), Voters: []string{}}
	if conf, err := m.store.Configuration(); err == nil {
		for _, s := range conf.Servers {
			ri.Servers = append(ri.Servers, RaftServer{ID: string(s.ID), Node: raftlock.NodeOf(s.ID), Suffrage: s.Suffrage.String()})
		}
	}
	for g := range m.groups.Len() {
		s := m.groups.Group(g)
		gi := RaftGroupInfo{Group: g, Leader: m.groupLeader(g), State: s.State().String(), AppliedIndex: s.AppliedIndex(), Voters: []string{}}
		if conf, err := s.Configuration(); err == nil {
			for _, sv := range conf.Servers {
				if node := raftlock.NodeOf(sv.ID); sv.Suffrage == raft.Voter {
					gi.Voters = append(gi.Voters, node)
				} else {
					gi.Nonvoters = append(gi.Nonvoters, node)
				}
			}
			if m.partialGroups() && !slices.ContainsFunc(conf.Servers, func(sv raft.Server) bool { return sv.ID == s.LocalID() }) {
				gi.Outside, gi.State = true, "Outside"
			}
		}
		ri.Groups = append(ri.Groups, gi)
	}
	ri.Voters, ri.Nonvoters = ri.Groups[0].Voters, ri.Groups[0].Nonvoters
	return ri
}

func (n *Node) clusterInfo(w http.ResponseWriter, r *http.Request) {
	ci := n.Info()
	if r.URL.Query().Get("scope") != "local" {
		n.groupsFromLeaders(r.Context(), ci.Raft)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ci)
}

// groupsFromLeaders fills in, for each group ri shows this node outside
// of, the servers and applied index its leader reports (GET /v1/cluster
// there, with the credentials of the request ctx belongs to). A leader
// that does not answer leaves the group as this node last knew it.
func (n *Node) groupsFromLeaders(ctx context.Context, ri *RaftInfo) {
	if ri == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for i, gi := range ri.Groups {
		if !gi.Outside {
			continue
		}
		body, err := n.askGroupLeader(ctx, gi.Group, "/v1/cluster", nil)
		var lci ClusterInfo
		if err != nil || json.Unmarshal(body, &lci) != nil || lci.Raft == nil || gi.Group >= len(lci.Raft.Groups) {
			continue
		}
		lg := lci.Raft.Groups[gi.Group]
		ri.Groups[i].Voters, ri.Groups[i].Nonvoters, ri.Groups[i].AppliedIndex = lg.Voters, lg.Nonvoters, lg.AppliedIndex
	}
	ri.Voters, ri.Nonvoters = ri.Groups[0].Voters, ri.Groups[0].Nonvoters
}

// watchLapses drops every activation the moment the node's session may
// have lapsed: another node may take its actors from then on.
func (n *Node) watchLapses(ctx context.Context) {
	defer n.wg.Done()
	for {
		e, err := n.keeper.Wait(ctx)
		if err != nil {
			return
		}
		select {
		case <-e.Lapsed():
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("coordinator session may have lapsed; dropping all actors", "session", e.Session())
			n.obs.metrics.SessionLapsed()
			n.runtime().DropAll("coordinator session may have lapsed")
		case <-ctx.Done():
			return
		}
	}
}

// HTTPAddr is the address the HTTP server listens on ("" before Start).
func (n *Node) HTTPAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.Node.ID }

// Runtime is the node's actor runtime (nil before Start).
func (n *Node) Runtime() *runtime.Runtime { return n.runtime() }

// Invoke implements runtime.Invoker.
func (n *Node) Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error) {
	rt := n.runtime()
	if rt == nil {
		return nil, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	return rt.Invoke(ctx, actorType, id, method, payload)
}

// InvokeLocal implements runtime.LocalInvoker.
func (n *Node) InvokeLocal(ctx context.Context, actorType, id, method string, in any) (any, error) {
	rt := n.runtime()
	if rt == nil {
		return nil, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	return rt.InvokeLocal(ctx, actorType, id, method, in)
}

// Shutdown stops accepting requests, waits for running requests and turns
// (until ctx ends), deactivates every actor, ends the coordinator session
// and closes the journal. It may be called from any goroutine at any time,
// and more than once (later calls wait for the first to finish). During
// Start it ends Start's waits (Start then fails with ErrShutDown and
// closes what it opened) and returns once that is done; before Start it
// makes any later Start fail with ErrShutDown.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopMu.Lock()
	defer n.stopMu.Unlock()
	n.mu.Lock()
	state := n.state
	n.state = stateStopped
	cancelStart, startDone := n.startCancel, n.startDone
	n.mu.Unlock()
	switch state {
	case stateNew, stateStopped:
		if startDone != nil {
			<-startDone // a Start that failed by itself may still be closing
		}
		return nil
	case stateStarting:
		n.log.Info("node stopping while it starts")
		cancelStart()
		select {
		case <-startDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("node: shutdown while starting: %w", ctx.Err())
		}
	}
	n.log.Info("node stopping")
	n.lease.resume() // a paused lease would hold up ending the session
	err := n.closeParts(ctx)
	n.log.Info("node stopped")
	return err
}

// closeParts closes whatever Start opened, in reverse order: HTTP stops
// accepting and drains, the runtime finishes running turns and releases
// its actors, the gRPC server drains, the session ends, the node leaves the
// gossip cluster, and the Raft store and the journal close last.
func (n *Node) closeParts(ctx context.Context) error {
	var errs []error
	if n.srv != nil {
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: http: %w", err))
			_ = n.srv.Close()
		}
		if err := <-n.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("node: http: %w", err))
		}
	} else if n.ln != nil {
		_ = n.ln.Close()
	}
	n.closeTasks(ctx)
	if err := n.closeBroker(); err != nil {
		errs = append(errs, err)
	}
	if d := n.dispatcher.Load(); d != nil {
		// Deliveries in progress finish (or fail) before the runtime
		// closes; an undelivered message stays in its queue.
		d.Close()
	}
	if rt := n.runtime(); rt != nil {
		if err := rt.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if n.unsafeWait != nil {
		n.unsafeWait()
	}
	if n.grpcSrv != nil {
		n.grpcSrv.Stop(ctx)
	} else if n.grpcLn != nil {
		_ = n.grpcLn.Close()
	}
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if n.stopMesh != nil {
		n.stopMesh()
	}
	n.wg.Wait()
	n.log.Debug("shutdown: runtime, servers and watchers stopped")
	if n.keeper != nil {
		// Ending the session frees the node's locks at once; if the
		// coordinator cannot be reached (no Raft quorum left), the
		// session lapses by its TTL instead, so do not wait long.
		kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := n.keeper.Close(kctx); err != nil {
			n.log.Warn("ending the coordinator session; it will lapse by its TTL", "err", err)
		}
		cancel()
	}
	n.log.Debug("shutdown: session closed")
	if m := n.mesh; m != nil {
		if m.members != nil {
			// A graceful leave only needs a few gossip rounds; do not let
			// an unanswered broadcast hold up the shutdown.
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := m.members.Leave(lctx); err != nil {
				n.log.Warn("leaving the cluster", "err", err)
			}
			cancel()
			_ = m.members.Close()
		}
		if m.groups != nil {
			if err := m.groups.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node: raft: %w", err))
			}
		}
		for _, t := range n.raftTrans {
			_ = t.Close()
		}
		if m.pool != nil {
			_ = m.pool.Close()
		}
	}
	if n.coord != nil && !n.ownedByRaft(n.coord) {
		_ = n.coord.Close()
	}
	if n.journal != nil && !n.ownedByRaft(n.journal) {
		if err := n.journal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: journal: %w", err))
		}
	}
	if err := n.shutdownObservation(ctx); err != nil {
		errs = append(errs, fmt.Errorf("node: tracing: %w", err))
	}
	return errors.Join(errs...)
}

// ownedByRaft reports whether part (the coordinator or the journal) is the
// node's Raft store, which the mesh closes.
func (n *Node) ownedByRaft(part any) bool {
	return n.mesh != nil && n.mesh.groups != nil && part == any(n.mesh.groups)
}

// sessionEnder is a coordinator that can end the sessions of a node's
// previous incarnation (raftlock.Store, redislock.Coordinator,
// pglock.Coordinator).
type sessionEnder interface {
	EndSessionsOf(ctx context.Context, owner string, keep lock.SessionID) (int, error)
}

// RaftStats returns the Raft and group-commit counters of this node's
// coordinator (raftlock.Store.Stats), or nil for a single node.
func (n *Node) RaftStats() map[string]string {
	if n.mesh == nil || n.mesh.store == nil {
		return nil
	}
	return n.mesh.store.Stats()
}

// lifecycle is where a Node is in its one Start/Shutdown cycle.
type lifecycle uint8

const (
	stateNew      lifecycle = iota
	stateStarting           // Start is running
	stateRunning            // Start succeeded
	stateStopped            // Shutdown was called, or Start failed
)

// Lifecycle errors.
var (
	// ErrAlreadyStarted: Start was called on a node already started or
	// starting.
	ErrAlreadyStarted = errors.New("node: already started")
	// ErrShutDown: Start was called after Shutdown (or after a Start that
	// failed; a Node serves one cycle), or Shutdown ended a Start.
	ErrShutDown = errors.New("node: shut down")
)
