package node

import (
	"context"
	"net/http"
	"slices"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/observability"
)

// observation is a node's observability: its metrics registry (built by
// New, so an application can register collectors before Start), its
// tracing (built by Start when tracing.enabled), and the trace query.
type observation struct {
	metrics  *observability.Metrics
	tracing  *observability.Tracing // nil: tracing off
	observer *observability.Observer
	traces   *observability.Traces
}

func newObservation() *observation {
	return &observation{metrics: observability.NewMetrics()}
}

// startObservation builds the tracing (if enabled) and the runtime's
// observer. Start calls it before anything that traces exists.
func (n *Node) startObservation(ctx context.Context) error {
	o := n.obs
	t, err := observability.NewTracing(ctx, n.cfg.Tracing, observability.TracingOptions{NodeID: n.cfg.Node.ID, Logger: n.log})
	if err != nil {
		return err
	}
	o.tracing = t
	o.observer = observability.NewObserver(o.metrics, n.tracerProvider())
	o.traces = &observability.Traces{NodeID: n.cfg.Node.ID, Peers: n.tracePeers}
	if n.tls != nil {
		o.traces.Scheme = "https"
		o.traces.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: n.tls.ClientConfig()}}
	}
	if t != nil {
		o.traces.Store = t.Store
		o.metrics.SetTraceStore(t.Store)
		n.log.Info("tracing enabled", "maxTraceAge", n.cfg.Tracing.MaxTraceAge, "maxSpans", n.cfg.Tracing.MaxSpans, "otlp", n.cfg.Tracing.OTLPEndpoint)
	}
	return nil
}

// tracerProvider is the node's TracerProvider, nil when tracing is off
// (the parts given nil record nothing).
func (n *Node) tracerProvider() trace.TracerProvider {
	if n.obs.tracing == nil {
		return nil
	}
	return n.obs.tracing.Provider
}

// propagator is the node's W3C trace-context propagator, nil when
// tracing is off.
func (n *Node) propagator() propagation.TextMapPropagator {
	if n.obs.tracing == nil {
		return nil
	}
	return n.obs.tracing.Propagator
}

// observedJournal and observedCoordinator wrap the node's journal and
// coordinator for metrics and spans; the node still closes the originals.
func (n *Node) observedJournal() journal.Journal {
	return observability.InstrumentJournal(n.journal, n.obs.metrics, n.tracerProvider(), n.ownedByRaft(n.journal))
}

func (n *Node) observedCoordinator() lock.Coordinator {
	return observability.InstrumentCoordinator(n.coord, n.obs.metrics, n.tracerProvider(), n.ownedByRaft(n.coord))
}

// attachMetrics points the scrape-time metrics at the runtime, the Raft
// store and membership once they exist.
func (n *Node) attachMetrics() {
	m := n.obs.metrics
	m.SetActors(n.runtime())
	n.attachMessageMetrics()
	locks, journal := n.redisSources()
	for _, s := range []*observability.RedisSource{locks, journal} {
		if s != nil {
			m.AddRedis(*s)
		}
	}
	pl, pj := n.postgresSources()
	for _, s := range []*observability.PostgresSource{pl, pj} {
		if s != nil {
			m.AddPostgres(*s)
		}
	}
	if rs := n.rabbitSource(); rs != nil {
		m.SetRabbitMQ(*rs)
	}
	for _, s := range n.cosmosSources() {
		m.AddCosmos(s)
	}
	if err := m.Registry().Register(n.TaskMetrics()); err != nil {
		n.log.Warn("task metrics not registered on /metrics", "err", err)
	}
	if n.mesh != nil {
		if n.mesh.store != nil {
			groups := make([]observability.RaftSource, n.mesh.groups.Len())
			for g := range groups {
				groups[g] = n.mesh.groups.Group(g)
			}
			m.SetRaft(groups...)
		}
		m.SetMembers(func() map[string]int {
			counts := map[string]int{}
			for _, mem := range n.mesh.members.Members() {
				counts[mem.State.String()]++
			}
			return counts
		})
	}
}

