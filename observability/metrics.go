package observability

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// ActorSource is what the metrics and the health report read from the
// actor runtime (*runtime.Runtime implements it). Called on scrapes, from
// the scraping goroutine.
type ActorSource interface {
	Types() map[string][]string
	Active(actorType string) int
	Waiting(actorType string) int
	PoolConfig(actorType string) (runtime.PoolConfig, bool)
}

// RaftSource is what the metrics and the health report read from the Raft
// store (*raftlock.Store implements it): hashicorp/raft's Stats plus the
// store's own counters ("batches", "batch_commands").
type RaftSource interface {
	Stats() map[string]string
}

// Metrics is one node's Prometheus registry and the Loom metric families
// in it. Build it with NewMetrics; attach the live parts of a node with
// the Set* methods once they exist (families whose source is not set are
// simply absent from a scrape). Safe for concurrent use.
//
// Nothing here touches Prometheus' global registry.
type Metrics struct {
	reg *prometheus.Registry

	redis     redisCollector // Redis clients (AddRedis)
	redisOnce sync.Once

	postgres     postgresCollector // PostgreSQL pools (AddPostgres)
	postgresOnce sync.Once

	cosmos     cosmosCollector // Cosmos DB clients (AddCosmos)
	cosmosOnce sync.Once

	rabbit     rabbitCollector // the RabbitMQ broker (SetRabbitMQ)
	rabbitOnce sync.Once

	calls        *prometheus.CounterVec   // type, method, outcome
	callSeconds  *prometheus.HistogramVec // type, method
	hops         prometheus.Histogram
	activations  *prometheus.CounterVec   // type, outcome
	activateSecs *prometheus.HistogramVec // type
	deactivation *prometheus.CounterVec   // type, reason
	evictions    *prometheus.CounterVec   // type

	appendSeconds prometheus.Histogram
	appendEntries prometheus.Histogram
	appends       *prometheus.CounterVec // outcome
	fenced        *prometheus.CounterVec // op
	raftApply     *prometheus.HistogramVec

	lockAcquire *prometheus.CounterVec // outcome
	renewals    *prometheus.CounterVec // outcome
	lapses      prometheus.Counter

	traceEvicted *prometheus.CounterVec // reason

	msgs *messageMetrics // durable messaging (messages.go)

	callStats sync.Map // callKey → *callStat

	actors  atomic.Pointer[ActorSource]
	raft    atomic.Pointer[[]RaftSource]
	members atomic.Pointer[func() map[string]int]
	traces  atomic.Pointer[TraceStore]
}

type callKey struct{ typ, method string }

// callStat caches the per-(type, method) children and span names of the
// hot path.
type callStat struct {
	ok       prometheus.Counter
	seconds  prometheus.Observer
	turnName string
	rate     rateRing // the recent buckets (callrate.go)
}

// Latency buckets: 50 µs to ~13 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.00005, 2, 19)

