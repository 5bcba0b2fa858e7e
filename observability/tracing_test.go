package observability

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

func TestTracingOffBuildsNothing(t *testing.T) {
	tr, err := NewTracing(context.Background(), config.Default().Tracing, TracingOptions{NodeID: "n1"})
	if err != nil || tr != nil {
		t.Fatalf("tracing off: %v, %v", tr, err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTracingStoresExportsAndPropagates(t *testing.T) {
	cfg := config.Default().Tracing
	cfg.Enabled = true
	exp := tracetest.NewInMemoryExporter()
	tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	// A span of a call: stored with its correlation id, exported, and its
	// context carried by the W3C propagator.
	ctx := runtime.WithCorrelationID(context.Background(), "cid-1")
	ctx, span := tr.Provider.Tracer("test").Start(ctx, "POST /v1/actors/{type}/{id}/{method}")
	carrier := propagation.MapCarrier{}
	tr.Propagator.Inject(ctx, carrier)
	if got := trace.SpanContextFromContext(tr.Propagator.Extract(context.Background(), carrier)); got.TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("propagated %v, want trace %s", carrier, span.SpanContext().TraceID())
	}
	span.End()
	// The root span of a background RPC is not sampled.
	_, bg := tr.Provider.Tracer("test").Start(context.Background(), "loom.v1.Coordinator/Forward")
	if bg.SpanContext().IsSampled() {
		t.Fatal("a background RPC's root span is sampled")
	}
	bg.End()
	if got := tr.Store.Query(Query{CorrelationID: "cid-1"}); len(got) != 1 || got[0].Node != "n1" {
		t.Fatalf("store: %+v", got)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.ForceFlush(sctx); err != nil { // the exporter forgets its spans on Shutdown
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	defer tr.Shutdown(sctx)
	if len(spans) != 1 || spans[0].Name != "POST /v1/actors/{type}/{id}/{method}" {
		t.Fatalf("exported %d spans: %+v", len(spans), spans)
	}
	found := false
	for _, kv := range spans[0].Attributes {
		found = found || (kv.Key == AttrCorrelationID && kv.Value.AsString() == "cid-1")
	}
	if !found {
		t.Fatalf("the exported span has no correlation id: %v", spans[0].Attributes)
	}
}

func TestTracingWithAnOTLPEndpointStartsWithoutACollector(t *testing.T) {
	cfg := config.Default().Tracing
	cfg.Enabled = true
	cfg.OTLPEndpoint = "127.0.0.1:1" // nothing listens: export fails later, start does not
	cfg.OTLPHeaders = map[string]string{"authorization": "Bearer x"}
	tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = tr.Shutdown(ctx) // the batch may fail to export; Shutdown is bounded by ctx
}
