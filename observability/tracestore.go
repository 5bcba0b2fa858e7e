package observability

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
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
	// (tracing.maxSpans), rounded up to a multiple of 16 (the shards).
	// Must be > 0.
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
// OnEnd, on the hot path, copies what a query needs of the span (ids,
// name, times, status, Loom's attributes) into a fixed ring of records, so
// the SDK's span snapshot is garbage at once and the store holds flat
// arrays: no index is kept. The rings are sharded by span id, each with
// its own mutex, so that spans ending on different goroutines rarely wait
// for each other; MaxSpans is split evenly between the shards, and the
// oldest span of a shard goes first. A query scans every record (at most
// MaxSpans, well under a millisecond for the default 10,000). Every method
// is safe for concurrent use; reads drop the spans that have aged out
// first, so an aged-out span is never returned, even on an idle node.
type TraceStore struct {
	node    string
	maxAge  time.Duration
	now     func() time.Time
	wall    bool                       // now is time.Now
	onEvict func(reason string, n int) // set before use by Metrics.SetTraceStore
	seq     atomic.Uint64
	shards  [storeShards]storeShard
}

// storeShards is the number of rings a store is split into.
const storeShards = 16

type storeShard struct {
	mu      sync.Mutex
	ring    []record // oldest at head
	head, n int
	_       [64]byte // keep shards' mutexes on separate cache lines
}

// record is what the store keeps of a span.
type record struct {
	seq        uint64 // store-wide order of storing
	at         int64  // when it was stored (≈ its end), Unix ns on the store's clock
	start, end int64  // Unix ns
	traceID    trace.TraceID
	spanID     trace.SpanID
	parentID   trace.SpanID
	kind       trace.SpanKind
	status     codes.Code
	name       string
	statusMsg  string
	cid        string
	actor      string
	method     string
	other      []attribute.KeyValue // the span's other attributes (shared, not copied)
}

var _ sdktrace.SpanProcessor = (*TraceStore)(nil)

// NewTraceStore builds an empty store.
func NewTraceStore(o StoreOptions) *TraceStore {
	wall := o.Now == nil
	if wall {
		o.Now = time.Now
	}
	if o.MaxSpans <= 0 {
		o.MaxSpans = 10000
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
	s := &TraceStore{node: o.NodeID, maxAge: o.MaxAge, now: o.Now, wall: wall}
	per := max(1, (o.MaxSpans+storeShards-1)/storeShards)
	for i := range s.shards {
		s.shards[i].ring = make([]record, per)
	}
	return s
}

// OnStart implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// Shutdown implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor (nothing to do).
func (s *TraceStore) ForceFlush(context.Context) error { return nil }

// OnEnd implements sdktrace.SpanProcessor: it stores the span.
func (s *TraceStore) OnEnd(sp sdktrace.ReadOnlySpan) {
	sc := sp.SpanContext()
	if !sc.IsSampled() {
		return
	}
	st := sp.Status()
	r := record{
		start: sp.StartTime().UnixNano(), end: sp.EndTime().UnixNano(),
		traceID: sc.TraceID(), spanID: sc.SpanID(), parentID: sp.Parent().SpanID(),
		kind: sp.SpanKind(), status: st.Code, name: sp.Name(), statusMsg: st.Description,
	}
	attrs := sp.Attributes()
	others := 0
	for _, kv := range attrs {
		switch kv.Key {
		case AttrCorrelationID:
			r.cid = kv.Value.AsString()
		case AttrActor:
			r.actor = kv.Value.AsString()
		case AttrMethod:
			r.method = kv.Value.AsString()
		default:
			others++
		}
	}
	if others > 0 {
		r.other = attrs
	}
	s.put(&r, 0)
}

// put stores a span's record (both tracing paths end here). now is the
// time it is stored, Unix ns on the store's clock; 0 reads the clock.
func (s *TraceStore) put(r *record, now int64) {
	if now == 0 {
		now = s.now().UnixNano()
	}
	sh := &s.shards[r.spanID[7]%storeShards]
	sh.mu.Lock()
	aged := sh.expireLocked(now, s.maxAge)
	full := sh.n == len(sh.ring)
	if full { // the oldest's slot takes the new record
		sh.head = (sh.head + 1) % len(sh.ring)
		sh.n--
	}
	slot := &sh.ring[(sh.head+sh.n)%len(sh.ring)]
	*slot = *r
	slot.at = now
	slot.seq = s.seq.Add(1)
	sh.n++
	sh.mu.Unlock()
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

// expireLocked drops the shard's spans stored longer than maxAge ago and
// returns how many.
func (sh *storeShard) expireLocked(now int64, maxAge time.Duration) int {
	cutoff := now - int64(maxAge)
	n := 0
	for sh.n > 0 && sh.ring[sh.head].at < cutoff {
		sh.ring[sh.head] = record{}
		sh.head = (sh.head + 1) % len(sh.ring)
		sh.n--
		n++
	}
	return n
}

// records expires aged spans and returns the others, in the order they
// were stored.
func (s *TraceStore) records() []record {
	now := s.now().UnixNano()
	var out []record
	aged := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		aged += sh.expireLocked(now, s.maxAge)
		for j := range sh.n {
			out = append(out, sh.ring[(sh.head+j)%len(sh.ring)])
		}
		sh.mu.Unlock()
	}
	s.evicted("age", aged)
	slices.SortFunc(out, func(a, b record) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// Size reports the spans and traces held now.
func (s *TraceStore) Size() (spans, traces int) {
	all := s.records()
	ids := make(map[trace.TraceID]struct{}, len(all)/4)
	for i := range all {
		ids[all[i].traceID] = struct{}{}
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
	all := s.records()
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
	for i := range all {
		r := &all[i]
		switch {
		case want != nil && !want[r.traceID]:
		case !q.Since.IsZero() && r.start < q.Since.UnixNano():
		case !q.Until.IsZero() && r.start > q.Until.UnixNano():
		case q.CorrelationID != "" && r.cid != q.CorrelationID:
		case q.Actor != "" && !actorMatches(r.actor, q.Actor):
		default:
			last[r.traceID] = i
		}
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
	for i := range all {
		if selected[all[i].traceID] {
			out = append(out, s.export(&all[i]))
		}
	}
	return out
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

// export converts a record to its JSON form.
func (s *TraceStore) export(r *record) Span {
	out := Span{
		TraceID:       r.traceID.String(),
		SpanID:        r.spanID.String(),
		Name:          r.name,
		Kind:          r.kind.String(),
		Node:          s.node,
		Actor:         r.actor,
		Method:        r.method,
		CorrelationID: r.cid,
		Start:         time.Unix(0, r.start).UTC(),
		End:           time.Unix(0, r.end).UTC(),
		DurationMs:    float64((r.end-r.start)/1000) / 1000,
		Status:        "unset",
	}
	if r.parentID.IsValid() {
		out.ParentSpanID = r.parentID.String()
	}
	switch r.status {
	case codes.Ok:
		out.Status = "ok"
	case codes.Error:
		out.Status = "error"
		out.Error = r.statusMsg
	}
	for _, kv := range r.other {
		switch kv.Key {
		case AttrActor, AttrMethod, AttrCorrelationID:
		default:
			if out.Attributes == nil {
				out.Attributes = map[string]string{}
			}
			out.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
	}
	return out
}