// NewMetrics builds a node's registry with the Go runtime and process
// collectors and every Loom family. node is added to nothing: Prometheus
// labels each scrape with its target.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c, ok := newDiskCollector(); ok {
		m.reg.MustRegister(c)
	}

	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_calls_total",
		Help: "Actor calls that entered the cluster at this node (from a local caller, the HTTP gateway, a cluster client or an actor), by actor type, method and outcome.",
	}, []string{"type", "method", "outcome"})
	m.callSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loom_call_duration_seconds",
		Help:    "Latency of the calls counted by loom_calls_total, forwarding included.",
		Buckets: latencyBuckets,
	}, []string{"type", "method"})
	m.hops = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "loom_call_hops",
		Help:    "Forwards a call went through before its turn ran on this node (0: served where it entered).",
		Buckets: []float64{0, 1, 2, 3},
	})
	m.activations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_actor_activations_total",
		Help: "Actor activations (lock, snapshot and journal replay, OnActivate) on this node, by actor type and outcome.",
	}, []string{"type", "outcome"})
	m.activateSecs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loom_actor_activation_duration_seconds",
		Help:    "Duration of actor activations, by actor type.",
		Buckets: latencyBuckets,
	}, []string{"type"})
	m.deactivation = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_actor_deactivations_total",
		Help: "Actors that left memory on this node, by actor type and reason (idle, evicted, handed_off, shutdown, requested, panic, append_failed, session_lapsed, dropped).",
	}, []string{"type", "reason"})
	m.evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_actor_evictions_total",
		Help: "Actors deactivated to make room in a full pool (LRU), by actor type.",
	}, []string{"type"})
	m.appendSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "loom_journal_append_duration_seconds",
		Help:    "Latency of journal appends (one per turn that changed state), until durable.",
		Buckets: latencyBuckets,
	})
	m.appendEntries = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "loom_journal_append_entries",
		Help:    "Entries per journal append.",
		Buckets: []float64{1, 2, 4, 8, 16, 64, 256},
	})
	m.appends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_journal_appends_total",
		Help: "Journal appends, by outcome (ok, fenced, conflict, error).",
	}, []string{"outcome"})
	m.fenced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_fencing_rejections_total",
		Help: "Journal writes refused because a holder with a higher fencing token had written (ErrFenced), by operation.",
	}, []string{"op"})
	m.raftApply = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loom_raft_apply_duration_seconds",
		Help:    "Time from submitting a Raft command (journal write, lock, session) to its commit and apply on this node's replica, by operation.",
		Buckets: latencyBuckets,
	}, []string{"op"})
	m.lockAcquire = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_lock_acquisitions_total",
		Help: "Actor lock acquisitions asked of the coordinator, by outcome (ok, held, session_expired, error).",
	}, []string{"outcome"})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_session_renewals_total",
		Help: "Coordinator session renewals sent by this node, by outcome (ok, expired, error).",
	}, []string{"outcome"})
	m.lapses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "loom_session_lapses_total",
		Help: "Times this node's coordinator session may have lapsed (every actor was dropped).",
	})
	m.traceEvicted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loom_trace_store_evicted_spans_total",
		Help: "Spans dropped from the in-memory trace store, by reason (age, capacity).",
	}, []string{"reason"})
	m.reg.MustRegister(m.calls, m.callSeconds, m.hops, m.activations, m.activateSecs, m.deactivation, m.evictions,
		m.appendSeconds, m.appendEntries, m.appends, m.fenced, m.raftApply, m.lockAcquire, m.renewals, m.lapses,
		m.traceEvicted, sourceCollector{m})
	m.msgs = newMessageMetrics(m.reg)
	// Families that exist before the first event, so that a scrape shows
	// them at zero.
	for _, o := range []string{"ok", "fenced", "conflict", "error"} {
		m.appends.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "held", "session_expired", "error"} {
		m.lockAcquire.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "expired", "error"} {
		m.renewals.WithLabelValues(o)
	}
	for _, op := range []string{"append", "snapshot", "truncate"} {
		m.fenced.WithLabelValues(op)
	}
	return m
}

// Registry is the node's registry, for /metrics and for an application's
// own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetActors attaches the runtime (active actors, mailbox depth).
func (m *Metrics) SetActors(a ActorSource) { m.actors.Store(&a) }

// SetRaft attaches the Raft store, a source per Raft group, in group
// order (role, indexes, last contact, group commit, each with its group's
// number as the group label).
func (m *Metrics) SetRaft(groups ...RaftSource) { m.raft.Store(&groups) }

// SetMembers attaches a function counting the gossip members by state.
func (m *Metrics) SetMembers(f func() map[string]int) { m.members.Store(&f) }

// SetTraceStore attaches the trace store (its size).
func (m *Metrics) SetTraceStore(s *TraceStore) {
	m.traces.Store(s)
	if s != nil {
		byAge, byCapacity := m.traceEvicted.WithLabelValues("age"), m.traceEvicted.WithLabelValues("capacity")
		s.onEvict = func(reason string, n int) {
			// One span per call is evicted from a full store: no label
			// lookup for the two known reasons.
			switch reason {
			case "age":
				byAge.Add(float64(n))
			case "capacity":
				byCapacity.Add(float64(n))
			default:
				m.traceEvicted.WithLabelValues(reason).Add(float64(n))
			}
		}
	}
}

