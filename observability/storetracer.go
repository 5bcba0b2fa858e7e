package observability

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/loom-mesh/loom/runtime"
)

// storeProvider is the TracerProvider of a node that traces into its
// TraceStore and exports nowhere (see NewTracing): an implementation of
// the OpenTelemetry trace API that writes each span, as it ends, straight
// into the store's record, with no SDK in between.
//
// It records what the SDK path (an sdktrace.TracerProvider with the
// annotator and the store as span processors, fastIDs, and
// ParentBased(rootSampler)) records, for the same calls: the same
// sampling rule, ids, parent links, kinds, names, times, status and
// attributes; the conformance test holds both paths to that. What the
// store keeps nothing of (events, links, the resource, dropped counts) it
// does not keep either: AddEvent, AddLink and RecordError do nothing.
//
// What it saves per span, against the SDK's span and its snapshot: most
// allocations (one span, whose record the store copies, against eight),
// the processors' calls, and a deep call stack.
type storeProvider struct {
	embedded.TracerProvider
	store   *TraceStore
	stopped atomic.Bool // Shutdown: spans started after are not recorded
}

// storeTracer is storeProvider's Tracer for one instrumentation scope.
type storeTracer struct {
	embedded.Tracer
	p *storeProvider
	// annotate: record the correlation id of the context a span starts in
	// (what the SDK path's annotator does), for every scope but this
	// package's and the transport's, whose spans set it themselves.
	annotate bool
}

var (
	_ trace.TracerProvider = (*storeProvider)(nil)
	_ trace.Tracer         = (*storeTracer)(nil)
	_ trace.Span           = (*storeSpan)(nil)
)

func newStoreProvider(store *TraceStore) *storeProvider { return &storeProvider{store: store} }

// Tracer implements trace.TracerProvider.
func (p *storeProvider) Tracer(name string, _ ...trace.TracerOption) trace.Tracer {
	return &storeTracer{p: p, annotate: name != instrumentationName && name != transportScope}
}

// Shutdown stops recording: spans started afterwards are not sampled, as
// with the SDK's provider once shut down.
func (p *storeProvider) Shutdown(context.Context) error {
	p.stopped.Store(true)
	return nil
}

// maxSpanAttributes is the SDK's default AttributeCountLimit: past it, new
// keys are dropped (known keys still take their new value).
const maxSpanAttributes = 128

