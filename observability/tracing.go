package observability

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

// Tracing is a node's OpenTelemetry setup: a TracerProvider whose spans go
// to the node's TraceStore (and to an OTLP collector when
// tracing.otlpEndpoint is set), and the W3C trace-context propagator. It
// sets no OpenTelemetry global: the node hands Provider and Propagator to
// the parts that trace (runtime observer, transport, gateway).
//
// Provider is one of two implementations of the OpenTelemetry trace API
// (see the package doc, Traces): with an exporter, the OpenTelemetry SDK,
// with the store as one of its span processors; without one, a light
// tracer that records straight into the store. Both record the same spans.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	Store      *TraceStore

	sdk   *sdktrace.TracerProvider // the SDK path; nil on the store path
	light *storeProvider           // the store path; nil on the SDK path
}

// TracingOptions are the parts of NewTracing that are not configuration.
type TracingOptions struct {
	// NodeID names the node: resource attribute service.instance.id, and
	// the node of every span the store answers with.
	NodeID string
	// Logger receives export errors; nil discards.
	Logger *slog.Logger
	// Now is the trace store's clock (age limit); nil uses time.Now.
	Now func() time.Time
	// Exporter, when set, replaces the OTLP exporter built from
	// OTLPEndpoint (tests).
	Exporter sdktrace.SpanExporter
	// SDK records through the OpenTelemetry SDK even with no exporter
	// (tests: both paths must record the same spans).
	SDK bool
}

// NewTracing builds the tracing of a node from its configuration. It
// returns nil, nil when cfg.Enabled is false: the node then passes no
// TracerProvider anywhere and spans cost nothing.
//
// Every span is sampled, except root spans of the cluster's own
// background RPCs (Raft command forwarding, topology watches, the
// long-lived call streams), which belong to no call. When
// cfg.OTLPEndpoint is set, spans are also exported over OTLP/gRPC,
// without TLS (a collector next to the node), with cfg.OTLPHeaders, in
// batches; the in-memory store does not wait for the exporter. Spans go
// through the OpenTelemetry SDK only then (or with o.Exporter or o.SDK);
// otherwise a light tracer records them straight into the store, at a
// fraction of the SDK's cost per span.
func NewTracing(ctx context.Context, cfg config.TracingConfig, o TracingOptions) (*Tracing, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	if cfg.MaxTraceAge <= 0 || cfg.MaxSpans <= 0 {
		return nil, errors.New("observability: tracing.maxTraceAge and tracing.maxSpans must be positive")
	}
	store := NewTraceStore(StoreOptions{NodeID: o.NodeID, MaxAge: cfg.MaxTraceAge, MaxSpans: cfg.MaxSpans, Now: o.Now})
	t := &Tracing{Propagator: propagation.TraceContext{}, Store: store}
	exp := o.Exporter
	if exp == nil && cfg.OTLPEndpoint != "" {
		eo := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint), otlptracegrpc.WithInsecure()}
		if len(cfg.OTLPHeaders) > 0 {
			eo = append(eo, otlptracegrpc.WithHeaders(cfg.OTLPHeaders))
		}
		// New does not connect: a collector that is down costs dropped
		// batches, not a failed start.
		e, err := otlptracegrpc.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("observability: OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		exp = e
	}
	if exp == nil && !o.SDK {
		t.light = newStoreProvider(store)
		t.Provider = t.light
		return t, nil
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(rootSampler{})),
		sdktrace.WithIDGenerator(fastIDs{}),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "loom"),
			attribute.String("service.instance.id", o.NodeID),
		)),
		sdktrace.WithSpanProcessor(annotator{}),
		sdktrace.WithSpanProcessor(store),
	}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	t.sdk = sdktrace.NewTracerProvider(opts...)
	t.Provider = t.sdk
	return t, nil
}

// UsesSDK reports whether spans go through the OpenTelemetry SDK (an
// exporter is configured) rather than the light store-only tracer.
func (t *Tracing) UsesSDK() bool { return t != nil && t.sdk != nil }

// ForceFlush exports the spans the exporter has not yet sent (bounded by
// ctx); nothing to do without an exporter. Safe on a nil Tracing.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.ForceFlush(ctx)
}

// Shutdown flushes the exporter (bounded by ctx) and stops the provider.
// Safe on a nil Tracing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	switch {
	case t == nil:
		return nil
	case t.sdk != nil:
		return t.sdk.Shutdown(ctx)
	default:
		return t.light.Shutdown(ctx)
	}
}

// rootSampler samples every root span but those of background RPCs.
type rootSampler struct{}

// backgroundRPCs are gRPC methods (otelgrpc names spans after them) that
// carry no call's context: a root span of one of them is noise.
var backgroundRPCs = []string{"loom.v1.Coordinator/", "loom.v1.Topology/", "loom.v1.Actors/Stream"}

func (rootSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if !sampleRoot(p.Name) {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}

// sampleRoot is the sampling rule of a root span named name: every one
// but those of background RPCs.
func sampleRoot(name string) bool {
	for _, prefix := range backgroundRPCs {
		if strings.HasPrefix(name, prefix) {
			return false
		}
	}
	return true
}

func (rootSampler) Description() string { return "LoomRootSampler" }

// annotator records the correlation id carried by the context a span
// starts in on the span, so that every span of a call has it. The spans of
// this package and the transport's per-call spans set it themselves, with
// their other attributes (cheaper than adding one after the start).
type annotator struct{}

// transportScope is package transport's tracer name.
const transportScope = "github.com/loom-mesh/loom/transport"

func (annotator) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	switch s.InstrumentationScope().Name {
	case instrumentationName, transportScope:
		return
	}
	if cid := runtime.CorrelationID(parent); cid != "" {
		s.SetAttributes(AttrCorrelationID.String(cid))
	}
}
func (annotator) OnEnd(sdktrace.ReadOnlySpan)      {}
func (annotator) Shutdown(context.Context) error   { return nil }
func (annotator) ForceFlush(context.Context) error { return nil }

// NewCorrelationID returns a random 128-bit id in hex
// (runtime.NewCorrelationID).
func NewCorrelationID() string { return runtime.NewCorrelationID() }

// fastIDs generates trace and span ids from math/rand/v2's per-thread
// ChaCha8 generator: the SDK's default shares one math/rand source behind
// a mutex, which costs under load.
type fastIDs struct{}

func (fastIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return newTraceID(), newSpanID()
}

func newTraceID() trace.TraceID {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid
}

func (fastIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