// SessionLapsed counts a lapse of the node's coordinator session.
func (m *Metrics) SessionLapsed() { m.lapses.Inc() }

func (m *Metrics) stat(typ, method string) *callStat {
	k := callKey{typ, method}
	if v, ok := m.callStats.Load(k); ok {
		return v.(*callStat)
	}
	st := &callStat{
		ok:       m.calls.WithLabelValues(typ, method, "ok"),
		seconds:  m.callSeconds.WithLabelValues(typ, method),
		turnName: "loom.turn " + typ + "." + method,
	}
	v, _ := m.callStats.LoadOrStore(k, st)
	return v.(*callStat)
}

func (m *Metrics) callDone(st *callStat, typ, method string, start time.Time, err error) {
	now := time.Now()
	d := now.Sub(start)
	st.seconds.Observe(d.Seconds())
	st.rate.add(now, d, err != nil)
	if err == nil {
		st.ok.Inc()
		return
	}
	m.calls.WithLabelValues(typ, method, Outcome(err)).Inc()
}

// deactivationReason maps the runtime's reasons to label values.
func deactivationReason(r string) string {
	switch r {
	case runtime.DeactivationIdle:
		return "idle"
	case runtime.DeactivationEvicted:
		return "evicted"
	case runtime.DeactivationHandedOff:
		return "handed_off"
	case runtime.DeactivationShutdown:
		return "shutdown"
	case runtime.DeactivationRequested:
		return "requested"
	case runtime.DeactivationPanic:
		return "panic"
	case runtime.DeactivationAppend:
		return "append_failed"
	case runtime.DeactivationLapsed:
		return "session_lapsed"
	case runtime.DeactivationDropped:
		return "dropped"
	}
	return "other"
}

// Outcome is the low-cardinality label of a call's result: "ok", or the
// outcome errclass's table gives the error ("method_error", "not_found",
// "bad_request", "unavailable", "fenced", "conflict",
// "deadline_exceeded", "canceled", "panic", "unknown_outcome", "error"),
// the same table the transport and the gateway answer from.
func Outcome(err error) string { return errclass.Of(err).Outcome }

func lockOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, lock.ErrHeld):
		return "held"
	case errors.Is(err, lock.ErrSessionExpired):
		return "session_expired"
	}
	return "error"
}

// sourceCollector reads the attached sources on every scrape.
type sourceCollector struct{ m *Metrics }

