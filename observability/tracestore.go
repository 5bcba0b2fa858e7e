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
// sampled span that ends is kept, in the order spans end, until it ended
// longer than MaxAge ago or MaxSpans newer spans have ended. Query
// answers with whole traces.
//
// OnEnd, on the hot path, only puts the span in a ring under a mutex: no
// index is kept. A query scans the ring (at most MaxSpans spans, well
// under a millisecond for the default 10,000). Every method is safe for
// concurrent use; reads drop the spans that have aged out first, so an
// aged-out span is never returned, even on an idle node.
type TraceStore struct {
	node    string
	maxAge  time.Duration
	now     func() time.Time
	onEvict func(reason string, n int) // set before use by Metrics.SetTraceStore

	mu      sync.Mutex
	ring    []storedSpan // capacity MaxSpans; oldest at head
	head, n int
}

type storedSpan struct {
	at   time.Time // when it was stored (≈ its end)
	span sdktrace.ReadOnlySpan
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
	return &TraceStore{node: o.NodeID, maxAge: o.MaxAge, now: o.Now, ring: make([]storedSpan, o.MaxSpans)}
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
	now := s.now()
	s.mu.Lock()
	aged := s.expireLocked(now)
	full := s.n == len(s.ring)
	if full {
		s.ring[s.head] = storedSpan{}
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
	s.ring[(s.head+s.n)%len(s.ring)] = storedSpan{at: now, span: sp}
	s.n++
	s.mu.Unlock()
	if aged > 0 {
		s.evicted("age", aged)
	}
	if full {
		s.evicted("capacity", 1)
	}
}

func (s *TraceStore) evicted(reason string, n int) {
	if s.onEvict != nil && n > 0 {
		s.onEvict(reason, n)
	}
}

// expireLocked drops the spans stored longer than maxAge ago and returns
// how many.
func (s *TraceStore) expireLocked(now time.Time) int {
	cutoff := now.Add(-s.maxAge)
	n := 0
	for s.n > 0 && s.ring[s.head].at.Before(cutoff) {
		s.ring[s.head] = storedSpan{}
		s.head = (s.head + 1) % len(s.ring)
		s.n--
		n++
	}
	return n
}

// spans expires aged spans and returns the others, oldest first.
func (s *TraceStore) spans() []sdktrace.ReadOnlySpan {
	s.mu.Lock()
	aged := s.expireLocked(s.now())
	out := make([]sdktrace.ReadOnlySpan, s.n)
	for i := range s.n {
		out[i] = s.ring[(s.head+i)%len(s.ring)].span
	}
	s.mu.Unlock()
	s.evicted("age", aged)
	return out
}

// Size reports the spans and traces held now.
func (s *TraceStore) Size() (spans, traces int) {
	all := s.spans()
	ids := make(map[trace.TraceID]struct{}, len(all)/4)
	for _, sp := range all {
		ids[sp.SpanContext().TraceID()] = struct{}{}
	}
	return len(all), len(ids)
}

// Query returns the spans held here of the traces that match q: a trace
// matches when one of its spans has the correlation id (if given), is in
// one of the trace ids (if given), is a span of the actor (if given:
// "type/id", or "type" for any actor of the type) and started within
// [Since, Until] (if given). All the trace's spans held here are returned,
// for at most q.Limit traces (the most recently ended first; 0 means
// DefaultLimit).
func (s *TraceStore) Query(q Query) []Span {
	all := s.spans()
	var want map[trace.TraceID]bool
	if len(q.TraceIDs) > 0 {
		want = map[trace.TraceID]bool{}
		for _, h := range q.TraceIDs {
			if tid, err := trace.TraceIDFromHex(h); err == nil {
				want[tid] = true
			}
		}
	}
	last := map[trace.TraceID]int{} // matching trace → index of its newest span
	for i, sp := range all {
		tid := sp.SpanContext().TraceID()
		if want != nil && !want[tid] {
			continue
		}
		if !q.Since.IsZero() && sp.StartTime().Before(q.Since) {
			continue
		}
		if !q.Until.IsZero() && sp.StartTime().After(q.Until) {
			continue
		}
		if q.CorrelationID != "" || q.Actor != "" {
			cid, actor := spanKeys(sp)
			if q.CorrelationID != "" && cid != q.CorrelationID {
				continue
			}
			if q.Actor != "" && !actorMatches(actor, q.Actor) {
				continue
			}
		}
		last[tid] = i
	}
	type hit struct {
		tid  trace.TraceID
		last int
	}
	hits := make([]hit, 0, len(last))
	for tid, i := range last {
		hits = append(hits, hit{tid, i})
	}
	slices.SortFunc(hits, func(a, b hit) int { return b.last - a.last })
	if limit := q.limit(); len(hits) > limit {
		hits = hits[:limit]
	}
	selected := make(map[trace.TraceID]bool, len(hits))
	for _, h := range hits {
		selected[h.tid] = true
	}
	var out []Span
	for _, sp := range all {
		if selected[sp.SpanContext().TraceID()] {
			out = append(out, s.export(sp))
		}
	}
	return out
}

// spanKeys returns a span's correlation id and actor attributes.
func spanKeys(sp sdktrace.ReadOnlySpan) (cid, actor string) {
	for _, kv := range sp.Attributes() {
		switch kv.Key {
		case AttrCorrelationID:
			cid = kv.Value.AsString()
		case AttrActor:
			actor = kv.Value.AsString()
		}
	}
	return cid, actor
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

// export converts a stored span to its JSON form.
func (s *TraceStore) export(sp sdktrace.ReadOnlySpan) Span {
	sc := sp.SpanContext()
	out := Span{
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
		Name:       sp.Name(),
		Kind:       sp.SpanKind().String(),
		Node:       s.node,
		Start:      sp.StartTime(),
		End:        sp.EndTime(),
		DurationMs: float64(sp.EndTime().Sub(sp.StartTime()).Microseconds()) / 1000,
		Status:     "unset",
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
			out.CorrelationID = kv.Value.AsString()
		default:
			if out.Attributes == nil {
				out.Attributes = map[string]string{}
			}
			out.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
	}
	return out
}
