package observability

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// StoreOptions configure a TraceStore.
type StoreOptions struct {
	// NodeID is the node the store's spans are reported as recorded on.
	NodeID string
	// MaxAge: a span is dropped once it ended longer ago than this
	// (tracing.maxTraceAge). Must be > 0.
	MaxAge time.Duration
	// MaxSpans: past this many spans the oldest are dropped
	// (tracing.maxSpans). Must be > 0.
	MaxSpans int
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
}

// TraceStore keeps a node's recent spans in memory. It is an
// OpenTelemetry SpanProcessor: register it on a TracerProvider and every
// span that ends is kept, in the order spans end, until it is older than
// MaxAge or MaxSpans newer spans have ended. Spans are indexed by trace
// id and correlation id; Query answers with whole traces.
//
// OnEnd runs on the goroutine ending the span and takes one mutex for a
// few map operations. Every method is safe for concurrent use; reads drop
// the spans that have aged out first, so an aged-out span is never
// returned even on an idle node.
type TraceStore struct {
	node    string
	maxAge  time.Duration
	now     func() time.Time
	onEvict func(reason string, n int) // set before use by Metrics.SetTraceStore

	mu      sync.Mutex
	ring    []storedSpan // capacity MaxSpans; oldest at head
	head, n int
	seq     uint64 // sequence number of the next span stored
	traces  map[trace.TraceID]*traceEntry
	byCorr  map[string][]trace.TraceID
}

type storedSpan struct {
	seq  uint64
	at   time.Time // when it was stored (≈ its end)
	span sdktrace.ReadOnlySpan
	cid  string
}

type traceEntry struct {
	seqs []uint64 // of its spans in the ring, ascending
	cids []string // correlation ids seen on its spans
}

var _ sdktrace.SpanProcessor = (*TraceStore)(nil)

// NewTraceStore builds an empty store.
func NewTraceStore(o StoreOptions) *TraceStore {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSpans <= 0 {
		o.MaxSpans = 10000
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
	return &TraceStore{
		node: o.NodeID, maxAge: o.MaxAge, now: o.Now,
		ring:   make([]storedSpan, o.MaxSpans),
		traces: map[trace.TraceID]*traceEntry{},
		byCorr: map[string][]trace.TraceID{},
	}
}

// OnStart implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// Shutdown implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) ForceFlush(context.Context) error { return nil }

// OnEnd implements sdktrace.SpanProcessor: it stores the span.
func (s *TraceStore) OnEnd(sp sdktrace.ReadOnlySpan) {
	if !sp.SpanContext().IsSampled() {
		return
	}
	cid := ""
	for _, kv := range sp.Attributes() {
		if kv.Key == AttrCorrelationID {
			cid = kv.Value.AsString()
			break
		}
	}
	now := s.now()
	s.mu.Lock()
	s.expireLocked(now)
	if s.n == len(s.ring) {
		s.evictLocked()
		s.evicted("capacity", 1)
	}
	i := (s.head + s.n) % len(s.ring)
	s.ring[i] = storedSpan{seq: s.seq, at: now, span: sp, cid: cid}
	s.n++
	tid := sp.SpanContext().TraceID()
	te := s.traces[tid]
	if te == nil {
		te = &traceEntry{}
		s.traces[tid] = te
	}
	te.seqs = append(te.seqs, s.seq)
	if cid != "" && !slices.Contains(te.cids, cid) {
		te.cids = append(te.cids, cid)
		s.byCorr[cid] = append(s.byCorr[cid], tid)
	}
	s.seq++
	s.mu.Unlock()
}

func (s *TraceStore) evicted(reason string, n int) {
	if s.onEvict != nil && n > 0 {
		s.onEvict(reason, n)
	}
}

// expireLocked drops the spans stored longer than maxAge ago.
func (s *TraceStore) expireLocked(now time.Time) {
	cutoff := now.Add(-s.maxAge)
	n := 0
	for s.n > 0 && s.ring[s.head].at.Before(cutoff) {
		s.evictLocked()
		n++
	}
	s.evicted("age", n)
}

// evictLocked drops the oldest span and unindexes it.
func (s *TraceStore) evictLocked() {
	old := s.ring[s.head]
	s.ring[s.head] = storedSpan{}
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	tid := old.span.SpanContext().TraceID()
	te := s.traces[tid]
	if te == nil {
		return
	}
	// Spans are stored in seq order, so the oldest of a trace is first.
	if len(te.seqs) > 0 && te.seqs[0] == old.seq {
		te.seqs = te.seqs[1:]
	}
	if len(te.seqs) > 0 {
		return
	}
	delete(s.traces, tid)
	for _, cid := range te.cids {
		ids := slices.DeleteFunc(s.byCorr[cid], func(t trace.TraceID) bool { return t == tid })
		if len(ids) == 0 {
			delete(s.byCorr, cid)
		} else {
			s.byCorr[cid] = ids
		}
	}
}

// at returns the stored span with sequence number seq (it must be stored).
func (s *TraceStore) at(seq uint64) *storedSpan {
	oldest := s.seq - uint64(s.n)
	return &s.ring[(s.head+int(seq-oldest))%len(s.ring)]
}

// Size reports the spans and traces held now.
func (s *TraceStore) Size() (spans, traces int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	return s.n, len(s.traces)
}

// Query returns the spans of this node's traces that match q: a trace
// matches when it has the correlation id (if given), is one of the trace
// ids (if given), and has a span of the actor (if given: "type/id", or
// "type" for any actor of the type) starting within [Since, Until] (if
// given). All the trace's spans held here are returned, for at most
// q.Limit traces (the most recent first; 0 means DefaultLimit).
func (s *TraceStore) Query(q Query) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())

	var candidates []trace.TraceID
	switch {
	case len(q.TraceIDs) > 0:
		for _, h := range q.TraceIDs {
			if tid, err := trace.TraceIDFromHex(h); err == nil && s.traces[tid] != nil {
				candidates = append(candidates, tid)
			}
		}
		if q.CorrelationID != "" {
			candidates = slices.DeleteFunc(candidates, func(t trace.TraceID) bool {
				return !slices.Contains(s.traces[t].cids, q.CorrelationID)
			})
		}
	case q.CorrelationID != "":
		candidates = slices.Clone(s.byCorr[q.CorrelationID])
	default:
		candidates = make([]trace.TraceID, 0, len(s.traces))
		for tid := range s.traces {
			candidates = append(candidates, tid)
		}
	}
	type hit struct {
		tid  trace.TraceID
		last uint64
	}
	var hits []hit
	for _, tid := range candidates {
		te := s.traces[tid]
		if te == nil || !s.matchesLocked(te, q) {
			continue
		}
		hits = append(hits, hit{tid, te.seqs[len(te.seqs)-1]})
	}
	slices.SortFunc(hits, func(a, b hit) int { return compareDesc(a.last, b.last) })
	if limit := q.limit(); len(hits) > limit {
		hits = hits[:limit]
	}
	var out []Span
	for _, h := range hits {
		for _, seq := range s.traces[h.tid].seqs {
			out = append(out, s.export(s.at(seq)))
		}
	}
	return out
}

func compareDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// matchesLocked applies the span-level filters: actor and time range.
func (s *TraceStore) matchesLocked(te *traceEntry, q Query) bool {
	if q.Actor == "" && q.Since.IsZero() && q.Until.IsZero() {
		return true
	}
	for _, seq := range te.seqs {
		sp := s.at(seq).span
		if !q.Since.IsZero() && sp.StartTime().Before(q.Since) {
			continue
		}
		if !q.Until.IsZero() && sp.StartTime().After(q.Until) {
			continue
		}
		if q.Actor != "" && !actorMatches(spanActor(sp), q.Actor) {
			continue
		}
		return true
	}
	return false
}

func actorMatches(actor, want string) bool {
	if actor == "" {
		return false
	}
	if strings.Contains(want, "/") {
		return actor == want
	}
	return actor == want || strings.HasPrefix(actor, want+"/")
}

func spanActor(sp sdktrace.ReadOnlySpan) string {
	for _, kv := range sp.Attributes() {
		if kv.Key == AttrActor {
			return kv.Value.AsString()
		}
	}
	return ""
}

// export converts a stored span to its JSON form.
func (s *TraceStore) export(st *storedSpan) Span {
	sp := st.span
	sc := sp.SpanContext()
	out := Span{
		TraceID:       sc.TraceID().String(),
		SpanID:        sc.SpanID().String(),
		Name:          sp.Name(),
		Kind:          sp.SpanKind().String(),
		Node:          s.node,
		CorrelationID: st.cid,
		Start:         sp.StartTime(),
		End:           sp.EndTime(),
		DurationMs:    float64(sp.EndTime().Sub(sp.StartTime()).Microseconds()) / 1000,
		Status:        "unset",
	}
	if p := sp.Parent(); p.IsValid() {
		out.ParentSpanID = p.SpanID().String()
	}
	switch st := sp.Status(); st.Code {
	case codes.Ok:
		out.Status = "ok"
	case codes.Error:
		out.Status = "error"
		out.Error = st.Description
	}
	for _, kv := range sp.Attributes() {
		switch kv.Key {
		case AttrActor:
			out.Actor = kv.Value.AsString()
		case AttrMethod:
			out.Method = kv.Value.AsString()
		case AttrCorrelationID:
		default:
			if out.Attributes == nil {
				out.Attributes = map[string]string{}
			}
			out.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
	}
	return out
}
