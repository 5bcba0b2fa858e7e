package task

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A fire-and-forget run keeps the caller's pipeline even when the caller's
// span has ended (stopped recording) before the run starts.
func TestEndedCallersSpanKeepsItsProvider(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	ctx = withCallersProvider(ctx)
	parent.End()

	tk := New("after", func(context.Context, int) (int, error) { return 0, nil })
	tk.Run(context.WithoutCancel(ctx), 0)
	ended := rec.Ended()
	if len(ended) != 2 || ended[1].Name() != "task after" || ended[1].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("%d spans", len(ended))
	}
	// Without the remembered provider, the ended span no longer leads there.
	rec.Reset()
	ctx2, parent2 := tp.Tracer("test").Start(context.Background(), "request")
	parent2.End()
	tk.Run(ctx2, 0)
	if len(rec.Ended()) != 1 {
		t.Fatalf("%d spans", len(rec.Ended()))
	}
}