var (
	descActive   = prometheus.NewDesc("loom_actors_active", "Actors in memory on this node, by actor type.", []string{"type"}, nil)
	descMailbox  = prometheus.NewDesc("loom_mailbox_depth", "Callers waiting for an actor's running turn to finish, summed by actor type.", []string{"type"}, nil)
	descRaftRole = prometheus.NewDesc("loom_raft_state", "This node's state in a Raft group: 1 for the current one (Leader, Follower, Candidate, Shutdown).", []string{"group", "state"}, nil)
	descLeader   = prometheus.NewDesc("loom_raft_leader_known", "1 if this node knows the Raft group's leader.", []string{"group"}, nil)
	descTerm     = prometheus.NewDesc("loom_raft_term", "The Raft group's current term.", []string{"group"}, nil)
	descCommit   = prometheus.NewDesc("loom_raft_commit_index", "Highest index of the Raft group's log known committed.", []string{"group"}, nil)
	descApplied  = prometheus.NewDesc("loom_raft_applied_index", "Highest index of the Raft group's log applied to this node's state machine.", []string{"group"}, nil)
	descContact  = prometheus.NewDesc("loom_raft_last_contact_seconds", "Seconds since a follower last heard from the Raft group's leader (0 on the leader; absent when never).", []string{"group"}, nil)
	descBatches  = prometheus.NewDesc("loom_raft_batches_total", "Raft entries this node committed as the group's leader (group commit); loom_raft_batch_commands_total / this = mean batch size.", []string{"group"}, nil)
	descBatchCmd = prometheus.NewDesc("loom_raft_batch_commands_total", "Commands in the Raft entries this node committed as the group's leader.", []string{"group"}, nil)
	descMembers  = prometheus.NewDesc("loom_cluster_members", "Gossip members as this node sees them, by state (alive, suspect, dead, left).", []string{"state"}, nil)
	descSpans    = prometheus.NewDesc("loom_trace_store_spans", "Spans held in this node's in-memory trace store.", nil, nil)
	descTraces   = prometheus.NewDesc("loom_trace_store_traces", "Traces with spans in this node's in-memory trace store.", nil, nil)
)

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descMailbox, descRaftRole, descLeader, descTerm, descCommit, descApplied, descContact, descBatches, descBatchCmd, descMembers, descSpans, descTraces} {
		ch <- d
	}
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	if p := m.actors.Load(); p != nil {
		a := *p
		types := make([]string, 0)
		for t := range a.Types() {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(a.Active(t)), t)
			ch <- prometheus.MustNewConstMetric(descMailbox, prometheus.GaugeValue, float64(a.Waiting(t)), t)
		}
	}
	if p := m.raft.Load(); p != nil {
		for i, r := range *p {
			g := strconv.Itoa(i)
			st := r.Stats()
			role := st["state"]
			for _, s := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
				v := 0.0
				if s == role {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(descRaftRole, prometheus.GaugeValue, v, g, s)
			}
			ri := ParseRaftStats(st)
			known := 0.0
			if ri.LeaderKnown {
				known = 1
			}
			ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, known, g)
			ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(ri.Term), g)
			ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(ri.CommitIndex), g)
			ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(ri.AppliedIndex), g)
			if ri.LastContact >= 0 {
				ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, ri.LastContact.Seconds(), g)
			}
			ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, parseFloat(st["batches"]), g)
			ch <- prometheus.MustNewConstMetric(descBatchCmd, prometheus.CounterValue, parseFloat(st["batch_commands"]), g)
		}
	}
	if p := m.members.Load(); p != nil {
		counts := (*p)()
		for _, s := range []string{"alive", "suspect", "dead", "left"} {
			ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(counts[s]), s)
		}
	}
	if s := m.traces.Load(); s != nil {
		spans, traces := s.Size()
		ch <- prometheus.MustNewConstMetric(descSpans, prometheus.GaugeValue, float64(spans))
		ch <- prometheus.MustNewConstMetric(descTraces, prometheus.GaugeValue, float64(traces))
	}
}

// RaftStats is the part of hashicorp/raft's Stats that metrics and health
// use.
type RaftStats struct {
	State        string
	LeaderKnown  bool
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is how long ago a follower last heard from the leader: 0
	// on the leader, -1 when never.
	LastContact time.Duration
}

// ParseRaftStats reads raft.Raft.Stats' strings. A leader is known when
// this node is the leader or has heard from one ("last_contact" is not
// "never"); the node's own Leader() is more precise and health uses it.
func ParseRaftStats(st map[string]string) RaftStats {
	r := RaftStats{
		State:        st["state"],
		Term:         parseUint(st["term"]),
		CommitIndex:  parseUint(st["commit_index"]),
		AppliedIndex: parseUint(st["applied_index"]),
		LastContact:  -1,
	}
	if v, ok := st["fsm_applied_index"]; ok {
		r.AppliedIndex = parseUint(v)
	}
	switch lc := st["last_contact"]; {
	case r.State == "Leader":
		r.LastContact = 0
		r.LeaderKnown = true
	case lc == "" || lc == "never":
	default:
		if d, err := time.ParseDuration(strings.TrimSpace(lc)); err == nil {
			r.LastContact = d
			r.LeaderKnown = true
		} else if lc == "0" {
			r.LastContact = 0
			r.LeaderKnown = true
		}
	}
	return r
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

func parseFloat(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
