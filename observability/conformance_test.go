package observability

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

// tracingPaths builds a Tracing on each of its two paths: the light
// store-only tracer (no exporter) and the OpenTelemetry SDK.
var tracingPaths = []struct {
	name string
	sdk  bool
}{{"store", false}, {"sdk", true}}

func newTracingPath(t *testing.T, sdk bool) *Tracing {
	t.Helper()
	cfg := config.Default().Tracing
	cfg.Enabled = true
	tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1", SDK: sdk})
	if err != nil {
		t.Fatal(err)
	}
	if tr.UsesSDK() != sdk {
		t.Fatalf("UsesSDK() = %v, want %v", tr.UsesSDK(), sdk)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr
}

// tracedScenario records, through tr, spans of every kind a node records:
// a gateway request (a scope the correlation id is annotated on), a hop to
// another node (W3C propagation: a remote parent), the turn with an
// activation under it, the transport's client span of a call the actor
// makes, a failed turn, a background RPC that is not sampled (nor its
// child), a new root, explicit timestamps, attributes set twice, an
// invalid one, status changes and calls after End.
func tracedScenario(t *testing.T, tr *Tracing) {
	t.Helper()
	o := NewObserver(NewMetrics(), tr.Provider)
	gw := tr.Provider.Tracer("github.com/loom-mesh/loom/gateway")
	tp := tr.Provider.Tracer(transportScope)
	ctx := runtime.WithCorrelationID(context.Background(), "cid-1")

	ctx, req := gw.Start(ctx, "POST /v1/actors/{type}/{id}/{method}", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.method", "POST")))
	if !req.IsRecording() || !req.SpanContext().IsSampled() {
		t.Fatal("the gateway's root span is not recording and sampled")
	}
	hop, hopSpan := tp.Start(ctx, "loom.Invoke relay.call", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(attrCorrelationIDKey, "cid-1")))
	carrier := propagation.MapCarrier{}
	tr.Propagator.Inject(hop, carrier)

	// The owner: the hop's context arrives over the wire.
	remote := runtime.WithCorrelationID(tr.Propagator.Extract(context.Background(), carrier), "cid-1")
	if !trace.SpanContextFromContext(remote).IsRemote() {
		t.Fatal("the extracted parent is not remote")
	}
	turn, doneTurn := o.StartTurn(remote, "relay", "r1", "call", 1)
	act, doneAct := o.StartActivation(turn, "relay", "r1")
	doneAct(nil)
	call, callSpan := tp.Start(turn, "loom.Invoke counter.add", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(attrCorrelationIDKey, "cid-1"), attribute.Int("retry", 1)))
	callSpan.SetAttributes(attribute.Int("retry", 2), attribute.String("", "invalid"), attribute.Bool("cached", false))
	callSpan.SetStatus(codes.Error, "first failure")
	callSpan.SetStatus(codes.Unset, "ignored: lower than error")
	callSpan.SetStatus(codes.Ok, "ok drops the description")
	callSpan.SetStatus(codes.Error, "ignored: lower than ok")
	callSpan.SetName("loom.Invoke counter.add (renamed)")
	callSpan.End()
	callSpan.End() // twice: stored once
	callSpan.SetAttributes(attribute.String("late", "ignored"))
	if callSpan.IsRecording() {
		t.Fatal("a span is still recording after End")
	}
	_ = act
	_ = call
	doneTurn(nil)

	// A failed turn under the same hop, of an actor of another type.
	_, doneFailed := o.StartTurn(remote, "counter", "c9", "add", 1)
	doneFailed(errors.New("journal: fenced"))
	hopSpan.End()

	// A background RPC: not sampled, nor its children, which keep its
	// trace id.
	bg, bgSpan := tp.Start(context.Background(), "loom.v1.Coordinator/Forward")
	_, bgChild := gw.Start(bg, "a child of a background RPC")
	if bgSpan.IsRecording() || bgSpan.SpanContext().IsSampled() || bgChild.IsRecording() || bgChild.SpanContext().IsSampled() {
		t.Fatal("a background RPC's root span or its child is sampled")
	}
	if !bgSpan.SpanContext().IsValid() || bgChild.SpanContext().TraceID() != bgSpan.SpanContext().TraceID() {
		t.Fatal("a background RPC's child is not in its (unsampled) trace")
	}
	bgChild.End()
	bgSpan.End()

	// A new root under a sampled span, with explicit times, older than
	// maxTraceAge: the store ages spans by when it stored them, so this one
	// is kept like the others.
	at := time.Now().Add(-2 * config.Default().Tracing.MaxTraceAge)
	_, root := gw.Start(ctx, "a new root", trace.WithNewRoot(), trace.WithTimestamp(at))
	root.End(trace.WithTimestamp(at.Add(1500 * time.Microsecond)))
	if root.SpanContext().TraceID() == req.SpanContext().TraceID() {
		t.Fatal("WithNewRoot stayed in the parent's trace")
	}
	req.End()
}

