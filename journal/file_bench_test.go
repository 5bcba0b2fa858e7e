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

	"github.com/loom-mesh/loom/queue"
)

// Run with:
//
//	go test ./journal -run '^$' -bench . -benchtime 2s
//
// Every Append is fsynced; the parallel benchmark shows what group commit
// buys. Reported: ops/s (appends acknowledged per second), p50-us and
// p99-us (latency of one Append as its caller sees it), appends/commit
// (the mean group-commit batch) and pages/commit (bbolt pages written per
// commit, meta page included). The queue benchmarks report msgs/s and
// writes/commit instead of ops/s and appends/commit.

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
	reportAs(b, "ops/s", "appends/commit", j, commits0, committed0, pages0, elapsed, lat)
}

func reportAs(b *testing.B, rate, perCommit string, j *FileJournal, commits0, committed0 uint64, pages0 int64, elapsed time.Duration, lat []time.Duration) {
	b.Helper()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), rate)
	b.ReportMetric(q(0.50), "p50-us")
	b.ReportMetric(q(0.99), "p99-us")
	if c := j.commits.Load() - commits0; c > 0 {
		b.ReportMetric(float64(j.committed.Load()-committed0)/float64(c), perCommit)
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

// share is how many of b.N calls worker w of 64 makes.
func share(b *testing.B, w int) int {
	n := b.N / 64
	if w < b.N%64 {
		n++
	}
	return n
}

// parallel64 runs op from 64 goroutines, b.N calls in total, worker w
// making share(b, w) calls op(w, 0), op(w, 1)..., and returns the elapsed
// time and every call's latency.
func parallel64(b *testing.B, op func(w, i int) error) (time.Duration, []time.Duration) {
	b.Helper()
	const workers = 64
	lats := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range share(b, w) {
				t0 := time.Now()
				err := op(w, i)
				lats[w] = append(lats[w], time.Since(t0))
				if err != nil {
					errs <- err
					return
				}
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
	return elapsed, slices.Concat(lats...)
}

// BenchmarkEnqueueParallel64: 64 goroutines, each enqueueing messages with
// a 100-byte payload to its own actor; b.N messages in total. Each Enqueue
// is fsynced, group-committed with the others like an Append.
func BenchmarkEnqueueParallel64(b *testing.B) {
	j := benchJournal(b)
	ctx := context.Background()
	payload := make([]byte, 100)
	commits0, committed0, pages0 := j.commits.Load(), j.committed.Load(), pagesWritten(j)
	elapsed, lat := parallel64(b, func(w, i int) error {
		actor := fmt.Sprintf("bench/enqueue-%02d", w)
		_, err := j.Enqueue(ctx, queue.Message{ID: fmt.Sprintf("%s-%d", actor, i), Actor: actor, Method: "Deposit", Payload: payload})
		return err
	})
	reportAs(b, "msgs/s", "writes/commit", j, commits0, committed0, pages0, elapsed, lat)
}

// BenchmarkAppendAckParallel64: 64 goroutines, each appending, to its own
// actor, one 100-byte invocation entry and the ack of the oldest message
// pending in the actor's queue (a turn that processed a message); b.N
// appends in total. The messages are enqueued before the timer starts.
func BenchmarkAppendAckParallel64(b *testing.B) {
	const workers = 64
	j := benchJournal(b)
	ctx := context.Background()
	actor := func(w int) string { return fmt.Sprintf("bench/ack-%02d", w) }
	id := func(w, i int) string { return fmt.Sprintf("%s-%d", actor(w), i) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range share(b, w) {
				if _, err := j.Enqueue(ctx, queue.Message{ID: id(w, i), Actor: actor(w), Method: "Deposit", Payload: make([]byte, 100)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	tails := make([]uint64, workers)
	commits0, committed0, pages0 := j.commits.Load(), j.committed.Load(), pagesWritten(j)
	elapsed, lat := parallel64(b, func(w, i int) error {
		es := append(benchEntries(), Entry{Kind: KindMessageAck, IdempotencyKey: id(w, i)})
		n, err := j.Append(ctx, actor(w), 1, tails[w], es)
		tails[w] = n
		return err
	})
	report(b, j, commits0, committed0, pages0, elapsed, lat)
}
