package observability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultLimit is the most traces a query returns when it sets no limit.
const DefaultLimit = 100

// Query selects traces. Zero fields do not filter; see TraceStore.Query
// for how a trace matches.
type Query struct {
	CorrelationID string
	TraceIDs      []string // hex
	Actor         string   // "type/id", or "type"
	Since, Until  time.Time
	Limit         int
}

func (q Query) limit() int {
	if q.Limit <= 0 {
		return DefaultLimit
	}
	return q.Limit
}

// Span is one span as /traces answers it.
type Span struct {
	TraceID       string            `json:"traceId"`
	SpanID        string            `json:"spanId"`
	ParentSpanID  string            `json:"parentSpanId,omitempty"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Node          string            `json:"node"`
	Actor         string            `json:"actor,omitempty"`
	Method        string            `json:"method,omitempty"`
	CorrelationID string            `json:"correlationId,omitempty"`
	Start         time.Time         `json:"start"`
	End           time.Time         `json:"end"`
	DurationMs    float64           `json:"durationMs"`
	Status        string            `json:"status"` // unset, ok, error
	Error         string            `json:"error,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	// Children are the ids of the spans (in this result) whose parent this
	// is, in start order.
	Children []string `json:"children,omitempty"`
}

// Trace is the spans of one trace, sorted by start time, linked by
// ParentSpanID and Children.
type Trace struct {
	TraceID       string `json:"traceId"`
	CorrelationID string `json:"correlationId,omitempty"`
	// Roots are the spans whose parent is not in the trace: the root span,
	// or, for a trace that began outside Loom, the first Loom spans.
	Roots      []string  `json:"roots"`
	Nodes      []string  `json:"nodes"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Spans      []Span    `json:"spans"`
}

// Result is what /traces answers: the matching traces, most recent first,
// and, for a cluster-wide query, how each node answered ("ok", "tracing
// disabled", or the error).
type Result struct {
	Traces []Trace           `json:"traces"`
	Nodes  map[string]string `json:"nodes,omitempty"`
}

// Assemble groups spans into traces (dropping duplicates), links parents
// and children, and orders the traces most recent first, at most limit of
// them (0: DefaultLimit).
func Assemble(spans []Span, limit int) []Trace {
	byTrace := map[string][]Span{}
	seen := map[string]bool{}
	for _, sp := range spans {
		k := sp.TraceID + "/" + sp.SpanID
		if seen[k] {
			continue
		}
		seen[k] = true
		sp.Children = nil
		byTrace[sp.TraceID] = append(byTrace[sp.TraceID], sp)
	}
	traces := make([]Trace, 0, len(byTrace))
	for tid, ss := range byTrace {
		slices.SortStableFunc(ss, func(a, b Span) int { return a.Start.Compare(b.Start) })
		idx := map[string]int{}
		for i, sp := range ss {
			idx[sp.SpanID] = i
		}
		t := Trace{TraceID: tid, Spans: ss, Roots: []string{}, Nodes: []string{}}
		end := ss[0].End
		for i := range ss {
			sp := &ss[i]
			if p, ok := idx[sp.ParentSpanID]; ok && sp.ParentSpanID != "" {
				ss[p].Children = append(ss[p].Children, sp.SpanID)
			} else {
				t.Roots = append(t.Roots, sp.SpanID)
			}
			if t.CorrelationID == "" {
				t.CorrelationID = sp.CorrelationID
			}
			if !slices.Contains(t.Nodes, sp.Node) {
				t.Nodes = append(t.Nodes, sp.Node)
			}
			if sp.End.After(end) {
				end = sp.End
			}
		}
		slices.Sort(t.Nodes)
		t.Start = ss[0].Start
		t.DurationMs = float64(end.Sub(t.Start).Microseconds()) / 1000
		traces = append(traces, t)
	}
	slices.SortFunc(traces, func(a, b Trace) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(a.TraceID, b.TraceID)
	})
	if limit <= 0 {
		limit = DefaultLimit
	}
	if len(traces) > limit {
		traces = traces[:limit]
	}
	return traces
}

// Values encodes q as /traces query parameters.
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.CorrelationID != "" {
		v.Set("correlationId", q.CorrelationID)
	}
	if len(q.TraceIDs) > 0 {
		v.Set("traceId", strings.Join(q.TraceIDs, ","))
	}
	if q.Actor != "" {
		v.Set("actor", q.Actor)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ParseQuery reads /traces query parameters: correlationId, traceId (one
// or more, comma-separated), actor, since and until (RFC 3339 times, or
// Go durations meaning that long before now: since=15m), limit.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{CorrelationID: v.Get("correlationId"), Actor: v.Get("actor")}
	var errs []error
	if s := v.Get("traceId"); s != "" {
		for _, id := range strings.Split(s, ",") {
			id = strings.TrimSpace(id)
			if len(id) != 32 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
				errs = append(errs, fmt.Errorf("traceId: %q is not 32 hex digits", id))
				continue
			}
			q.TraceIDs = append(q.TraceIDs, strings.ToLower(id))
		}
	}
	parseTime := func(key string) time.Time {
		s := v.Get(key)
		if s == "" {
			return time.Time{}
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return now.Add(-d)
		}
		errs = append(errs, fmt.Errorf("%s: %q is neither an RFC 3339 time nor a duration", key, s))
		return time.Time{}
	}
	q.Since, q.Until = parseTime("since"), parseTime("until")
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("limit: %q is not a positive integer", s))
		}
		q.Limit = n
	}
	return q, errors.Join(errs...)
}

// Peer is another node to ask for its traces.
type Peer struct {
	ID       string
	HTTPAddr string // host:port
}

// Traces answers trace queries for a node: from its own store and,
// cluster-wide, from its peers over HTTP (GET /traces?scope=local on each,
// concurrently), merged into whole traces.
type Traces struct {
	// NodeID is this node.
	NodeID string
	// Store is this node's trace store; nil when tracing is off here.
	Store *TraceStore
	// Peers lists the other nodes to ask (the alive members); nil for a
	// single node.
	Peers func() []Peer
	// Client makes the requests to peers; nil uses a client with a 5 s
	// timeout.
	Client *http.Client
	// Scheme is the peers' scheme: "https" when they serve TLS; "" means
	// "http".
	Scheme string
}

func (t *Traces) local(q Query) ([]Span, string) {
	if t.Store == nil {
		return nil, "tracing disabled"
	}
	return t.Store.Query(q), "ok"
}

// Query answers q cluster-wide: this node's store and every peer's. A
// trace selected on some node is completed with its spans from every
// node (a second round asks for those trace ids), so its parent/child
// links are whole. A peer that does not answer is reported in
// Result.Nodes; its spans are missing.
func (t *Traces) Query(ctx context.Context, q Query) Result {
	res := Result{Nodes: map[string]string{}}
	spans, status := t.local(q)
	res.Nodes[t.NodeID] = status
	var peers []Peer
	if t.Peers != nil {
		for _, p := range t.Peers() {
			if p.ID != t.NodeID && p.HTTPAddr != "" {
				peers = append(peers, p)
			}
		}
	}
	spans = append(spans, t.ask(ctx, peers, q, res.Nodes)...)
	if len(peers) > 0 && len(q.TraceIDs) == 0 {
		// Complete the selected traces: a node may hold spans of a trace
		// without holding the span that matched.
		selected := Assemble(spans, q.limit())
		ids := make([]string, len(selected))
		for i, tr := range selected {
			ids[i] = tr.TraceID
		}
		if len(ids) > 0 {
			more := Query{TraceIDs: ids, Limit: len(ids)}
			if s, _ := t.local(more); s != nil {
				spans = append(spans, s...)
			}
			spans = append(spans, t.ask(ctx, peers, more, nil)...)
		}
	}
	res.Traces = Assemble(spans, q.limit())
	return res
}

// ask queries peers concurrently; each one's status goes to status (if
// not nil).
func (t *Traces) ask(ctx context.Context, peers []Peer, q Query, status map[string]string) []Span {
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	var mu sync.Mutex
	var out []Span
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			scheme := t.Scheme
			if scheme == "" {
				scheme = "http"
			}
			r, err := FetchTraces(ctx, client, scheme+"://"+p.HTTPAddr, q, true)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if status != nil {
					status[p.ID] = err.Error()
				}
				return
			}
			if status != nil {
				st := r.Nodes[p.ID]
				if st == "" {
					st = "ok"
				}
				status[p.ID] = st
			}
			for _, tr := range r.Traces {
				out = append(out, tr.Spans...)
			}
		})
	}
	wg.Wait()
	return out
}

// ServeHTTP answers GET /traces (see ParseQuery); with scope=local only
// this node's spans. The request's Authorization header goes along to
// the peers it asks.
func (t *Traces) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_argument", "message": err.Error()}})
		return
	}
	var res Result
	if r.URL.Query().Get("scope") == "local" {
		spans, status := t.local(q)
		res = Result{Traces: Assemble(spans, q.limit()), Nodes: map[string]string{t.NodeID: status}}
	} else {
		// The peers check the caller's bearer token as this node did.
		res = t.Query(WithAuthorization(r.Context(), r.Header.Get("Authorization")), q)
	}
	writeJSON(w, http.StatusOK, res)
}

// FetchTraces asks the node at baseURL ("http://host:port") for traces:
// cluster-wide, or only its own spans when local is true. It sends the
// Authorization header ctx carries (WithAuthorization), if any.
func FetchTraces(ctx context.Context, client *http.Client, baseURL string, q Query, local bool) (Result, error) {
	v := q.Values()
	if local {
		v.Set("scope", "local")
	}
	u := strings.TrimRight(baseURL, "/") + "/traces"
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{}, err
	}
	if a := Authorization(ctx); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return Result{}, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	var res Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return Result{}, fmt.Errorf("%s: decoding the answer: %w", u, err)
	}
	return res, nil
}

type authorizationKey struct{}

// WithAuthorization returns ctx carrying an HTTP Authorization header
// value ("Bearer …") for the requests a node makes to its peers on behalf
// of a caller, so that they check the caller's token as the first node
// did. An empty value returns ctx.
func WithAuthorization(ctx context.Context, value string) context.Context {
	if value == "" {
		return ctx
	}
	return context.WithValue(ctx, authorizationKey{}, value)
}

// Authorization is the value WithAuthorization put in ctx, or "".
func Authorization(ctx context.Context) string {
	v, _ := ctx.Value(authorizationKey{}).(string)
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteTree prints traces as indented trees, one line per span: node,
// span name, actor and method when known, duration, and the error of a
// failed span.
//
//	trace 4bf92f3577b34da6a3ce929d0e0e4736  correlation 3f2a…  12.41 ms  nodes n1,n2,n3
//	└─ n1  POST /v1/actors/{type}/{id}/{method}  relay/r1 call  12.41 ms
//	   └─ n1  loom.Invoke relay.call  11.90 ms
//	      └─ n2  loom.turn relay.call  relay/r1 call  10.02 ms
func WriteTree(w io.Writer, traces []Trace) error {
	ew := &errWriter{w: w}
	for i, t := range traces {
		if i > 0 {
			ew.printf("\n")
		}
		ew.printf("trace %s  correlation %s  %.2f ms  nodes %s\n", t.TraceID, orDash(t.CorrelationID), t.DurationMs, strings.Join(t.Nodes, ","))
		byID := map[string]*Span{}
		for j := range t.Spans {
			byID[t.Spans[j].SpanID] = &t.Spans[j]
		}
		var walk func(id, prefix string, last bool)
		walk = func(id, prefix string, last bool) {
			sp := byID[id]
			if sp == nil {
				return
			}
			branch, next := "├─ ", "│  "
			if last {
				branch, next = "└─ ", "   "
			}
			line := sp.Node + "  " + sp.Name
			if sp.Actor != "" {
				line += "  " + sp.Actor
				if sp.Method != "" {
					line += " " + sp.Method
				}
			}
			line += fmt.Sprintf("  %.2f ms", sp.DurationMs)
			if sp.Status == "error" {
				line += "  ERROR " + sp.Error
			}
			ew.printf("%s%s%s\n", prefix, branch, line)
			for k, c := range sp.Children {
				walk(c, prefix+next, k == len(sp.Children)-1)
			}
		}
		for k, r := range t.Roots {
			walk(r, "", k == len(t.Roots)-1)
		}
	}
	return ew.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
