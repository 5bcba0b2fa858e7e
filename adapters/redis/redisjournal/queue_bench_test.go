package redisjournal_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// BenchmarkQueue measures, from 64 goroutines over 10,000 actors against
// one redis-server with appendfsync always: Enqueue of a message with a
// 100-byte payload, and a whole message's life, Enqueue then the append
// of its turn (one entry and the ack, appendQueueScript). Each goroutine
// owns its share of the actors. Reports msgs/s and the p50 and p99
// latency of one operation.
//
//	go test -run '^$' -bench BenchmarkQueue -benchtime 20000x ./adapters/redis/redisjournal/
func BenchmarkQueue(b *testing.B) {
	const actors, callers = 10000, 64
	s := redistest.Start(b, redistest.Options{})
	payload := make([]byte, 100)
	run := 0
	openJ := func(b *testing.B) *redisjournal.Journal {
		run++
		o := redisjournal.DefaultOptions()
		o.Redis = redis.Options{Addr: s.Addr, KeyPrefix: fmt.Sprintf("qbench%d:", run)}
		j, err := redisjournal.Open(b.Context(), o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = j.Close() })
		return j
	}
	b.Run("callers=64/enqueue", func(b *testing.B) {
		j := openJ(b)
		var n atomic.Int64
		measureUnit(b, callers, actors, "msgs/s", func(actor int) error {
			_, err := j.Enqueue(b.Context(), queue.Message{ID: fmt.Sprint("m", n.Add(1)), Actor: fmt.Sprintf("bench/%d", actor), Method: "m", Payload: payload})
			return err
		})
	})
	b.Run("callers=64/enqueue+ack", func(b *testing.B) {
		j := openJ(b)
		var n atomic.Int64
		tails := make([]uint64, actors)
		measureUnit(b, callers, actors, "msgs/s", func(actor int) error {
			id, key := fmt.Sprint("m", n.Add(1)), fmt.Sprintf("bench/%d", actor)
			if _, err := j.Enqueue(b.Context(), queue.Message{ID: id, Actor: key, Method: "m", Payload: payload}); err != nil {
				return err
			}
			tail, err := j.Append(b.Context(), key, 1, tails[actor], []journal.Entry{
				{Kind: journal.KindInvocation, Method: "m", Payload: payload},
				{Kind: journal.KindMessageAck, IdempotencyKey: id},
			})
			tails[actor] = tail
			return err
		})
	})
}
