package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/runtime"
)

// invokerFunc adapts a function to runtime.Invoker.
type invokerFunc func(ctx context.Context, typ, id, method string, payload []byte) ([]byte, error)

func (f invokerFunc) Invoke(ctx context.Context, typ, id, method string, payload []byte) ([]byte, error) {
	return f(ctx, typ, id, method, payload)
}

func TestCallSpanJoinsTheCallersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var seen trace.SpanContext
	var cid string
	h := gateway.New(gateway.Options{
		Invoker: invokerFunc(func(ctx context.Context, _, _, _ string, _ []byte) ([]byte, error) {
			seen, cid = trace.SpanContextFromContext(ctx), runtime.CorrelationID(ctx)
			return []byte(`{}`), nil
		}),
		TracerProvider: tp,
		Propagator:     propagation.TraceContext{},
	})
	req := httptest.NewRequest("POST", "/v1/actors/counter/c1/add", strings.NewReader(`{}`))
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set(gateway.HeaderCorrelationID, "cid-9")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		sp.SpanKind() != trace.SpanKindServer {
		t.Fatalf("span %s: trace %s parent %s kind %s", sp.Name(), sp.SpanContext().TraceID(), sp.Parent().SpanID(), sp.SpanKind())
	}
	if seen.SpanID() != sp.SpanContext().SpanID() || cid != "cid-9" {
		t.Fatalf("the invoker ran in span %s with correlation id %q; want span %s, cid-9", seen.SpanID(), cid, sp.SpanContext().SpanID())
	}
}
