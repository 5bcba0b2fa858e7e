package runtime

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// The benchmarks quoted in docs/performance.md. Run with:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./runtime

type benchSession struct{ id lock.SessionID }

func (s benchSession) Session() lock.SessionID { return s.id }
func (s benchSession) Valid() bool             { return true }

type benchActor struct{}

var benchType = NewType("bench", func(string) *benchActor { return &benchActor{} })

// benchPing changes no state.
var benchPing = AddMethod(benchType, "ping", func(ctx Context, _ *benchActor, n int) (int, error) {
	return n + 1, nil
})

// benchSet does one State.Set: one durable journal append per call.
var benchSet = AddMethod(benchType, "set", func(ctx Context, _ *benchActor, n int) (int, error) {
	return n, SetState(ctx.State(), "n", n)
})

// benchGet reads a key.
var benchGet = AddMethod(benchType, "get", func(ctx Context, _ *benchActor, key string) (int, error) {
	return ctx.State().Len(), nil
})

func newBenchRuntime(b *testing.B, j journal.Journal, snapshotEvery int, more ...func(*Options)) *Runtime {
	b.Helper()
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	sid, err := c.CreateSession(context.Background(), "bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Journal: j, Coordinator: c, Session: benchSession{sid}, SnapshotEvery: snapshotEvery}
	for _, f := range more {
		f(&opts)
	}
	r, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Register(benchType); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(context.Background()); _ = c.Close() })
	return r
}

func openFileJournal(b *testing.B) journal.Journal {
	b.Helper()
	j, err := journal.OpenFile(filepath.Join(b.TempDir(), "journal.db"), journal.DefaultFileOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = j.Close() })
	return j
}

// reportLatency adds p50/p99 (µs) of the sampled latencies.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// runCallers splits b.N calls over callers goroutines. With timed set, every
// call's latency is sampled. It reports calls/s.
func runCallers(b *testing.B, callers int, timed bool, call func(g, i int) error) {
	b.Helper()
	var next atomic.Int64
	lats := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				var t0 time.Time
				if timed {
					t0 = time.Now()
				}
				if err := call(g, i); err != nil {
					failed.Store(err)
					return
				}
				if timed {
					lats[g] = append(lats[g], time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	if timed {
		var all []time.Duration
		for _, l := range lats {
			all = append(all, l...)
		}
		reportLatency(b, all)
	}
}

// BenchmarkCallInMemory: Execute of a method that changes no state, on
// 1,000 actors, through the typed local path and through encoded JSON.
func BenchmarkCallInMemory(b *testing.B) {
	const actors = 1000
	ids := make([]string, actors)
	for i := range ids {
		ids[i] = fmt.Sprintf("a%d", i)
	}
	for _, path := range []string{"typed", "json"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", path, callers), func(b *testing.B) {
				r := newBenchRuntime(b, inmem.NewJournal(), 0)
				ctx := context.Background()
				for _, id := range ids { // activate all first
					if _, err := benchPing.Call(ctx, r, id, 0); err != nil {
						b.Fatal(err)
					}
				}
				call := func(g, i int) error {
					_, err := benchPing.Call(ctx, r, ids[(g*7919+i)%actors], i)
					return err
				}
				if path == "json" {
					payload := []byte("41")
					call = func(g, i int) error {
						_, err := r.Invoke(ctx, "bench", ids[(g*7919+i)%actors], "ping", payload)
						return err
					}
				}
				b.ReportAllocs()
				runCallers(b, callers, callers == 1, call)
			})
		}
	}
}

// BenchmarkCallDurable: a method that does one State.Set, bbolt journal
// with fsync: one actor called serially, and 64 actors called concurrently
// (one caller each) so group commit can batch their appends.
func BenchmarkCallDurable(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("actors=%d", callers), func(b *testing.B) {
			r := newBenchRuntime(b, openFileJournal(b), 0)
			ctx := context.Background()
			runCallers(b, callers, true, func(g, i int) error {
				_, err := benchSet.Call(ctx, r, fmt.Sprintf("d%d", g), i)
				return err
			})
		})
	}
}

// benchFanout calls benchPing on actor "callee" n times from inside its
// own turn: n actor-to-actor calls.
var benchFanout = AddMethod(benchType, "fanout", func(ctx Context, _ *benchActor, n int) (int, error) {
	for i := range n {
		if _, err := benchPing.Call(ctx, ctx.Actors(), "callee", i); err != nil {
			return 0, err
		}
	}
	return n, nil
})

