package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/ui"
)

// The dashboard (package ui, served at /ui) and the JSON it reads. Every
// answer is bounded by the cluster's size and its registered types and
// methods, never by its number of actors: counts per node and type, one
// actor at a time.
//
//	GET /v1/admin/nodes                   every member, with each alive one's NodeReport (admin)
//	GET /v1/admin/actors/{type}/{id}      one actor: owner, activation, journal length, latest entries (admin)
//	GET /v1/admin/queues                  message queues per type (admin)
//	GET /v1/stats/calls                   calls/s, errors, p99 per type and method, last 5 min (metrics)
//
// The cluster-wide ones ask every alive peer for its part (the same path
// with scope=local, over HTTP, as /traces does), passing the caller's
// Authorization header on so that each peer checks the caller's token. A
// peer that does not answer is reported, not fatal.

func (n *Node) dashboardRoutes(mux *http.ServeMux) {
	h := ui.Handler()
	mux.Handle("GET /ui/", http.StripPrefix("/ui", h))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.HandleFunc("GET /v1/admin/nodes", n.serveNodes)
	mux.HandleFunc("GET /v1/admin/actors/{type}/{id}", n.serveActor)
	mux.HandleFunc("GET /v1/admin/queues", n.serveQueues)
	mux.HandleFunc("GET /v1/stats/calls", n.serveCallStats)
}

// NodeReport is one node's own view of itself: what the dashboard's
// member table shows beside the gossip state.
type NodeReport struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"` // the node's clock when it answered
	// Raft is this node's Raft server (absent without Raft).
	Raft *RaftReport `json:"raft,omitempty"`
	// Session is the node's coordinator session (absent before Start).
	Session *SessionReport `json:"session,omitempty"`
	// Actors are the activations in memory per type; Waiting the
	// callers waiting for a turn, all types together.
	Actors  map[string]int `json:"actors"`
	Waiting int            `json:"waiting"`
}

