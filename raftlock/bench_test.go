package raftlock

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// BenchmarkAppend3Nodes measures Append of a small entry through a
// three-node cluster on loopback TCP (Raft log fsynced on every node),
// from callers on the leader, on a follower, and spread over all three
// nodes (as actors are in a cluster), with 1 caller and with 64 concurrent
// callers, each writing one actor or taking turns over 10,000 actors. It reports appends/s, the p50 and p99
// latency of one Append, and the mean number of commands per Raft entry
// (group commit).
//
//	go test -run '^$' -bench Append3Nodes -benchtime 5s ./raftlock
func BenchmarkAppend3Nodes(b *testing.B) {
	c := newCluster(b, 3, nil)
	var run atomic.Uint64
	for _, via := range []string{"leader", "follower", "all"} {
		for _, callers := range []int{1, 64} {
			for _, actors := range []int{callers, 10000} {
				b.Run(fmt.Sprintf("via=%s/callers=%d/actors=%d", via, callers, actors), func(b *testing.B) {
					leader := c.nodes[c.leader()]
					node := func(g int) *Store {
						switch via {
						case "leader":
							return leader
						case "follower":
							return c.nodes[c.follower()]
						default:
							return c.nodes[g%len(c.nodes)]
						}
					}
					prefix := fmt.Sprintf("bench/%d/", run.Add(1))
					payload := []journal.Entry{{Kind: journal.KindInvocation, Method: "Set", Payload: []byte("0123456789abcdef")}}
					batches0, cmds0 := leaderBatches(leader)
					lat := make([][]time.Duration, callers)
					var next atomic.Int64
					var failed atomic.Value
					var wg sync.WaitGroup
					b.ResetTimer()
					start := time.Now()
					for g := range callers {
						s := node(g)
						wg.Go(func() {
							// Caller g writes actors g, g+callers, ... in turn.
							tails := make([]uint64, (actors-g+callers-1)/callers)
							for i := 0; next.Add(1) <= int64(b.N); i++ {
								a := i % len(tails)
								actor := prefix + strconv.Itoa(g+a*callers)
								tail := tails[a]
								t0 := time.Now()
								got, err := s.Append(b.Context(), actor, 1, tail, payload)
								lat[g] = append(lat[g], time.Since(t0))
								if err != nil {
									failed.Store(err)
									return
								}
								tails[a] = got
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					if err, _ := failed.Load().(error); err != nil {
						b.Fatal(err)
					}
					all := slices.Concat(lat...)
					slices.Sort(all)
					pct := func(p float64) float64 {
						return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
					b.ReportMetric(pct(0.50), "p50-ms")
					b.ReportMetric(pct(0.99), "p99-ms")
					batches1, cmds1 := leaderBatches(leader)
					if batches1 > batches0 {
						b.ReportMetric(float64(cmds1-cmds0)/float64(batches1-batches0), "cmds/entry")
					}

				})
			}
		}
	}
}

// BenchmarkEnqueue3Nodes measures the message queues on the cluster of
// BenchmarkAppend3Nodes, 64 callers spread over the three nodes, 10,000
// actors, ordered messages: enqueue alone (what a send costs before it is
// accepted), and enqueue then the acknowledging append (what a message
// costs in all, delivered). It reports messages/s.
//
//	go test -run '^$' -bench 'Enqueue3Nodes|Append3Nodes/via=all/callers=64/actors=10000' -benchtime 5s ./raftlock
func BenchmarkEnqueue3Nodes(b *testing.B) {
	c := newCluster(b, 3, nil)
	var run atomic.Uint64
	for _, mode := range []string{"enqueue", "enqueue+ack"} {
		b.Run("op="+mode, func(b *testing.B) {
			const callers, actors = 64, 10000
			prefix := fmt.Sprintf("counter/q%d-", run.Add(1))
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range callers {
				s := c.nodes[g%len(c.nodes)]
				wg.Go(func() {
					tails := make([]uint64, (actors-g+callers-1)/callers)
					for i := 0; ; i++ {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						a := i % len(tails)
						actor := prefix + strconv.Itoa(g+a*callers)
						id := fmt.Sprintf("%s#%d", prefix, n)
						if _, err := s.Queues().Enqueue(b.Context(), queue.Message{ID: id, Actor: actor, Method: "add", Payload: []byte(`{"delta":1}`), Ordered: true}); err != nil {
							failed.Store(err)
							return
						}
						if mode == "enqueue" {
							continue
						}
						entries := []journal.Entry{{Kind: journal.KindInvocation, Method: "add", Payload: []byte("0123456789abcdef")}, {Kind: journal.KindMessageAck, IdempotencyKey: id}}
						tail, err := s.Append(b.Context(), actor, 1, tails[a], entries)
						if err != nil {
							failed.Store(err)
							return
						}
						tails[a] = tail
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

func leaderBatches(s *Store) (batches, cmds uint64) {
	st := s.Stats()
	batches, _ = strconv.ParseUint(st["batches"], 10, 64)
	cmds, _ = strconv.ParseUint(st["batch_commands"], 10, 64)
	return batches, cmds
}
