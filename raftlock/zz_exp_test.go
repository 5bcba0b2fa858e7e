package raftlock

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
)

func BenchmarkExpTxnSize(b *testing.B) {
	for _, per := range []int{1, 10, 50, 200, 500} {
		b.Run(fmt.Sprint(per), func(b *testing.B) {
			f, err := openFSM(filepath.Join(b.TempDir(), "fsm.db"), testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			defer f.close()
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
					rec := journal.MarshalEntry(journal.Entry{Seq: tails[a] + 1, Actor: key, Token: 1, Kind: journal.KindInvocation, Method: "add", Payload: []byte(`{"delta":1}`)})
					seq++
					cmds[i] = encodeCommand(command{op: opAppend, id: cmdID{origin: "bench", seq: seq}, key: key, token: 1, seq: tails[a], records: [][]byte{rec}})
					tails[a]++
				}
				index++
				return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeBatch(time.Now(), cmds)}
			}
			for range 3 * actors / perEntry {
				f.ApplyBatch([]*raft.Log{entry()})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += perEntry * per {
				logs := make([]*raft.Log, per)
				for j := range logs {
					logs[j] = entry()
				}
				f.ApplyBatch(logs)
			}
		})
	}
}
