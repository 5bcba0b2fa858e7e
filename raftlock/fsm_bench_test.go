package raftlock

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
)

// BenchmarkFSMApplyAppends measures the state machine alone: Raft entries
// of 20 appends each, to actors drawn at random from 10,000, applied one
// entry per ApplyBatch, as every replica does. It reports the cost of one
// append on one replica: ns/op is wall time, cpu-ns/op the CPU time of the
// process, which includes the flushes that run on their own goroutine (and
// the last one, which the benchmark waits for). With entries=direct each
// append is a KindMessageDirect entry (the turn of a message applied on
// acceptance), as a send applied by its turn is.
//
//	go test -run '^$' -bench FSMApplyAppends ./raftlock
func BenchmarkFSMApplyAppends(b *testing.B) {
	for _, direct := range []bool{false, true} {
		name := "entries=plain"
		if direct {
			name = "entries=direct"
		}
		b.Run(name, func(b *testing.B) { benchFSMApplyAppends(b, direct) })
	}
}

func benchFSMApplyAppends(b *testing.B, direct bool) {
	f, err := openFSM(filepath.Join(b.TempDir(), "fsm.db"), testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const actors, perEntry = 10000, 20
	tails := make([]uint64, actors)
	rng := rand.New(rand.NewPCG(1, 2))
	index := uint64(0)
	seq := uint64(0)
	entry := func() *raft.Log {
		cmds := make([][]byte, perEntry)
		used := map[int]bool{}
		for i := range cmds {
			a := rng.IntN(actors)
			for used[a] {
				a = rng.IntN(actors)
			}
			used[a] = true
			key := fmt.Sprintf("counter/b%d", a)
			seq++
			e := journal.Entry{Seq: tails[a] + 1, Actor: key, Token: 1, Kind: journal.KindInvocation, Method: "add", Payload: []byte(`{"delta":1}`)}
			if direct {
				e.Kind, e.IdempotencyKey = journal.KindMessageDirect, fmt.Sprintf("%016x%016x", time.Now().UnixNano(), seq)
			}
			recs := [][]byte{journal.MarshalEntry(e)}
			cmds[i] = encodeCommand(command{op: opAppend, id: cmdID{origin: "bench", seq: seq}, key: key, token: 1, seq: tails[a], records: recs})
			tails[a] += uint64(len(recs))
		}
		index++
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeBatch(time.Now(), cmds)}
	}
	// Every actor has a few entries first, as in a warm cluster.
	for range 3 * actors / perEntry {
		f.ApplyBatch([]*raft.Log{entry()})
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i += perEntry {
		resp := f.ApplyBatch([]*raft.Log{entry()})[0].(*applyResponse)
		if resp.err != nil || resp.results[0].code != 0 {
			b.Fatalf("apply: %v %+v", resp.err, resp.results[0])
		}
	}
	// What is still in the overlay is part of the cost.
	if err := f.flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	// CPU time of the whole process (flush goroutine and GC included):
	// on a shared machine it varies less than the wall time.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
