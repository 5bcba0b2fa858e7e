package observability

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/runtime"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestTracer is a tracer into a new store: the SDK's, with the
// annotator and the store as processors, or the light one.
func newTestTracer(t *testing.T, o StoreOptions, sdk bool) (trace.Tracer, *TraceStore) {
	t.Helper()
	s := NewTraceStore(o)
	if !sdk {
		return newStoreProvider(s).Tracer("test"), s
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(annotator{}), sdktrace.WithSpanProcessor(s))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), s
}

// onBothPaths runs f on each tracing path (see tracingPaths).
func onBothPaths(t *testing.T, f func(t *testing.T, sdk bool)) {
	for _, p := range tracingPaths {
		t.Run(p.name, func(t *testing.T) { f(t, p.sdk) })
	}
}

// call records a trace of three spans (root, child, grandchild) under
// correlation id cid, the grandchild on actor.
func call(tr trace.Tracer, cid, actor string) trace.TraceID {
	ctx := runtime.WithCorrelationID(context.Background(), cid)
	ctx, root := tr.Start(ctx, "root")
	cctx, child := tr.Start(ctx, "child")
	_, gc := tr.Start(cctx, "turn", trace.WithAttributes(AttrActor.String(actor), AttrMethod.String("m")))
	gc.End()
	child.End()
	root.End()
	return root.SpanContext().TraceID()
}

func TestStoreQueriesByCorrelationTraceActorAndTime(t *testing.T) {
	onBothPaths(t, func(t *testing.T, sdk bool) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		tr, s := newTestTracer(t, StoreOptions{NodeID: "n1", MaxAge: time.Hour, MaxSpans: 100, Now: clk.Now}, sdk)
		t1 := call(tr, "c-1", "counter/a")
		t2 := call(tr, "c-2", "kv/b")

		got := Assemble(s.Query(Query{CorrelationID: "c-1"}), 0)
		if len(got) != 1 || got[0].TraceID != t1.String() || len(got[0].Spans) != 3 {
			t.Fatalf("by correlation id: %+v", got)
		}
		tr1 := got[0]
		if tr1.CorrelationID != "c-1" || len(tr1.Roots) != 1 || tr1.Nodes[0] != "n1" {
			t.Fatalf("trace %+v", tr1)
		}
		// Parent/child links: root → child → turn.
		byName := map[string]Span{}
		for _, sp := range tr1.Spans {
			byName[sp.Name] = sp
			if sp.CorrelationID != "c-1" {
				t.Fatalf("span %s has correlation id %q", sp.Name, sp.CorrelationID)
			}
		}
		if tr1.Roots[0] != byName["root"].SpanID || byName["child"].ParentSpanID != byName["root"].SpanID ||
			byName["turn"].ParentSpanID != byName["child"].SpanID || len(byName["root"].Children) != 1 ||
			byName["root"].Children[0] != byName["child"].SpanID || byName["turn"].Actor != "counter/a" || byName["turn"].Method != "m" {
			t.Fatalf("links wrong: %+v", byName)
		}

		if got := Assemble(s.Query(Query{TraceIDs: []string{t2.String()}}), 0); len(got) != 1 || got[0].CorrelationID != "c-2" {
			t.Fatalf("by trace id: %+v", got)
		}
		for _, actor := range []string{"kv/b", "kv"} {
			if got := Assemble(s.Query(Query{Actor: actor}), 0); len(got) != 1 || got[0].TraceID != t2.String() {
				t.Fatalf("by actor %q: %+v", actor, got)
			}
		}
		if got := s.Query(Query{Actor: "kv/bb"}); len(got) != 0 {
			t.Fatalf("actor kv/bb matched %d spans", len(got))
		}
		if got := s.Query(Query{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
			t.Fatalf("since the future: %d spans", len(got))
		}
		if got := Assemble(s.Query(Query{Since: time.Now().Add(-time.Hour)}), 0); len(got) != 2 {
			t.Fatalf("since an hour ago: %d traces", len(got))
		}
		if got := Assemble(s.Query(Query{Limit: 1}), 0); len(got) != 1 || got[0].TraceID != t2.String() {
			t.Fatalf("limit 1 should give the most recent trace: %+v", got)
		}
		if got := s.Query(Query{CorrelationID: "nope"}); len(got) != 0 {
			t.Fatalf("unknown correlation id: %d spans", len(got))
		}
	})
}

func TestStoreDropsSpansOlderThanMaxAge(t *testing.T) {
	onBothPaths(t, func(t *testing.T, sdk bool) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		tr, s := newTestTracer(t, StoreOptions{NodeID: "n1", MaxAge: time.Minute, MaxSpans: 100, Now: clk.Now}, sdk)
		m := NewMetrics()
		m.SetTraceStore(s)
		call(tr, "old", "counter/a")
		clk.Advance(45 * time.Second)
		call(tr, "new", "counter/b")
		if n, traces := s.Size(); n != 6 || traces != 2 {
			t.Fatalf("size %d spans %d traces, want 6, 2", n, traces)
		}
		clk.Advance(20 * time.Second) // "old" is 65 s old, "new" 20 s
		if got := s.Query(Query{CorrelationID: "old"}); len(got) != 0 {
			t.Fatalf("a trace older than maxTraceAge is still returned: %d spans", len(got))
		}
		if got := s.Query(Query{CorrelationID: "new"}); len(got) != 3 {
			t.Fatalf("the recent trace: %d spans, want 3", len(got))
		}
		if n, traces := s.Size(); n != 3 || traces != 1 {
			t.Fatalf("after expiry: %d spans %d traces, want 3, 1", n, traces)
		}
		clk.Advance(time.Hour)
		if n, traces := s.Size(); n != 0 || traces != 0 {
			t.Fatalf("after an hour: %d spans %d traces", n, traces)
		}
		if got := s.Query(Query{}); len(got) != 0 {
			t.Fatalf("after an hour: %d spans returned", len(got))
		}
		if v := testutilCounter(t, m, "loom_trace_store_evicted_spans_total", "reason", "age"); v != 6 {
			t.Fatalf("evicted for age: %v, want 6", v)
		}
	})
}

func TestStoreKeepsAtMostMaxSpans(t *testing.T) {
	onBothPaths(t, func(t *testing.T, sdk bool) {
		tr, s := newTestTracer(t, StoreOptions{NodeID: "n1", MaxAge: time.Hour, MaxSpans: 32}, sdk)
		m := NewMetrics()
		m.SetTraceStore(s)
		var ids []trace.TraceID
		for i := range 100 {
			ids = append(ids, call(tr, fmt.Sprintf("c%d", i), "counter/a"))
		}
		// 300 spans ended over 16 shards of 2: at most 32 are kept, the
		// newest always, the oldest never.
		n, _ := s.Size()
		if n > 32 || n < 16 {
			t.Fatalf("%d spans kept, want 16..32", n)
		}
		if got := s.Query(Query{TraceIDs: []string{ids[0].String()}}); len(got) != 0 {
			t.Fatalf("the first trace is still answered with %d spans", len(got))
		}
		got := s.Query(Query{CorrelationID: "c99"})
		found := false
		for _, sp := range got {
			found = found || sp.Name == "root"
		}
		if !found {
			t.Fatalf("the newest span (the last trace's root) is gone: %+v", got)
		}
		if v := testutilCounter(t, m, "loom_trace_store_evicted_spans_total", "reason", "capacity"); int(v) != 300-n {
			t.Fatalf("evicted for capacity: %v, want %d", v, 300-n)
		}
	})
}
