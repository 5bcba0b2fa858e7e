package observability

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/runtime"
)

// BenchmarkTurnSpans measures what tracing adds to one remote call on the
// owner: a server span and a turn span under it, with the correlation id,
// recorded into the store (10,000 spans, so evicting), in parallel.
//
//	go test -run '^$' -bench TurnSpans ./observability
func BenchmarkTurnSpans(b *testing.B) {
	for _, mode := range []string{"sdk-only", "store"} {
		b.Run(mode, func(b *testing.B) {
			opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.ParentBased(rootSampler{})), sdktrace.WithIDGenerator(fastIDs{}), sdktrace.WithSpanProcessor(annotator{})}
			if mode == "store" {
				opts = append(opts, sdktrace.WithSpanProcessor(NewTraceStore(StoreOptions{NodeID: "n1", MaxAge: time.Hour, MaxSpans: 10000})))
			}
			tp := sdktrace.NewTracerProvider(opts...)
			o := NewObserver(NewMetrics(), tp)
			tr := tp.Tracer("bench")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx := runtime.WithCorrelationID(context.Background(), NewCorrelationID())
					ctx, span := tr.Start(ctx, "loom.Invoke counter.get", trace.WithSpanKind(trace.SpanKindServer), trace.WithNewRoot())
					_, done := o.StartTurn(ctx, "counter", "b123", "get", 0)
					done(nil)
					span.End()
				}
			})
		})
	}
}
