package pgjournal_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
)

// BenchmarkAppend measures appends of one entry (a 100-byte payload) to
// 10,000 actors from 1 and 64 goroutines against one PostgreSQL server
// (fsync and synchronous_commit on), beside plain INSERTs of the same
// record with the same concurrency, one transaction each, on a pool of
// one connection per caller: the server's own figure for fsynced
// single-row transactions on this machine, which PostgreSQL's own group
// commit (concurrent commits sharing a WAL flush) already helps. Each
// goroutine appends to its own share of the actors in turn. Reports
// ops/s and the p50 and p99 latency of one call.
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 20000x ./adapters/postgres/pgjournal/
func BenchmarkAppend(b *testing.B) {
	const actors = 10000
	s := pgtest.Start(b, pgtest.Options{})
	db := s.CreateDatabase(b)
	payload := make([]byte, 100)
	run := 0
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d/journal", callers), func(b *testing.B) {
			run++
			j := open(b, s, db, fmt.Sprintf("bench%d", run))
			tails := make([]uint64, actors) // each goroutine owns the actors ≡ g mod callers
			measure(b, callers, actors, func(actor int) error {
				key := fmt.Sprintf("actor-%d", actor)
				tail, err := j.Append(b.Context(), key, 1, tails[actor], []journal.Entry{{Kind: journal.KindInvocation, Method: "m", Payload: payload}})
				tails[actor] = tail
				return err
			})
		})
		b.Run(fmt.Sprintf("callers=%d/insert", callers), func(b *testing.B) {
			run++
			o := options(s, db, "x").Postgres
			o.PoolSize = callers
			p, err := postgres.NewPool(o, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			table := fmt.Sprintf("bench%d", run)
			if _, err := p.Exec(b.Context(), "CREATE TABLE "+table+" (actor bytea, seq bigint, rec bytea, PRIMARY KEY (actor, seq))"); err != nil {
				b.Fatal(err)
			}
			rec := journal.MarshalEntry(journal.Entry{Seq: 1, Kind: journal.KindInvocation, Actor: "actor-0", Method: "m", Payload: payload, Token: 1})
			seqs := make([]int64, actors)
			measure(b, callers, actors, func(actor int) error {
				seqs[actor]++
				_, err := p.Exec(b.Context(), "INSERT INTO "+table+" VALUES ($1, $2, $3)", fmt.Appendf(nil, "actor-%d", actor), seqs[actor], rec)
				return err
			})
		})
	}
}

// measure runs b.N calls of op from callers goroutines, goroutine g calling
// it for actors g, g+callers, g+2*callers, ... in turn, and reports ops/s
// and latency percentiles.
func measure(b *testing.B, callers, actors int, op func(actor int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/callers+1)
			share := (actors - g + callers - 1) / callers // actors g, g+callers, ... below actors
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				actor := g + i%share*callers
				t0 := time.Now()
				if err := op(actor); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			lat[g] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
