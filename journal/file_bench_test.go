package journal

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Run with:
//
//	go test ./journal -run '^$' -bench . -benchtime 2s
//
// Every Append is fsynced; the parallel benchmark shows what group commit
// buys. Reported: ops/s (appends acknowledged per second), p50-us and
// p99-us (latency of one Append as its caller sees it), appends/commit
// (the mean group-commit batch) and pages/commit (bbolt pages written per
// commit, meta page included).

func benchJournal(b *testing.B) *FileJournal {
	b.Helper()
	j, err := OpenFile(filepath.Join(b.TempDir(), "bench.db"), DefaultFileOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = j.Close() })
	return j
}

func benchEntries() []Entry {
	return []Entry{{Kind: KindInvocation, Method: "Deposit", Payload: make([]byte, 100), Time: time.Now()}}
}

// pagesWritten is how many pages bbolt has written since the file was opened.
func pagesWritten(j *FileJournal) int64 {
	st := j.db.Stats()
	return st.TxStats.GetWrite()
}

func report(b *testing.B, j *FileJournal, commits0, committed0 uint64, pages0 int64, elapsed time.Duration, lat []time.Duration) {
	b.Helper()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(q(0.50), "p50-us")
	b.ReportMetric(q(0.99), "p99-us")
	if c := j.commits.Load() - commits0; c > 0 {
		b.ReportMetric(float64(j.committed.Load()-committed0)/float64(c), "appends/commit")
		b.ReportMetric(float64(pagesWritten(j)-pages0)/float64(c), "pages/commit")
	}
}

// BenchmarkAppendSerial: one goroutine appends one 100-byte entry at a time
// to one actor: one commit (and its fsyncs) per Append.
func BenchmarkAppendSerial(b *testing.B) {
	j := benchJournal(b)
	ctx := context.Background()
	es := benchEntries()
	lat := make([]time.Duration, 0, b.N)
	commits0, committed0, pages0 := j.commits.Load(), j.committed.Load(), pagesWritten(j)
	var tail uint64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		t0 := time.Now()
		next, err := j.Append(ctx, "bench/serial", 1, tail, es)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		tail = next
	}
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, j, commits0, committed0, pages0, elapsed, lat)
}

// BenchmarkAppendParallel64: 64 goroutines, each appending one 100-byte
// entry at a time to its own actor; b.N appends in total.
func BenchmarkAppendParallel64(b *testing.B) {
	const workers = 64
	j := benchJournal(b)
	ctx := context.Background()
	var next atomic.Int64
	lats := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	commits0, committed0, pages0 := j.commits.Load(), j.committed.Load(), pagesWritten(j)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			actor := fmt.Sprintf("bench/parallel-%02d", w)
			es := benchEntries()
			var tail uint64
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				n, err := j.Append(ctx, actor, 1, tail, es)
				lats[w] = append(lats[w], time.Since(t0))
				if err != nil {
					errs <- err
					return
				}
				tail = n
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	report(b, j, commits0, committed0, pages0, elapsed, slices.Concat(lats...))
}