func (n *Node) shutdownObservation(ctx context.Context) error {
	if n.obs.tracing == nil {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.obs.tracing.Shutdown(sctx)
}

// observabilityRoutes adds /health, /health/live, /health/ready, /metrics
// and /traces to mux.
func (n *Node) observabilityRoutes(mux *http.ServeMux) {
	health, live, ready := observability.HealthHandlers(n.Health)
	mux.Handle("GET /health", health)
	mux.Handle("GET /health/live", live)
	mux.Handle("GET /health/ready", ready)
	mux.Handle("GET /metrics", n.obs.metrics.Handler())
	mux.Handle("GET /traces", n.obs.traces)
}

// Metrics is the node's Prometheus registry and Loom's families in it
// (served on /metrics). Register an application's collectors on
// Metrics().Registry().
func (n *Node) Metrics() *observability.Metrics { return n.obs.metrics }

// QueryTraces answers a trace query for the whole cluster: this node's
// spans and every alive peer's (see observability.Traces.Query). Before
// Start, or with tracing off everywhere, the result has no traces.
func (n *Node) QueryTraces(ctx context.Context, q observability.Query) observability.Result {
	if n.obs.traces == nil {
		return observability.Result{Traces: []observability.Trace{}}
	}
	return n.obs.traces.Query(ctx, q)
}

// tracePeers lists the alive members other than this node, with their
// HTTP addresses.
func (n *Node) tracePeers() []observability.Peer {
	if n.mesh == nil || n.mesh.members == nil {
		return nil
	}
	var out []observability.Peer
	for _, mem := range n.mesh.members.Alive() {
		if mem.NodeID != n.cfg.Node.ID && mem.Meta.HTTPAddr != "" {
			out = append(out, observability.Peer{ID: mem.NodeID, HTTPAddr: mem.Meta.HTTPAddr})
		}
	}
	return out
}

// Health evaluates the node's health report (what GET /health answers).
func (n *Node) Health() observability.Report {
	r := observability.Report{Node: n.cfg.Node.ID, Timestamp: time.Now().UTC()}
	rt := n.runtime()
	if rt == nil {
		r.Status = observability.Unhealthy
		return r
	}
	pools := &observability.PoolsHealth{Types: map[string]observability.PoolHealth{}}
	for t := range rt.Types() {
		cfg, _ := rt.PoolConfig(t)
		pools.Types[t] = observability.PoolHealth{Active: rt.Active(t), MaxSize: cfg.MaxSize, Waiting: rt.Waiting(t), EvictionPolicy: cfg.EvictionPolicy}
	}
	r.Components.ActorPools = pools

	kc := keeperConfig(n.cfg)
	now := time.Now()
	lease := n.keeper.Lease()
	locks := &observability.LocksHealth{
		Session: string(n.keeper.Session()), Valid: n.keeper.Valid(),
		LeaseRemainingMs: max(0, lease.Remaining(now).Milliseconds()),
		LastRenewalAgoMs: -1,
		TTLMs:            kc.TTL.Milliseconds(), RenewIntervalMs: kc.RenewInterval.Milliseconds(),
	}
	if sent, ok := lease.SentAt(); ok {
		locks.LastRenewalAgoMs = now.Sub(sent).Milliseconds()
	}
	rl, rj := n.redisSources()
	if rl != nil {
		locks.Redis = observability.CheckRedis(*rl)
	}
	pl, pj := n.postgresSources()
	if pl != nil {
		locks.Postgres = observability.CheckPostgres(*pl)
	}
	r.Components.Locks = locks

	if m := n.mesh; m != nil && m.store != nil {
		st := observability.ParseRaftStats(m.store.Stats())
		r.Components.Raft = &observability.RaftHealth{
			Role: m.store.State().String(), Leader: m.leaderNode(m.leader()), Term: st.Term,
			CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContactMs: st.LastContact.Milliseconds(),
		}
		if st.LastContact < 0 {
			r.Components.Raft.LastContactMs = -1
		}
	}
	if m := n.mesh; m != nil {
		mh := &observability.MembershipHealth{Members: map[string]int{}}
		for _, mem := range m.members.Members() {
			mh.Members[mem.State.String()]++
			if mem.State == cluster.StateDead || mem.State == cluster.StateSuspect {
				mh.Failed = append(mh.Failed, mem.NodeID)
			}
		}
		slices.Sort(mh.Failed)
		r.Components.Membership = mh
	}
	if cs := n.cosmosSources(); len(cs) > 0 {
		r.Components.Cosmos = observability.CheckCosmos(cs...)
	}
	r.Components.MessageQueues = n.messageQueuesHealth(now)
	if mq := r.Components.MessageQueues; mq != nil && rj != nil {
		mq.Redis = observability.CheckRedis(*rj)
	}
	if mq := r.Components.MessageQueues; mq != nil && pj != nil {
		mq.Postgres = observability.CheckPostgres(*pj)
	}
	if mq, rs := r.Components.MessageQueues, n.rabbitSource(); mq != nil && rs != nil {
		mq.RabbitMQ = observability.CheckRabbitMQ(*rs)
	}
	r.Evaluate()
	return r
}
