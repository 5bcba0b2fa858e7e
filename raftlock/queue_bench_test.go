package raftlock

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// BenchmarkQueue3Nodes measures the message queues on a three-node
// cluster, 64 callers through every node, 10,000 actors: enqueue alone
// (what a send costs before it is accepted), and enqueue then the
// acknowledging append (what a message costs in all, delivered).
func BenchmarkQueue3Nodes(b *testing.B) {
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