// attrCorrelationIDKey is the transport's attribute of the correlation id.
const attrCorrelationIDKey = string(AttrCorrelationID)

// shape is what a span of tracedScenario must look like, ids replaced by
// names: equal on both paths.
type shape struct {
	Name, Kind, Parent, Trace, Actor, Method, CID, Status, Error string
	Attributes                                                   map[string]string
	DurationMs                                                   float64 // only for explicit times
}

func shapes(t *testing.T, tr *Tracing) []shape {
	t.Helper()
	spans := tr.Store.Query(Query{})
	names := map[string]string{}
	traces := map[string]string{} // trace id → the name of its first span stored
	for _, s := range spans {
		names[s.SpanID] = s.Name
	}
	var out []shape
	for _, s := range spans {
		if _, ok := traces[s.TraceID]; !ok {
			traces[s.TraceID] = fmt.Sprintf("trace-%d", len(traces)+1)
		}
		if s.Node != "n1" || s.End.Before(s.Start) || s.Start.IsZero() {
			t.Errorf("span %s: node %q, %v – %v", s.Name, s.Node, s.Start, s.End)
		}
		sh := shape{Name: s.Name, Kind: s.Kind, Parent: names[s.ParentSpanID], Trace: traces[s.TraceID], Actor: s.Actor,
			Method: s.Method, CID: s.CorrelationID, Status: s.Status, Error: s.Error, Attributes: s.Attributes}
		if s.ParentSpanID != "" && sh.Parent == "" {
			t.Errorf("span %s: parent %s not stored", s.Name, s.ParentSpanID)
		}
		if s.Name == "a new root" {
			sh.DurationMs = s.DurationMs
		}
		out = append(out, sh)
	}
	slices.SortFunc(out, func(a, b shape) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// TestTracingPathsConform: the light tracer and the SDK record the same
// spans for the same scenario — names, kinds, parent links, traces,
// Loom's attributes, others, status — and both what the scenario expects.
func TestTracingPathsConform(t *testing.T) {
	want := []shape{
		{Name: "POST /v1/actors/{type}/{id}/{method}", Kind: "server", Trace: "trace-?", CID: "cid-1", Status: "unset",
			Attributes: map[string]string{"http.method": "POST"}},
		{Name: "a new root", Kind: "internal", Parent: "", CID: "cid-1", Status: "unset", DurationMs: 1.5},
		{Name: "loom.Invoke counter.add (renamed)", Kind: "client", Parent: "loom.turn relay.call", CID: "cid-1", Status: "ok",
			Attributes: map[string]string{"retry": "2", "cached": "false"}},
		{Name: "loom.Invoke relay.call", Kind: "client", Parent: "POST /v1/actors/{type}/{id}/{method}", CID: "cid-1", Status: "unset"},
		{Name: "loom.activate relay", Kind: "internal", Parent: "loom.turn relay.call", Actor: "relay/r1", CID: "cid-1", Status: "unset"},
		{Name: "loom.turn counter.add", Kind: "server", Parent: "loom.Invoke relay.call", Actor: "counter/c9", Method: "add", CID: "cid-1",
			Status: "error", Error: "journal: fenced"},
		{Name: "loom.turn relay.call", Kind: "server", Parent: "loom.Invoke relay.call", Actor: "relay/r1", Method: "call", CID: "cid-1", Status: "unset"},
	}
	var got [2][]shape
	for i, p := range tracingPaths {
		t.Run(p.name, func(t *testing.T) {
			tr := newTracingPath(t, p.sdk)
			tracedScenario(t, tr)
			got[i] = shapes(t, tr)
			// Every span but the new root is in one trace.
			if len(got[i]) != len(want) {
				t.Fatalf("%d spans stored, want %d: %+v", len(got[i]), len(want), got[i])
			}
			main := got[i][0].Trace
			for j, g := range got[i] {
				w := want[j]
				w.Trace = main
				if g.Name == "a new root" {
					if g.Trace == main {
						t.Errorf("the new root is in the call's trace")
					}
					w.Trace = g.Trace
				}
				if len(w.Attributes) == 0 {
					w.Attributes = nil
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("span %d:\n got %+v\nwant %+v", j, g, w)
				}
			}
		})
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Fatalf("the paths differ:\nstore %+v\n  sdk %+v", got[0], got[1])
	}
}

// TestStoreTracerAfterShutdown: like the SDK's provider, the light one
// records nothing once shut down.
func TestStoreTracerAfterShutdown(t *testing.T) {
	for _, p := range tracingPaths {
		t.Run(p.name, func(t *testing.T) {
			tr := newTracingPath(t, p.sdk)
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, s := tr.Provider.Tracer("x").Start(context.Background(), "after shutdown")
			s.End()
			if s.IsRecording() || len(tr.Store.Query(Query{})) != 0 {
				t.Fatal("a span started after Shutdown was recorded")
			}
		})
	}
}