// RaftReport is a node's Raft role and progress.
type RaftReport struct {
	Role          string `json:"role"`
	Leader        string `json:"leader,omitempty"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commitIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	LastContactMs int64  `json:"lastContactMs"` // -1: never
}

// SessionReport is a node's coordinator session and its lease.
type SessionReport struct {
	ID               string `json:"id"`
	Valid            bool   `json:"valid"`
	LeaseRemainingMs int64  `json:"leaseRemainingMs"`
	TTLMs            int64  `json:"ttlMs"`
}

// Report is this node's NodeReport.
func (n *Node) Report() NodeReport {
	r := NodeReport{Node: n.cfg.Node.ID, Version: Version, Time: time.Now().UTC(), Actors: map[string]int{}}
	if rt := n.runtime(); rt != nil {
		for t := range rt.Types() {
			r.Actors[t] = rt.Active(t)
			r.Waiting += rt.Waiting(t)
		}
	}
	if m := n.mesh; m != nil && m.store != nil {
		st := observability.ParseRaftStats(m.store.Stats())
		r.Raft = &RaftReport{
			Role: m.store.State().String(), Leader: m.leaderNode(m.leader()), Term: st.Term,
			CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContactMs: st.LastContact.Milliseconds(),
		}
		if st.LastContact < 0 {
			r.Raft.LastContactMs = -1
		}
	}
	if k := n.keeper; k != nil {
		r.Session = &SessionReport{
			ID: string(k.Session()), Valid: k.Valid(),
			LeaseRemainingMs: max(0, k.Lease().Remaining(time.Now()).Milliseconds()),
			TTLMs:            keeperConfig(n.cfg).TTL.Milliseconds(),
		}
	}
	return r
}

// NodesView is what GET /v1/admin/nodes answers.
type NodesView struct {
	Node   string    `json:"node"` // the node that answered
	Mode   string    `json:"mode"` // "single" or "cluster"
	Leader string    `json:"leader,omitempty"`
	Ring   *RingView `json:"ring,omitempty"`
	// RaftGroups are the Raft groups as this node sees them (see
	// RaftInfo.Groups); none without Raft.
	RaftGroups []RaftGroupInfo `json:"raftGroups,omitempty"`
	// Members are every gossip member (any state), by id; an alive one
	// has its Report, or the Error asking it for one gave.
	Members []MemberView `json:"members"`
	// Types are the registered actor types, sorted.
	Types []string `json:"types"`
}

// RingView is the placement ring: its members, version and how many of
// its partitions each member owns.
type RingView struct {
	Members    []string       `json:"members"`
	Version    uint64         `json:"version"`
	Partitions int            `json:"partitions"`
	Loads      map[string]int `json:"loads"`
}

// MemberView is one member in NodesView.
type MemberView struct {
	ID     string      `json:"id"`
	State  string      `json:"state"`
	Since  time.Time   `json:"since,omitzero"`
	HTTP   string      `json:"http,omitempty"`
	Report *NodeReport `json:"report,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// Nodes gathers NodesView: this node's report and every alive peer's
// (asked with auth, an Authorization header value, or "").
func (n *Node) Nodes(ctx context.Context, auth string) NodesView {
	v := NodesView{Node: n.cfg.Node.ID, Mode: "single", Types: []string{}}
	if rt := n.runtime(); rt != nil {
		for t := range rt.Types() {
			v.Types = append(v.Types, t)
		}
		slices.Sort(v.Types)
	}
	self := n.Report()
	m := n.mesh
	if m == nil {
		v.Members = []MemberView{{ID: n.cfg.Node.ID, State: "alive", HTTP: n.HTTPAddr(), Report: &self}}
		return v
	}
	v.Mode = "cluster"
	v.Leader = m.leaderNode(m.leader())
	if m.groups != nil {
		ri := n.raftInfo()
		n.groupsFromLeaders(context.WithValue(ctx, peerAuthKey{}, auth), ri)
		v.RaftGroups = ri.Groups
	}
	r := m.table.Ring()
	v.Ring = &RingView{Members: r.Members(), Version: r.Version(), Partitions: r.PartitionCount(), Loads: r.Loads()}
	answers := n.askPeers(ctx, auth, "/v1/admin/nodes", nil)
	for _, mem := range m.members.Members() {
		mv := MemberView{ID: mem.NodeID, State: mem.State.String(), Since: mem.Since.UTC(), HTTP: mem.Meta.HTTPAddr}
		if mem.NodeID == n.cfg.Node.ID {
			mv.Report = &self
		} else if a, ok := answers[mem.NodeID]; ok {
			var rep NodeReport
			if a.err == nil {
				a.err = json.Unmarshal(a.body, &rep)
			}
			if a.err != nil {
				mv.Error = a.err.Error()
			} else {
				mv.Report = &rep
			}
		}
		v.Members = append(v.Members, mv)
	}
	slices.SortFunc(v.Members, func(a, b MemberView) int { return strings.Compare(a.ID, b.ID) })
	return v
}

func (n *Node) serveNodes(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("scope") == "local" {
		writeJSON(w, n.Report())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	writeJSON(w, n.Nodes(ctx, r.Header.Get("Authorization")))
}

// ActorView is what GET /v1/admin/actors/{type}/{id} answers: where an
// actor is and what its journal holds last.
type ActorView struct {
	Actor string `json:"actor"` // "type/id"
	// Node is the node that answered: the owner when the actor is active
	// and its owner answered, else the node asked.
	Node string `json:"node"`
	// Placement is the node the ring places the actor on (a hint; the
	// lock holder is the truth); empty for a single node.
	Placement string `json:"placement,omitempty"`
	// Owner is the node whose session holds the actor's lock, and Token
	// that grant's fencing token; empty when no node holds it.
	Owner string `json:"owner,omitempty"`
	Token uint64 `json:"token,omitempty"`
	// Active: loaded in memory on Node; ActivatedAt and LastUsedAt on
	// that node's clock; Waiting the callers waiting for its turn.
	Active      bool       `json:"active"`
	ActivatedAt *time.Time `json:"activatedAt,omitempty"`
	LastUsedAt  *time.Time `json:"lastUsedAt,omitempty"`
	Waiting     int        `json:"waiting"`
	// Kept: not active, but Node keeps its lock after evicting it for
	// room, and activates it again without a new grant.
	Kept bool `json:"kept,omitempty"`
	// JournalLength is the journal's last seq (entries ever appended,
	// those a snapshot truncated included); TailToken the highest token
	// that has written.
	JournalLength uint64        `json:"journalLength"`
	TailToken     uint64        `json:"tailToken,omitempty"`
	Snapshot      *SnapshotInfo `json:"snapshot,omitempty"`
	// Entries are the latest entries, newest first (at most entries=N,
	// default 20, at most 200).
	Entries []EntryView `json:"entries"`
	// Note says why the answer is not the owner's, when it is not.
	Note string `json:"note,omitempty"`
}

// EntryView is one journal entry without its payload (its size only).
type EntryView struct {
	Seq            uint64    `json:"seq"`
	Kind           string    `json:"kind"`
	Method         string    `json:"method,omitempty"`
	Time           time.Time `json:"time"`
	CorrelationID  string    `json:"correlationId,omitempty"`
	TraceID        string    `json:"traceId,omitempty"`
	IdempotencyKey string    `json:"idempotencyKey,omitempty"`
	Token          uint64    `json:"token"`
	Bytes          int       `json:"bytes"`
}

// Actor bounds.
const (
	defaultActorEntries = 20
	maxActorEntries     = 200
)

// LookupActor describes one actor as this node sees it (see ActorView),
// with its latest entries (at most entries of them). It reads the journal
// as this node has it: with Raft, this node's replica, which holds every
// write this node made (the owner's view of its own actor is whole) and
// may lag the others' by the time their commits take to apply here. It
// writes nothing (the dashboard asks every 2 s).
func (n *Node) LookupActor(ctx context.Context, actorType, id string, entries int) (ActorView, error) {
	key := actorType + "/" + id
	v := ActorView{Actor: key, Node: n.cfg.Node.ID, Entries: []EntryView{}}
	rt := n.runtime()
	if rt == nil || n.journal == nil || n.coord == nil {
		return v, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	if _, ok := rt.Types()[actorType]; !ok {
		return v, fmt.Errorf("%w: %q", runtime.ErrUnknownType, actorType)
	}
	if id == "" {
		return v, fmt.Errorf("%w: empty actor id", runtime.ErrInvalidID)
	}
	if n.mesh != nil {
		v.Placement, _, _ = n.mesh.Owner(actorType, id)
	}
	tail, err := n.journal.Tail(ctx, key)
	if err != nil {
		return v, err
	}
	v.JournalLength, v.TailToken = tail.Seq, tail.Token
	from := uint64(1)
	snap, ok, err := n.journal.LoadSnapshot(ctx, key)
	if err != nil {
		return v, err
	}
	if ok {
		v.Snapshot = &SnapshotInfo{Seq: snap.Seq, Token: snap.Token, Bytes: len(snap.Data)}
		from = snap.Seq + 1
	}
	if entries <= 0 {
		entries = defaultActorEntries
	}
	entries = min(entries, maxActorEntries)
	if tail.Seq >= uint64(entries) {
		from = max(from, tail.Seq-uint64(entries)+1)
	}
	if tail.Seq >= from {
		es, err := n.journal.Read(ctx, key, from)
		if err != nil {
			return v, err
		}
		for i := len(es) - 1; i >= 0 && len(v.Entries) < entries; i-- {
			e := es[i]
			v.Entries = append(v.Entries, EntryView{
				Seq: e.Seq, Kind: e.Kind.String(), Method: e.Method, Time: e.Time, CorrelationID: e.CorrelationID,
				TraceID: e.TraceID, IdempotencyKey: e.IdempotencyKey, Token: e.Token, Bytes: len(e.Payload),
			})
		}
	}
	info, held, err := n.coord.Holder(ctx, key)
	if err != nil {
		return v, err
	}
	if held {
		v.Owner, v.Token = info.Owner, info.Token
	}
	if a, ok := rt.Activation(actorType, id); ok {
		v.Active = true
		at, used := a.ActivatedAt.UTC(), a.LastUsed.UTC()
		v.ActivatedAt, v.LastUsedAt, v.Waiting = &at, &used, a.Waiting
	} else {
		v.Kept = rt.KeepsLock(actorType, id)
	}
	return v, nil
}

func (n *Node) serveActor(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	entries := defaultActorEntries
	if s := r.URL.Query().Get("entries"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k <= 0 {
			gateway.WriteError(w, fmt.Errorf("%w: entries: %q is not a positive integer", runtime.ErrInvalidArgument, s))
			return
		}
		entries = k
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v, err := n.LookupActor(ctx, typ, id, entries)
	if err != nil {
		gateway.WriteError(w, err)
		return
	}
	if r.URL.Query().Get("scope") != "local" && v.Owner != "" && v.Owner != n.cfg.Node.ID {
		// The owner knows the activation: ask it for the whole view.
		q := url.Values{"entries": {strconv.Itoa(entries)}}
		path := "/v1/admin/actors/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
		a, ok := n.askPeers(ctx, r.Header.Get("Authorization"), path, q, v.Owner)[v.Owner]
		var ov ActorView
		switch {
		case !ok:
			v.Note = "the owner " + v.Owner + " is not an alive member: its activation is not known here"
		case a.err != nil:
			v.Note = "asking the owner " + v.Owner + ": " + a.err.Error()
		default:
			if err := json.Unmarshal(a.body, &ov); err != nil {
				v.Note = "the owner " + v.Owner + "'s answer: " + err.Error()
			} else {
				v = ov
			}
		}
	}
	writeJSON(w, v)
}

// QueuesView is what GET /v1/admin/queues answers: the message queues
// per actor type (the store every node shares) and this node's
// deliveries in progress.
type QueuesView struct {
	Node     string      `json:"node"`
	Queues   []QueueView `json:"queues"`
	InFlight int         `json:"inFlight"`
}

// QueueView is the queues of one actor type.
type QueueView struct {
	Type      string     `json:"type"`
	Pending   int        `json:"pending"`
	Scheduled int        `json:"scheduled"`
	Dead      int        `json:"dead"`
	Reminders int        `json:"reminders"`
	Oldest    *time.Time `json:"oldest,omitempty"`
	OldestAge float64    `json:"oldestAgeSeconds"`
}

func (n *Node) serveQueues(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	stats, err := n.MessageQueues(ctx)
	if err != nil {
		gateway.WriteError(w, err)
		return
	}
	now := time.Now()
	v := QueuesView{Node: n.cfg.Node.ID, Queues: []QueueView{}, InFlight: n.inFlight()}
	for _, s := range stats {
		q := QueueView{Type: s.Type, Pending: s.Pending, Scheduled: s.Scheduled, Dead: s.Dead, Reminders: s.Reminders}
		if !s.Oldest.IsZero() {
			o := s.Oldest.UTC()
			q.Oldest, q.OldestAge = &o, max(0, now.Sub(s.Oldest).Seconds())
		}
		v.Queues = append(v.Queues, q)
	}
	slices.SortFunc(v.Queues, func(a, b QueueView) int { return strings.Compare(a.Type, b.Type) })
	writeJSON(w, v)
}

// CallStatsView is what GET /v1/stats/calls answers: the calls that
// entered the cluster at any node (each is counted once, where it
// entered), per type and method, in RateBucket buckets over the last
// five minutes, oldest first; the last bucket is the current one,
// CurrentSeconds long so far.
type CallStatsView struct {
	Node           string           `json:"node"`
	First          time.Time        `json:"first"` // the start of the first bucket
	BucketSeconds  int              `json:"bucketSeconds"`
	CurrentSeconds float64          `json:"currentSeconds"`
	Series         []CallSeriesView `json:"series"`
	// Nodes is how each node answered ("ok" or the error).
	Nodes map[string]string `json:"nodes"`
}

// CallSeriesView is one type and method's recent calls.
type CallSeriesView struct {
	Type   string   `json:"type"`
	Method string   `json:"method"`
	Calls  []uint64 `json:"calls"`
	Errors []uint64 `json:"errors"`
	// P99Ms is each bucket's estimated 99th percentile latency in ms, -1
	// for a bucket without calls.
	P99Ms []float64 `json:"p99Ms"`
	// Over the last minute (the current bucket and the five before it):
	// calls per second, errors, and the p99 (-1: no calls).
	RatePerSec float64 `json:"ratePerSec"`
	ErrorsMin  uint64  `json:"errorsLastMinute"`
	P99MsMin   float64 `json:"p99MsLastMinute"`
	// Over the whole window: calls, errors, p99.
	Total       uint64  `json:"total"`
	TotalErrors uint64  `json:"totalErrors"`
	P99MsTotal  float64 `json:"p99Ms5m"`
}

// CallStats gathers the recent call rates of this node and every alive
// peer (asked with auth), merged.
func (n *Node) CallStats(ctx context.Context, auth string) CallStatsView {
	now := time.Now()
	local := n.obs.metrics.CallRates(now)
	rates := []observability.CallRates{local}
	status := map[string]string{n.cfg.Node.ID: "ok"}
	for id, a := range n.askPeers(ctx, auth, "/v1/stats/calls", nil) {
		var cr observability.CallRates
		if a.err == nil {
			a.err = json.Unmarshal(a.body, &cr)
		}
		if a.err != nil {
			status[id] = a.err.Error()
			continue
		}
		status[id] = "ok"
		rates = append(rates, cr)
	}
	merged := observability.MergeCallRates(rates...)
	bucket := observability.RateBucket
	first := time.Unix(0, merged.First*int64(bucket)).UTC()
	v := CallStatsView{
		Node: n.cfg.Node.ID, First: first, BucketSeconds: merged.BucketSeconds, Nodes: status,
		CurrentSeconds: now.Sub(first.Add(time.Duration(observability.RateBuckets-1) * bucket)).Seconds(),
		Series:         []CallSeriesView{},
	}
	const lastMinute = 6
	for _, s := range merged.Series {
		sv := CallSeriesView{Type: s.Type, Method: s.Method, Calls: s.Calls, Errors: s.Errors, P99Ms: make([]float64, len(s.Calls))}
		var minuteCalls uint64
		for i, c := range s.Calls {
			sv.P99Ms[i] = ms(observability.Quantile(0.99, s.Latency[i]))
			sv.Total += c
			sv.TotalErrors += s.Errors[i]
			if i >= len(s.Calls)-lastMinute {
				minuteCalls += c
				sv.ErrorsMin += s.Errors[i]
			}
		}
		secs := float64((lastMinute-1)*merged.BucketSeconds) + max(v.CurrentSeconds, 1)
		sv.RatePerSec = float64(minuteCalls) / secs
		sv.P99MsMin = ms(observability.Quantile(0.99, s.Latency[len(s.Latency)-lastMinute:]...))
		sv.P99MsTotal = ms(observability.Quantile(0.99, s.Latency...))
		v.Series = append(v.Series, sv)
	}
	return v
}

// ms converts a quantile in seconds to ms (to the µs), keeping -1 (none).
func ms(s float64) float64 {
	if s < 0 {
		return -1
	}
	return math.Round(s*1e6) / 1e3
}

func (n *Node) serveCallStats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("scope") == "local" {
		writeJSON(w, n.obs.metrics.CallRates(time.Now()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	writeJSON(w, n.CallStats(ctx, r.Header.Get("Authorization")))
}

// peerAnswer is one peer's answer to askPeers: its body, or why not.
type peerAnswer struct {
	body []byte
	err  error
}

// peerHTTP asks peers without TLS.
var peerHTTP = &http.Client{Timeout: 5 * time.Second}

// maxPeerAnswer bounds what askPeers reads from one peer.
const maxPeerAnswer = 4 << 20

// askPeers GETs path?scope=local (plus query) from the alive peers, or
// only those named in only, concurrently, with auth as their
// Authorization header; it returns each one's answer by node id.
func (n *Node) askPeers(ctx context.Context, auth, path string, query url.Values, only ...string) map[string]peerAnswer {
	out := map[string]peerAnswer{}
	var peers []observability.Peer
	for _, p := range n.tracePeers() {
		if len(only) == 0 || slices.Contains(only, p.ID) {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return out
	}
	client, scheme := n.peerClient()
	q := url.Values{}
	for k, vs := range query {
		q[k] = vs
	}
	q.Set("scope", "local")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			body, err := getPeer(ctx, client, scheme+"://"+p.HTTPAddr+path+"?"+q.Encode(), auth)
			mu.Lock()
			out[p.ID] = peerAnswer{body, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// peerClient is the HTTP client and scheme for asking peers: the trace
// query's (TLS when the node serves TLS).
func (n *Node) peerClient() (*http.Client, string) {
	client, scheme := peerHTTP, "http"
	if t := n.obs.traces; t != nil {
		if t.Client != nil {
			client = t.Client
		}
		if t.Scheme != "" {
			scheme = t.Scheme
		}
	}
	return client, scheme
}

func getPeer(ctx context.Context, client *http.Client, u, auth string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerAnswer+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxPeerAnswer {
		return nil, errors.New("answer over 4 MiB")
	}
	if resp.StatusCode != http.StatusOK {
		var eb gateway.ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, eb.Error.Message)
		}
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return body, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
