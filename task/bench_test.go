package task_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/loom-mesh/loom/task"
)

var sink int

func inc(_ context.Context, n int) (int, error) { return n + 1, nil }

// BenchmarkRunOverhead compares Run with calling the function directly.
// The overhead of Run is the difference between "direct" and the others;
// "run" is the figure (tracing off: no TracerProvider installed,
// no options, a context that cannot be canceled).
//
//	go test -run '^$' -bench RunOverhead -benchtime 2s -count 5 ./task
func BenchmarkRunOverhead(b *testing.B) {
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		fn := inc
		for i := 0; b.Loop(); i++ {
			v, _ := fn(ctx, i)
			sink += v
		}
	})
	b.Run("run", func(b *testing.B) {
		t := task.New("inc", inc)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink += t.Run(ctx, i).Value
		}
	})
	b.Run("run/retries+limit", func(b *testing.B) {
		// Options that cost nothing until used: retries that are not
		// needed, a concurrency limit that is not reached.
		t := task.New("inc", inc, task.Retries(3), task.MaxConcurrent(64))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink += t.Run(ctx, i).Value
		}
	})
	b.Run("run/cancelable-ctx", func(b *testing.B) {
		// A context that can end: the function runs on its own goroutine
		// so that Run can stop waiting.
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		t := task.New("inc", inc)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink += t.Run(cctx, i).Value
		}
	})
	b.Run("run/timeout", func(b *testing.B) {
		t := task.New("inc", inc, task.Timeout(time.Minute))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink += t.Run(ctx, i).Value
		}
	})
	b.Run("run/tracing-on", func(b *testing.B) {
		// An SDK provider that samples every run and exports nowhere.
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		defer tp.Shutdown(ctx)
		t := task.New("inc", inc, task.WithTracerProvider(tp))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink += t.Run(ctx, i).Value
		}
	})
}
