package observability

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/loom-mesh/loom/runtime"
)

// BenchmarkTurnSpan measures what tracing adds to a call on the node that
// serves it: the turn span, with its attributes, recorded into a store of
// 10,000 spans (so evicting one per call); "metrics-only" is the
// observer with tracing off, for comparison.
//
//	go test -run '^$' -bench TurnSpan -benchmem ./observability
func BenchmarkTurnSpan(b *testing.B) {
	for _, mode := range []string{"metrics-only", "store"} {
		b.Run(mode, func(b *testing.B) {
			var o *Observer
			if mode == "store" {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(rootSampler{})), sdktrace.WithIDGenerator(fastIDs{}),
					sdktrace.WithSpanProcessor(annotator{}), sdktrace.WithSpanProcessor(NewTraceStore(StoreOptions{NodeID: "n1", MaxAge: time.Hour, MaxSpans: 10000})))
				o = NewObserver(NewMetrics(), tp)
			} else {
				o = NewObserver(NewMetrics(), nil)
			}
			ctx := runtime.WithCorrelationID(context.Background(), NewCorrelationID())
			b.ReportAllocs()
			for b.Loop() {
				_, done := o.StartTurn(ctx, "counter", "b123", "get", 0)
				done(nil)
			}
		})
	}
}
