package observability

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

// BenchmarkTurnSpan measures what tracing adds to a call on the node that
// serves it: the turn span, with its attributes, recorded into a store of
// 10,000 spans (so evicting one per call), through the light store-only
// tracer ("store", the path without an exporter) and through the
// OpenTelemetry SDK ("sdk", the path with one, here exporting nowhere);
// "metrics-only" is the observer with tracing off, for comparison.
//
//	go test -run '^$' -bench TurnSpan -benchmem ./observability
func BenchmarkTurnSpan(b *testing.B) {
	for _, mode := range []string{"metrics-only", "store", "sdk"} {
		b.Run(mode, func(b *testing.B) {
			var tp trace.TracerProvider
			if mode != "metrics-only" {
				cfg := config.Default().Tracing
				cfg.Enabled = true
				tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1", SDK: mode == "sdk"})
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
				tp = tr.Provider
			}
			o := NewObserver(NewMetrics(), tp)
			ctx := runtime.WithCorrelationID(context.Background(), NewCorrelationID())
			b.ReportAllocs()
			for b.Loop() {
				_, done := o.StartTurn(ctx, "counter", "b123", "get", 0)
				done(nil)
			}
		})
	}
}
