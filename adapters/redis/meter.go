package redis

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Meter is a go-redis hook (goredis.Hook) that counts what a client sends
// and how it fares: round trips, commands, failures and the latency of
// round trips, for /health and /metrics. Add it to a client with
// client.AddHook; one Meter may serve several clients, and then counts
// them all together. The zero Meter is ready to use; it is safe for
// concurrent use, and its hooks cost a few atomic adds and a clock read
// per round trip.
//
// What it counts:
//
//   - A round trip is a command sent alone or a pipeline (however many
//     commands it holds), whether or not an answer came back. Commands
//     counts every command, each of a pipeline's included.
//   - A round trip that got no answer (no connection could be made, none
//     was free, a timeout, a lost connection, the caller's context ending)
//     counts once in ConnErrors. An answered one's latency is recorded.
//   - A command answered with an error reply counts in ErrorReplies, and,
//     if it ran a script (EVAL, EVALSHA, FCALL and their _RO forms), in
//     ScriptErrors too. A NOSCRIPT reply (the server's script cache does
//     not hold the script; the adapters load it and send it again) counts
//     in NoScript only. A nil reply (a missing key) is not an error. The
//     adapters' scripts answer their refusals (a fenced append, a lock held
//     by another) with ordinary replies, so those are not counted as
//     errors.
//   - go-redis sets up each new connection with commands of its own
//     (HELLO, AUTH, SELECT, CLIENT SETINFO, ...), sent inside the round
//     trip that needed the connection. They count in Setup alone, so that
//     the counts above are the caller's commands. Dials counts connection
//     attempts and DialErrors the failed ones.
//
// Latency is measured around the whole round trip as its caller sees it,
// including the wait for a pooled connection and the dial of a new one.
type Meter struct {
	roundTrips, pipelines, commands        atomic.Uint64
	connErrors, errorReplies, scriptErrors atomic.Uint64
	noScript, dials, dialErrors, setup     atomic.Uint64
	answered                               atomic.Uint64
	latencySum, last                       atomic.Int64 // nanoseconds
	buckets                                [len(LatencyBounds)]atomic.Uint64
	recent                                 [recentSize]atomic.Int64 // nanoseconds, a ring
	recentNext                             atomic.Uint64
}

var _ goredis.Hook = (*Meter)(nil)

// LatencyBounds are the upper bounds of the latency histogram's buckets
// (Stats.Buckets), in the manner of Prometheus: from 100 µs (a round trip
// on loopback) to 5 s (past go-redis's default read timeout of 3 s).
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
// on its own (atomically), so a Stats taken while commands are under way
// may be a round trip or so out of step between fields.
type Stats struct {
	RoundTrips uint64 // commands sent alone, plus pipelines
	Pipelines  uint64 // of RoundTrips, the pipelines
	Commands   uint64 // every command, each of a pipeline's included

	ConnErrors   uint64 // round trips that got no answer: connection, timeout, context
	ErrorReplies uint64 // commands answered with an error reply (NOSCRIPT apart)
	ScriptErrors uint64 // of ErrorReplies, those to EVAL, EVALSHA, FCALL (and _RO)
	NoScript     uint64 // NOSCRIPT replies: the script was loaded and sent again

	Dials      uint64 // connection attempts
	DialErrors uint64 // of Dials, the failed ones
	Setup      uint64 // round trips setting up a new connection (HELLO, ...), in nothing above

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
		Pipelines:    m.pipelines.Load(),
		Commands:     m.commands.Load(),
		ConnErrors:   m.connErrors.Load(),
		ErrorReplies: m.errorReplies.Load(),
		ScriptErrors: m.scriptErrors.Load(),
		NoScript:     m.noScript.Load(),
		Dials:        m.dials.Load(),
		DialErrors:   m.dialErrors.Load(),
		Setup:        m.setup.Load(),
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

// DialHook implements goredis.Hook: it counts connection attempts.
func (m *Meter) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		m.dials.Add(1)
		if err != nil {
			m.dialErrors.Add(1)
		}
		return conn, err
	}
}

// ProcessHook implements goredis.Hook: a command sent alone.
func (m *Meter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if isSetup(cmd.Name()) {
			m.setup.Add(1)
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		d := time.Since(start)
		m.roundTrips.Add(1)
		m.commands.Add(1)
		// go-redis sets cmd's error from the hook's result, after it.
		if m.reply(cmd, err) {
			m.answer(d)
		} else {
			m.connErrors.Add(1)
		}
		return err
	}
}

// ProcessPipelineHook implements goredis.Hook: a pipeline (or a
// transaction) is one round trip.
func (m *Meter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if len(cmds) > 0 && isSetup(cmds[0].Name()) {
			m.setup.Add(1)
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		d := time.Since(start)
		m.roundTrips.Add(1)
		m.pipelines.Add(1)
		m.commands.Add(uint64(len(cmds)))
		answered := true
		for _, cmd := range cmds {
			if !m.reply(cmd, cmd.Err()) {
				answered = false
			}
		}
		if answered {
			m.answer(d)
		} else {
			m.connErrors.Add(1)
		}
		return err
	}
}

// reply counts cmd's error reply, if err (its outcome) is one, and
// reports whether an answer came back for it.
func (m *Meter) reply(cmd goredis.Cmder, err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return true
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	switch {
	case goredis.HasErrorPrefix(err, "NOSCRIPT"):
		m.noScript.Add(1)
	case isScript(cmd.Name()):
		m.errorReplies.Add(1)
		m.scriptErrors.Add(1)
	default:
		m.errorReplies.Add(1)
	}
	return true
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

// isSetup reports whether a command (its lower-case name) is one go-redis
// sends to set up a connection. Loom's adapters send none of them.
func isSetup(name string) bool {
	switch name {
	case "hello", "auth", "select", "client", "readonly":
		return true
	}
	return false
}

func isScript(name string) bool {
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		return true
	}
	return false
}