// BenchmarkActorToActor compares a call an actor makes to another actor
// on the same node (through its Context: call chain, cycle check) with
// the same call made directly from outside any actor: ns/op is per call
// to "callee" on both sides.
func BenchmarkActorToActor(b *testing.B) {
	for _, path := range []string{"direct", "from-actor"} {
		b.Run(path, func(b *testing.B) {
			r := newBenchRuntime(b, inmem.NewJournal(), 0)
			ctx := context.Background()
			if _, err := benchPing.Call(ctx, r, "callee", 0); err != nil {
				b.Fatal(err)
			}
			if _, err := benchFanout.Call(ctx, r, "caller", 0); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			if path == "direct" {
				for i := range b.N {
					if _, err := benchPing.Call(ctx, r, "callee", i); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			if _, err := benchFanout.Call(ctx, r, "caller", b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkIdempotencyKey: BenchmarkCallDurable's one-actor case with and
// without an idempotency key on every call (each its own key): the record
// of the key and the result goes in the same journal append. On the bbolt
// journal (fsync) and, to see the CPU the record costs without the disk's
// noise, on the in-memory journal.
func BenchmarkIdempotencyKey(b *testing.B) {
	for _, jn := range []string{"bbolt", "memory"} {
		for _, keyed := range []bool{false, true} {
			b.Run(fmt.Sprintf("journal=%s/keyed=%v", jn, keyed), func(b *testing.B) {
				j := journal.Journal(inmem.NewJournal())
				if jn == "bbolt" {
					j = openFileJournal(b)
				}
				r := newBenchRuntime(b, j, 0)
				ctx := context.Background()
				keys := make([]string, b.N)
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
				}
				runCallers(b, 1, true, func(g, i int) error {
					cctx := ctx
					if keyed {
						cctx = WithIdempotencyKey(ctx, keys[i])
					}
					_, err := benchSet.Call(cctx, r, "d", i)
					return err
				})
			})
		}
	}
}

// BenchmarkActivationReplay: activating an actor whose journal holds 10,000
// entries (each setting one of 100 keys to a 100-byte value), without a
// snapshot and with one (snapshotEvery 1000).
func BenchmarkActivationReplay(b *testing.B) {
	const entries = 10000
	for _, snapshots := range []bool{false, true} {
		b.Run(fmt.Sprintf("entries=%d/snapshots=%v", entries, snapshots), func(b *testing.B) {
			j := openFileJournal(b)
			ctx := context.Background()
			key := "bench/replay"
			batch := make([]journal.Entry, 0, 1000)
			value := make([]byte, 100)
			var seq uint64
			for i := 0; i < entries; i++ {
				st := newState()
				st.Set(fmt.Sprintf("k%02d", i%100), value)
				batch = append(batch, journal.Entry{Kind: journal.KindInvocation, Method: "set", Payload: st.encodeChanges(), Time: time.Now()})
				if len(batch) == cap(batch) {
					tail, err := j.Append(ctx, key, 1, seq, batch)
					if err != nil {
						b.Fatal(err)
					}
					seq, batch = tail, batch[:0]
				}
			}
			every := 0
			if snapshots {
				every = 1000
			}
			r := newBenchRuntime(b, j, every)
			if snapshots {
				// One more turn makes the runtime snapshot and truncate.
				if _, err := benchSet.Call(ctx, r, "replay", 1); err != nil {
					b.Fatal(err)
				}
				if _, ok, _ := j.LoadSnapshot(ctx, key); !ok {
					b.Fatal("no snapshot was taken")
				}
			}
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := r.Deactivate(ctx, "bench", "replay"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				n, err := benchGet.Call(ctx, r, "replay", "")
				lat = append(lat, time.Since(t0))
				if err != nil || n != 101-boolInt(!snapshots) {
					b.Fatalf("keys after replay = %d, %v", n, err)
				}
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// BenchmarkSendDirect compares a message applied on acceptance (Send
// with DirectMessages: a turn whose one journal entry also accepts the
// message) with a call of the same method (one State.Set), on 1,000
// actors from 64 callers, over the in-memory journal, which is also the
// message store: what the send path costs the runtime beyond a call's.
func BenchmarkSendDirect(b *testing.B) {
	const actors = 1000
	ids := make([]string, actors)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
	}
	for _, op := range []string{"call", "send"} {
		b.Run(op, func(b *testing.B) {
			j := inmem.NewJournal()
			r := newBenchRuntime(b, j, 0, func(o *Options) { o.Messages, o.DirectMessages = j, true })
			ctx := context.Background()
			call := func(g, i int) error {
				_, err := benchSet.Call(ctx, r, ids[(g*7919+i)%actors], i)
				return err
			}
			if op == "send" {
				call = func(g, i int) error {
					acc, err := benchSet.Send(ctx, r, ids[(g*7919+i)%actors], i)
					if err == nil && !acc.Applied {
						err = fmt.Errorf("message %s was not applied on acceptance", acc.ID)
					}
					return err
				}
			}
			b.ReportAllocs()
			runCallers(b, 64, false, call)
		})
	}
}
