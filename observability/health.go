package observability

import (
	"net/http"
	"slices"
	"sort"
	"time"
)

// Status is a node's or a component's health.
type Status string

// The health statuses, from best to worst.
const (
	Healthy   Status = "healthy"
	Degraded  Status = "degraded"
	Unhealthy Status = "unhealthy"
)

func (s Status) rank() int {
	switch s {
	case Healthy:
		return 0
	case Degraded:
		return 1
	}
	return 2
}

// worst returns the worse of two statuses.
func worst(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Health thresholds (see the rules on each component's Check).
const (
	// RaftContactDegraded: a follower that has not heard from the leader
	// for this long is degraded.
	RaftContactDegraded = 5 * time.Second
	// RaftLagDegraded: a node whose state machine is this many entries
	// behind the commit index is degraded (catching up).
	RaftLagDegraded = 1000
)

// Report is what GET /health answers. Components absent on a node (Raft
// and membership on a single node) are omitted.
type Report struct {
	Status     Status     `json:"status"`
	Node       string     `json:"node"`
	Timestamp  time.Time  `json:"timestamp"`
	Components Components `json:"components"`
}

// Components are the parts a node's health is made of.
type Components struct {
	ActorPools *PoolsHealth      `json:"actorPools,omitempty"`
	Locks      *LocksHealth      `json:"locks,omitempty"`
	Raft       *RaftHealth       `json:"raft,omitempty"`
	Membership *MembershipHealth `json:"membership,omitempty"`
	// MessageQueues is absent on a node without a message store.
	MessageQueues *MessageQueuesHealth `json:"messageQueues,omitempty"`
	// Cosmos is present on a node whose coordinator or journal is kept in
	// Azure Cosmos DB.
	Cosmos *CosmosHealth `json:"cosmos,omitempty"`
}

// PoolsHealth reports the actor pools. Degraded when a pool is full
// (active activations at maxSize: new actors of the type evict others or,
// under the reject policy, are refused).
type PoolsHealth struct {
	Status  Status                `json:"status"`
	Reasons []string              `json:"reasons,omitempty"`
	Types   map[string]PoolHealth `json:"types"`
}

// PoolHealth is one actor type's pool.
type PoolHealth struct {
	Active         int    `json:"active"`
	MaxSize        int    `json:"maxSize"`
	Waiting        int    `json:"waiting"` // callers waiting for a turn
	EvictionPolicy string `json:"evictionPolicy"`
}

// Check applies the rule and returns the status.
func (p *PoolsHealth) Check() Status {
	p.Status, p.Reasons = Healthy, nil
	names := make([]string, 0, len(p.Types))
	for n := range p.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := p.Types[n]
		if t.MaxSize > 0 && t.Active >= t.MaxSize {
			p.Status = Degraded
			p.Reasons = append(p.Reasons, "pool "+n+" is full")
		}
	}
	return p.Status
}

// LocksHealth reports the node's coordinator session. Unhealthy when the
// session may have lapsed (or none is open): the node serves no actor.
// Degraded when the last successful renewal was sent more than 1.5 renew
// intervals ago (a renewal is late or failed; the lease is running down).
type LocksHealth struct {
	Status  Status `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Session string `json:"session"`
	Valid   bool   `json:"valid"`
	// LeaseRemainingMs is how long the session is certainly alive without
	// another renewal, by this node's clock.
	LeaseRemainingMs int64 `json:"leaseRemainingMs"`
	// LastRenewalAgoMs is how long ago the last successful renewal (or the
	// creation) was sent; -1 when never.
	LastRenewalAgoMs int64 `json:"lastRenewalAgoMs"`
	TTLMs            int64 `json:"ttlMs"`
	RenewIntervalMs  int64 `json:"renewIntervalMs"`
	// Redis is the coordinator's server, when it is Redis.
	Redis *RedisHealth `json:"redis,omitempty"`
	// Postgres is the coordinator's server, when it is PostgreSQL.
	Postgres *PostgresHealth `json:"postgres,omitempty"`
}

// Check applies the rule and returns the status.
func (l *LocksHealth) Check() Status {
	l.Status, l.Reason = Healthy, ""
	switch {
	case !l.Valid || l.Session == "":
		l.Status, l.Reason = Unhealthy, "the coordinator session may have lapsed"
	case l.LastRenewalAgoMs < 0 || l.LastRenewalAgoMs > l.RenewIntervalMs*3/2:
		l.Status, l.Reason = Degraded, "session renewal is late"
	case l.Redis.reason() != "":
		l.Status, l.Reason = Degraded, l.Redis.reason()
	case l.Postgres.reason() != "":
		l.Status, l.Reason = Degraded, l.Postgres.reason()
	}
	return l.Status
}

// RaftHealth reports this node's view of Raft. Unhealthy when no leader
// is known (no lock, session or journal write can commit). Degraded when a
// follower has not heard from the leader for RaftContactDegraded, or the
// state machine lags the commit index by RaftLagDegraded entries.
type RaftHealth struct {
	Status       Status `json:"status"`
	Reason       string `json:"reason,omitempty"`
	Role         string `json:"role"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	// LastContactMs is how long ago a follower heard from the leader: 0 on
	// the leader, -1 when never.
	LastContactMs int64 `json:"lastContactMs"`
}

// Check applies the rule and returns the status.
func (r *RaftHealth) Check() Status {
	r.Status, r.Reason = Healthy, ""
	switch {
	case r.Leader == "":
		r.Status, r.Reason = Unhealthy, "no Raft leader"
	case r.Role != "Leader" && (r.LastContactMs < 0 || r.LastContactMs > RaftContactDegraded.Milliseconds()):
		r.Status, r.Reason = Degraded, "no recent contact with the Raft leader"
	case r.CommitIndex > r.AppliedIndex && r.CommitIndex-r.AppliedIndex > RaftLagDegraded:
		r.Status, r.Reason = Degraded, "state machine catching up"
	}
	return r.Status
}

// MembershipHealth reports gossip membership as this node sees it.
// Degraded when a member is dead or suspect (it failed; "left" is a
// graceful departure). Losing a quorum shows in Raft.
type MembershipHealth struct {
	Status  Status         `json:"status"`
	Reason  string         `json:"reason,omitempty"`
	Members map[string]int `json:"members"` // by state
	Failed  []string       `json:"failed,omitempty"`
}

// Check applies the rule and returns the status.
func (m *MembershipHealth) Check() Status {
	m.Status, m.Reason = Healthy, ""
	if len(m.Failed) > 0 {
		slices.Sort(m.Failed)
		m.Status, m.Reason = Degraded, "members failed"
	}
	return m.Status
}

// Evaluate runs every present component's rule and sets the overall
// status: the worst of them.
func (r *Report) Evaluate() Status {
	s := Healthy
	if c := r.Components.ActorPools; c != nil {
		s = worst(s, c.Check())
	}
	if c := r.Components.Locks; c != nil {
		s = worst(s, c.Check())
	}
	if c := r.Components.Raft; c != nil {
		s = worst(s, c.Check())
	}
	if c := r.Components.Membership; c != nil {
		s = worst(s, c.Check())
	}
	if c := r.Components.MessageQueues; c != nil {
		s = worst(s, c.Check())
	}
	if c := r.Components.Cosmos; c != nil {
		s = worst(s, c.Check())
	}
	r.Status = s
	return s
}

// HTTPStatus is 503 for an unhealthy report, else 200.
func (r *Report) HTTPStatus() int {
	if r.Status == Unhealthy {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// HealthHandlers serve GET /health, /health/live and /health/ready from a
// function building the node's report.
//
//   - /health: the Report as JSON; 503 when unhealthy.
//   - /health/live: 200 {"status":"alive"} whenever the node's HTTP server
//     answers (restart only what cannot answer).
//   - /health/ready: 200 when the node serves calls (not unhealthy), else
//     503; the body is the Report.
func HealthHandlers(report func() Report) (health, live, ready http.Handler) {
	health = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		writeJSON(w, r.HTTPStatus(), r)
	})
	live = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	ready = health
	return health, live, ready
}
