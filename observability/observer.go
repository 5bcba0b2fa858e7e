package observability

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
)

// Span attributes Loom records. The correlation id is set on every span a
// node records (see Tracing); actor and method on the spans of a call.
const (
	AttrCorrelationID = attribute.Key("loom.correlation_id")
	AttrActor         = attribute.Key("loom.actor")  // "type/id", or "type" for a call span
	AttrMethod        = attribute.Key("loom.method") // the actor method
	AttrNode          = attribute.Key("loom.node")   // the node that recorded the span
)

const instrumentationName = "github.com/loom-mesh/loom/observability"

// Observer implements runtime.Observer: Prometheus metrics always, and
// OpenTelemetry spans when it has a TracerProvider.
//
// Spans: "loom.turn T.m" where a call is served (activation, mailbox wait,
// the method and its commit; kind server), with "loom.activate T" under it
// when the actor had to be activated. A call forwarded to another node is
// the transport's client span ("loom.Invoke T.m"), on the forwarding node;
// the turn on the owner is its child. One span per call on the owner keeps
// tracing cheap. A call that enters with no correlation id gets a new one,
// so every call carries one.
type Observer struct {
	m      *Metrics
	tracer trace.Tracer // nil: tracing off
}

var _ runtime.Observer = (*Observer)(nil)

// NewObserver builds the runtime's observer. tp nil means no spans.
func NewObserver(m *Metrics, tp trace.TracerProvider) *Observer {
	o := &Observer{m: m}
	if tp != nil {
		o.tracer = tp.Tracer(instrumentationName)
	}
	return o
}

func noop(error) {}

var turnKind = trace.WithSpanKind(trace.SpanKindServer)

// StartCall implements runtime.Observer.
func (o *Observer) StartCall(ctx context.Context, typ, id, method string, hops int) (context.Context, func(error)) {
	if hops > 0 {
		return ctx, noop // counted where it entered; the transport has its span
	}
	if runtime.CorrelationID(ctx) == "" {
		ctx = runtime.WithCorrelationID(ctx, NewCorrelationID())
	}
	st := o.m.stat(typ, method)
	start := time.Now()
	return ctx, func(err error) { o.m.callDone(st, typ, method, start, err) }
}

// StartTurn implements runtime.Observer.
func (o *Observer) StartTurn(ctx context.Context, typ, id, method string, hops int) (context.Context, func(error)) {
	o.m.hops.Observe(float64(hops))
	if o.tracer == nil {
		return ctx, noop
	}
	st := o.m.stat(typ, method)
	var span trace.Span
	if lt, ok := o.tracer.(*storeTracer); ok {
		// The same span, without the API's variadic slices.
		ctx, span = lt.startTurn(ctx, st.turnName, typ+"/"+id, method, runtime.CorrelationID(ctx))
	} else {
		ctx, span = startTurnSpan(ctx, o.tracer, st.turnName, typ+"/"+id, method)
	}
	return ctx, func(err error) { endSpan(span, err) }
}

// startTurnSpan starts a turn span through the API (the SDK path); apart
// from StartTurn, whose frame it would grow by its attributes.
//
//go:noinline
func startTurnSpan(ctx context.Context, tr trace.Tracer, name, actor, method string) (context.Context, trace.Span) {
	ctx, span := tr.Start(ctx, name, turnKind)
	span.SetAttributes(AttrActor.String(actor), AttrMethod.String(method), AttrCorrelationID.String(runtime.CorrelationID(ctx)))
	return ctx, span
}

// StartActivation implements runtime.Observer.
func (o *Observer) StartActivation(ctx context.Context, typ, id string) (context.Context, func(error)) {
	start := time.Now()
	var span trace.Span
	if o.tracer != nil {
		ctx, span = o.tracer.Start(ctx, "loom.activate "+typ, trace.WithAttributes(AttrActor.String(typ+"/"+id), AttrCorrelationID.String(runtime.CorrelationID(ctx))))
	}
	return ctx, func(err error) {
		o.m.activateSecs.WithLabelValues(typ).Observe(time.Since(start).Seconds())
		outcome := "ok"
		if err != nil {
			outcome = "error"
			if errors.Is(err, journal.ErrFenced) {
				o.m.fenced.WithLabelValues("activate").Inc()
			}
		}
		o.m.activations.WithLabelValues(typ, outcome).Inc()
		if span != nil {
			endSpan(span, err)
		}
	}
}

// Deactivated implements runtime.Observer.
func (o *Observer) Deactivated(typ, _ string, reason string) {
	r := deactivationReason(reason)
	o.m.deactivation.WithLabelValues(typ, r).Inc()
	if r == "evicted" {
		o.m.evictions.WithLabelValues(typ).Inc()
	}
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

var (
	attrEntries = attribute.Key("loom.entries")
	attrToken   = attribute.Key("loom.token")
)
