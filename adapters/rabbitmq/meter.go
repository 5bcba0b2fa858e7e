package rabbitmq

import (
	"slices"
	"sync/atomic"
	"time"
)

// Meter counts what a Broker sends and how it fares, for /health and
// /metrics, in the shape of adapters/postgres.Meter. It is safe for
// concurrent use and costs a few atomic adds and a clock read per round
// trip.
//
// What it counts:
//
//   - Publishes: messages sent with a confirm awaited (new messages,
//     retries, dead letters, replays, ladder hops). Each is one round
//     trip: its latency runs from the send to the confirm.
//   - Acks and Nacks: settlements sent (no answer is awaited, so they have
//     no latency); Gets: basic.get round trips (dead-letter scans);
//     Declares: topology declarations (one per connection).
//   - ConnErrors: round trips that got no answer (no connection, lost
//     connection, ctx ended) and settlements that could not be sent;
//     ErrorReplies: answers that were refusals (negative confirm, a
//     returned unroutable message, a channel closed by the broker).
//   - Retries: failed deliveries retried (in place for fifo, on the
//     ladder otherwise); DeadLettered: messages this node dead-lettered
//     (the broker's own, by delivery limit, are not seen here).
//   - Dials, DialErrors and Reconnects: connection attempts, the failed
//     ones, and the successful reconnections after a loss.
type Meter struct {
	publishes, acks, nacks, gets, declares atomic.Uint64
	connErrors, errorReplies               atomic.Uint64
	retries, deadLettered                  atomic.Uint64
	dials, dialErrors, reconnects          atomic.Uint64
	answered                               atomic.Uint64
	latencySum, last                       atomic.Int64
	buckets                                [len(LatencyBounds)]atomic.Uint64
	recent                                 [recentSize]atomic.Int64
	recentNext                             atomic.Uint64
}

// LatencyBounds are the upper bounds of the latency histogram's buckets,
// as in adapters/postgres.
var LatencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

const recentSize = 256

// MeterStats is what a Meter has counted. Fields are read one by one.
type MeterStats struct {
	Publishes, Acks, Nacks, Gets, Declares uint64
	ConnErrors, ErrorReplies               uint64
	Retries, DeadLettered                  uint64
	Dials, DialErrors, Reconnects          uint64

	// Latency of the answered round trips: how many, their sum, a
	// cumulative histogram over LatencyBounds, the latest, and the median
	// and 99th percentile of the latest Recent (at most 256).
	Answered   uint64
	LatencySum time.Duration
	Buckets    []Bucket
	Last       time.Duration
	P50, P99   time.Duration
	Recent     int
}

// Bucket is one bucket of a latency histogram.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// Snapshot returns the counts so far. A nil Meter has counted nothing.
func (m *Meter) Snapshot() MeterStats {
	if m == nil {
		return MeterStats{}
	}
	s := MeterStats{
		Publishes: m.publishes.Load(), Acks: m.acks.Load(), Nacks: m.nacks.Load(),
		Gets: m.gets.Load(), Declares: m.declares.Load(),
		ConnErrors: m.connErrors.Load(), ErrorReplies: m.errorReplies.Load(),
		Retries: m.retries.Load(), DeadLettered: m.deadLettered.Load(),
		Dials: m.dials.Load(), DialErrors: m.dialErrors.Load(), Reconnects: m.reconnects.Load(),
		Answered:   m.answered.Load(),
		LatencySum: time.Duration(m.latencySum.Load()),
		Last:       time.Duration(m.last.Load()),
		Buckets:    make([]Bucket, len(LatencyBounds)),
	}
	var cum uint64
	for i, b := range LatencyBounds {
		cum += m.buckets[i].Load()
		s.Buckets[i] = Bucket{UpperBound: b, Count: cum}
	}
	n := min(m.recentNext.Load(), recentSize)
	if n > 0 {
		recent := make([]time.Duration, n)
		for i := range recent {
			recent[i] = time.Duration(m.recent[i].Load())
		}
		slices.Sort(recent)
		s.Recent = int(n)
		s.P50 = recent[(n-1)*50/100]
		s.P99 = recent[(n-1)*99/100]
	}
	return s
}

// answer records the latency of an answered round trip.
func (m *Meter) answer(d time.Duration) {
	m.answered.Add(1)
	m.latencySum.Add(int64(d))
	m.last.Store(int64(d))
	for i, b := range LatencyBounds {
		if d <= b {
			m.buckets[i].Add(1)
			break
		}
	}
	m.recent[(m.recentNext.Add(1)-1)%recentSize].Store(int64(d))
}