// Start implements trace.Tracer.
func (t *storeTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	if cfg.NewRoot() {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	s := t.start(ctx, name, cfg.SpanKind())
	if ts := cfg.Timestamp(); !ts.IsZero() {
		s.start = ts
	}
	if !s.ended {
		for _, kv := range cfg.Attributes() {
			s.setLocked(kv)
		}
		if t.annotate {
			if cid := runtime.CorrelationID(ctx); cid != "" {
				s.setLocked(AttrCorrelationID.String(cid))
			}
		}
	}
	return trace.ContextWithSpan(ctx, s), s
}

// startTurn is Start for the observer's turn span, without the options
// and attribute slices the API's variadic calls allocate: kind server,
// the actor, method and correlation id set at the start.
func (t *storeTracer) startTurn(ctx context.Context, name, actor, method, cid string) (context.Context, trace.Span) {
	s := t.start(ctx, name, trace.SpanKindServer)
	if !s.ended {
		s.rec.actor, s.rec.method, s.rec.cid = actor, method, cid
		s.seen = seenActor | seenMethod | seenCID
	}
	return trace.ContextWithSpan(ctx, s), s
}

// start begins a span in ctx (the parent is the span context there),
// sampled as the SDK path samples: a child as its parent, a root span by
// sampleRoot. A span that is not sampled is born ended: it records
// nothing, and carries its span context to its children, which are not
// sampled either. (Frames are kept small here: a traced call runs this
// at its deepest, where a few hundred bytes more cost a stack copy.)
func (t *storeTracer) start(ctx context.Context, name string, kind trace.SpanKind) *storeSpan {
	s := &storeSpan{t: t, start: time.Now()}
	s.rec.name = name
	s.rec.kind = kind
	if kind == trace.SpanKindUnspecified {
		s.rec.kind = trace.SpanKindInternal
	}
	sampled := s.parent(ctx)
	if !sampled || t.p.stopped.Load() {
		s.ended = true
		return s
	}
	s.flags = trace.FlagsSampled
	return s
}

// parent sets the span's ids and parent from ctx and reports whether it
// is sampled.
func (s *storeSpan) parent(ctx context.Context) bool {
	p := trace.SpanContextFromContext(ctx)
	s.rec.spanID = newSpanID()
	if !p.IsValid() {
		s.rec.traceID = newTraceID()
		return sampleRoot(s.rec.name)
	}
	s.rec.traceID, s.rec.parentID, s.state = p.TraceID(), p.SpanID(), p.TraceState()
	return p.IsSampled()
}

// storeSpan is a span of a storeProvider. Its record is the store's: End
// fills in the end and status and hands it to the store. A span that is
// not sampled is ended from the start: it only carries its span context.
type storeSpan struct {
	embedded.Span
	t     *storeTracer
	start time.Time
	state trace.TraceState // the parent's
	flags trace.TraceFlags
	mu    sync.Mutex
	ended bool  // or never recording: not sampled
	seen  uint8 // which of Loom's attributes were set (seen*), for the count limit
	rec   record
}

const (
	seenActor = 1 << iota
	seenMethod
	seenCID
)

// setLocked records one attribute as the SDK would: invalid ones are
// dropped, a key set again keeps its first place and takes the new value,
// and past maxSpanAttributes keys new ones are dropped. Loom's own
// attributes go to the record's fields; the store keeps the others (its
// export leaves Loom's out of them).
func (s *storeSpan) setLocked(kv attribute.KeyValue) {
	if !kv.Valid() {
		return
	}
	var bit uint8
	switch kv.Key {
	case AttrCorrelationID:
		bit = seenCID
	case AttrActor:
		bit = seenActor
	case AttrMethod:
		bit = seenMethod
	}
	if bit != 0 {
		if s.seen&bit == 0 && s.count() >= maxSpanAttributes {
			return
		}
		s.seen |= bit
		switch bit {
		case seenCID:
			s.rec.cid = kv.Value.AsString()
		case seenActor:
			s.rec.actor = kv.Value.AsString()
		default:
			s.rec.method = kv.Value.AsString()
		}
		return
	}
	for i := range s.rec.other {
		if s.rec.other[i].Key == kv.Key {
			s.rec.other[i] = kv
			return
		}
	}
	if s.count() < maxSpanAttributes {
		s.rec.other = append(s.rec.other, kv)
	}
}

// count is the number of distinct attribute keys set.
func (s *storeSpan) count() int {
	n := len(s.rec.other)
	for b := s.seen; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// End implements trace.Span: the span goes into the store.
func (s *storeSpan) End(opts ...trace.SpanEndOption) {
	var end time.Time
	if len(opts) > 0 {
		ec := trace.NewSpanEndConfig(opts...)
		end = ec.Timestamp()
	}
	s.mu.Lock()
	if s.ended { // or never sampled: no clock to read
		s.mu.Unlock()
		return
	}
	clocked := end.IsZero() // not an explicit timestamp: read from the clock now
	if clocked {
		end = s.start.Add(time.Since(s.start)) // the SDK's monotonic end time
	}
	s.ended = true
	s.rec.start, s.rec.end = s.start.UnixNano(), end.UnixNano()
	s.mu.Unlock()
	// Ended, s.rec no longer changes: the store copies it. On the wall
	// clock, the span's end, just read, is the time it is stored (one
	// clock read); an end given explicitly may be any time, and the store
	// ages spans by when they were stored, in order, so it reads its clock.
	store := s.t.p.store
	var at int64
	if store.wall && clocked {
		at = s.rec.end
	}
	store.put(&s.rec, at)
}

// IsRecording implements trace.Span: true until End.
func (s *storeSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

// SpanContext implements trace.Span.
func (s *storeSpan) SpanContext() trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.rec.traceID, SpanID: s.rec.spanID, TraceFlags: s.flags, TraceState: s.state})
}

// SetStatus implements trace.Span as the SDK does: a status only moves
// up (unset < error < ok, the codes' values), and only an error keeps its
// description.
func (s *storeSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.rec.status > code {
		return
	}
	s.rec.status, s.rec.statusMsg = code, ""
	if code == codes.Error {
		s.rec.statusMsg = description
	}
}

// SetName implements trace.Span.
func (s *storeSpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.rec.name = name
	}
}

// SetAttributes implements trace.Span.
func (s *storeSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	for _, a := range kv {
		s.setLocked(a)
	}
}

// AddEvent, AddLink and RecordError implement trace.Span: the store keeps
// no events or links (nor does the SDK path's store).
func (s *storeSpan) AddEvent(string, ...trace.EventOption)   {}
func (s *storeSpan) AddLink(trace.Link)                      {}
func (s *storeSpan) RecordError(error, ...trace.EventOption) {}

// TracerProvider implements trace.Span.
func (s *storeSpan) TracerProvider() trace.TracerProvider { return s.t.p }
