package postgres

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Meter is a pgx tracer (pgx.QueryTracer, BatchTracer, PrepareTracer and
// ConnectTracer) that counts what a pool sends and how it fares: round
// trips, statements, failures by kind and the latency of round trips,
// for /health and /metrics. NewPool installs it as the tracer of every
// connection; one Meter may serve several pools, and then counts them
// all together. The zero Meter is ready to use; it is safe for concurrent
// use, and costs a few atomic adds, a clock read and a context value per
// round trip.
//
// What it counts:
//
//   - A round trip is a statement sent alone (Exec, Query, QueryRow: the
//     adapters' BEGIN and COMMIT are statements too) or a batch (however
//     many statements it holds), whether or not an answer came back.
//     Statements counts every statement, each of a batch's included.
//   - Prepares counts the round trips in which pgx prepares a statement
//     the first time a connection sends it (it caches them); they are not
//     in RoundTrips.
//   - A round trip that got no answer (a connection lost or timed out,
//     the caller's context ending) counts once in ConnErrors. An answered
//     one's latency is recorded.
//   - A statement answered with an error counts in ErrorReplies, and if
//     that error is a serialization failure or a deadlock (SQLSTATE 40001,
//     40P01), in Conflicts too. The adapters answer their refusals (a
//     fenced append, a lock held by another) with ordinary rows, so those
//     are not errors. In a batch that failed, pgx reads no answer to
//     the statements after the failing one (the server skipped them), so
//     only the failing one counts.
//   - Dials counts connection attempts, DialErrors the failed ones (a
//     refused login among them).
//
// Latency is measured around the whole round trip as pgx sees it, from
// the call to the last row read.
type Meter struct {
	roundTrips, batches, statements     atomic.Uint64
	connErrors, errorReplies, conflicts atomic.Uint64
	prepares, dials, dialErrors         atomic.Uint64
	answered                            atomic.Uint64
	latencySum, last                    atomic.Int64 // nanoseconds
	buckets                             [len(LatencyBounds)]atomic.Uint64
	recent                              [recentSize]atomic.Int64 // nanoseconds, a ring
	recentNext                          atomic.Uint64
}

var (
	_ pgx.QueryTracer   = (*Meter)(nil)
	_ pgx.BatchTracer   = (*Meter)(nil)
	_ pgx.PrepareTracer = (*Meter)(nil)
	_ pgx.ConnectTracer = (*Meter)(nil)
)

// LatencyBounds are the upper bounds of the latency histogram's buckets
// (Stats.Buckets), in the manner of Prometheus: from 100 µs to 5 s (half
// of the default QueryTimeout).
var LatencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// recentSize is how many of the latest answered round trips P50 and P99
// are taken over.
const recentSize = 256

// Stats is what a Meter has counted since it was made. Each field is read
// on its own (atomically), so a Stats taken while statements are under
// way may be a round trip or so out of step between fields.
type Stats struct {
	RoundTrips uint64 // statements sent alone, plus batches
	Batches    uint64 // of RoundTrips, the batches
	Statements uint64 // every statement, each of a batch's included

	ConnErrors   uint64 // round trips that got no answer: connection, timeout, context
	ErrorReplies uint64 // statements answered with an error
	Conflicts    uint64 // of ErrorReplies, serialization failures and deadlocks

	Prepares   uint64 // round trips preparing a statement, in nothing above
	Dials      uint64 // connection attempts
	DialErrors uint64 // of Dials, the failed ones

	// Latency of the answered round trips: how many (the histogram's
	// +Inf bucket), their sum, a histogram with cumulative counts over
	// LatencyBounds, the latest, and the median and 99th percentile of
	// the latest Recent of them (at most 256).
	Answered   uint64
	LatencySum time.Duration
	Buckets    []Bucket
	Last       time.Duration
	P50, P99   time.Duration
	Recent     int
}

// Bucket is one bucket of a latency histogram: Count round trips took at
// most UpperBound.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// Snapshot returns the counts so far. A nil Meter has counted nothing.
func (m *Meter) Snapshot() Stats {
	if m == nil {
		return Stats{}
	}
	s := Stats{
		RoundTrips:   m.roundTrips.Load(),
		Batches:      m.batches.Load(),
		Statements:   m.statements.Load(),
		ConnErrors:   m.connErrors.Load(),
		ErrorReplies: m.errorReplies.Load(),
		Conflicts:    m.conflicts.Load(),
		Prepares:     m.prepares.Load(),
		Dials:        m.dials.Load(),
		DialErrors:   m.dialErrors.Load(),
		Answered:     m.answered.Load(),
		LatencySum:   time.Duration(m.latencySum.Load()),
		Last:         time.Duration(m.last.Load()),
		Buckets:      make([]Bucket, len(LatencyBounds)),
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

// startKey keys the start of a round trip in its context.
type startKey struct{}

// batchKey keys a batch's state in its context.
type batchKey struct{}

type batchState struct {
	start    time.Time
	answered bool // no statement lost its answer
}

func started(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(startKey{}).(time.Time)
	return t, ok
}

// TraceQueryStart implements pgx.QueryTracer.
func (m *Meter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, startKey{}, time.Now())
}

// TraceQueryEnd implements pgx.QueryTracer.
func (m *Meter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	m.roundTrips.Add(1)
	m.statements.Add(1)
	if m.reply(data.Err) {
		if t, ok := started(ctx); ok {
			m.answer(time.Since(t))
		}
	} else {
		m.connErrors.Add(1)
	}
}

// TraceBatchStart implements pgx.BatchTracer.
func (m *Meter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if data.Batch != nil {
		m.statements.Add(uint64(data.Batch.Len()))
	}
	return context.WithValue(ctx, batchKey{}, &batchState{start: time.Now(), answered: true})
}

// TraceBatchQuery implements pgx.BatchTracer.
func (m *Meter) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if !m.reply(data.Err) {
		if b, ok := ctx.Value(batchKey{}).(*batchState); ok {
			b.answered = false // read by TraceBatchEnd, on the same goroutine
		}
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (m *Meter) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	m.roundTrips.Add(1)
	m.batches.Add(1)
	b, ok := ctx.Value(batchKey{}).(*batchState)
	answered := ok && b.answered && (data.Err == nil || isReply(data.Err))
	if answered {
		m.answer(time.Since(b.start))
	} else {
		m.connErrors.Add(1)
	}
}

// TracePrepareStart implements pgx.PrepareTracer.
func (m *Meter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (m *Meter) TracePrepareEnd(_ context.Context, _ *pgx.Conn, data pgx.TracePrepareEndData) {
	if !data.AlreadyPrepared {
		m.prepares.Add(1)
	}
}

// TraceConnectStart implements pgx.ConnectTracer.
func (m *Meter) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

// TraceConnectEnd implements pgx.ConnectTracer.
func (m *Meter) TraceConnectEnd(_ context.Context, data pgx.TraceConnectEndData) {
	m.dials.Add(1)
	if data.Err != nil {
		m.dialErrors.Add(1)
	}
}

// reply counts err, a statement's outcome, if it is an error reply, and
// reports whether an answer came back.
func (m *Meter) reply(err error) bool {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return true
	}
	if !isReply(err) {
		return false
	}
	m.errorReplies.Add(1)
	if IsConflict(err) {
		m.conflicts.Add(1)
	}
	return true
}

// isReply reports whether err is the server's answer (an error of its).
func isReply(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
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
