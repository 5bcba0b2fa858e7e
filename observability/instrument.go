package observability

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// InstrumentJournal wraps j so that appends are timed and counted
// (loom_journal_*), fencing rejections counted, and, when raft is true (j
// is the Raft store, whose writes are Raft commands), writes are also
// observed as loom_raft_apply_duration_seconds. With a TracerProvider,
// operations called with a recording span in their context get a child
// span ("loom.journal.append", "loom.journal.read", ...); background work
// records none. The wrapper adds nothing else: errors and results are j's.
func InstrumentJournal(j journal.Journal, m *Metrics, tp trace.TracerProvider, raft bool) journal.Journal {
	ij := &instrumentedJournal{j: j, m: m, raft: raft}
	if tp != nil {
		ij.tracer = tp.Tracer(instrumentationName)
	}
	return ij
}

type instrumentedJournal struct {
	j      journal.Journal
	m      *Metrics
	tracer trace.Tracer
	raft   bool
}

// span starts a child span when ctx carries a recording one.
func startChild(tr trace.Tracer, ctx context.Context, name, actor string) (context.Context, trace.Span) {
	if tr == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return tr.Start(ctx, name, trace.WithAttributes(AttrActor.String(actor), AttrCorrelationID.String(runtime.CorrelationID(ctx))))
}

func finish(span trace.Span, err error) {
	if span != nil {
		endSpan(span, err)
	}
}

func (ij *instrumentedJournal) applied(op string, start time.Time) {
	if ij.raft {
		ij.m.raftApply.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
}

func (ij *instrumentedJournal) fenced(op string, err error) {
	if errors.Is(err, journal.ErrFenced) {
		ij.m.fenced.WithLabelValues(op).Inc()
	}
}

func (ij *instrumentedJournal) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	ctx, span := startChild(ij.tracer, ctx, "loom.journal.append", actor)
	start := time.Now()
	tail, err := ij.j.Append(ctx, actor, token, expectedSeq, entries)
	d := time.Since(start).Seconds()
	ij.m.appendSeconds.Observe(d)
	ij.m.appendEntries.Observe(float64(len(entries)))
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, journal.ErrFenced):
		outcome = "fenced"
	case errors.Is(err, journal.ErrConflict):
		outcome = "conflict"
	default:
		outcome = "error"
	}
	ij.m.appends.WithLabelValues(outcome).Inc()
	ij.fenced("append", err)
	if ij.raft {
		ij.m.raftApply.WithLabelValues("append").Observe(d)
	}
	finish(span, err)
	return tail, err
}

func (ij *instrumentedJournal) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	ctx, span := startChild(ij.tracer, ctx, "loom.journal.read", actor)
	es, err := ij.j.Read(ctx, actor, fromSeq)
	if span != nil {
		span.SetAttributes(attrEntries.Int(len(es)))
	}
	finish(span, err)
	return es, err
}

func (ij *instrumentedJournal) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	return ij.j.Tail(ctx, actor)
}

func (ij *instrumentedJournal) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	ctx, span := startChild(ij.tracer, ctx, "loom.journal.snapshot", actor)
	start := time.Now()
	err := ij.j.SaveSnapshot(ctx, actor, token, snap)
	ij.applied("snapshot", start)
	ij.fenced("snapshot", err)
	finish(span, err)
	return err
}

func (ij *instrumentedJournal) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	ctx, span := startChild(ij.tracer, ctx, "loom.journal.load_snapshot", actor)
	s, ok, err := ij.j.LoadSnapshot(ctx, actor)
	finish(span, err)
	return s, ok, err
}

func (ij *instrumentedJournal) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	start := time.Now()
	err := ij.j.Truncate(ctx, actor, token, throughSeq)
	ij.applied("truncate", start)
	ij.fenced("truncate", err)
	return err
}

// Close closes the wrapped journal.
func (ij *instrumentedJournal) Close() error { return ij.j.Close() }

// InstrumentCoordinator wraps c so that lock acquisitions and session
// renewals are counted (loom_lock_acquisitions_total,
// loom_session_renewals_total) and, when raft is true, every command is
// observed as loom_raft_apply_duration_seconds. An Acquire called with a
// recording span in its context gets a child span "loom.lock.acquire".
func InstrumentCoordinator(c lock.Coordinator, m *Metrics, tp trace.TracerProvider, raft bool) lock.Coordinator {
	ic := &instrumentedCoordinator{c: c, m: m, raft: raft}
	if tp != nil {
		ic.tracer = tp.Tracer(instrumentationName)
	}
	return ic
}

type instrumentedCoordinator struct {
	c      lock.Coordinator
	m      *Metrics
	tracer trace.Tracer
	raft   bool
}

func (ic *instrumentedCoordinator) applied(op string, start time.Time) {
	if ic.raft {
		ic.m.raftApply.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
}

func (ic *instrumentedCoordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	start := time.Now()
	s, err := ic.c.CreateSession(ctx, owner, ttl)
	ic.applied("create_session", start)
	return s, err
}

func (ic *instrumentedCoordinator) Renew(ctx context.Context, s lock.SessionID) error {
	start := time.Now()
	err := ic.c.Renew(ctx, s)
	ic.applied("renew", start)
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, lock.ErrSessionExpired):
		outcome = "expired"
	default:
		outcome = "error"
	}
	ic.m.renewals.WithLabelValues(outcome).Inc()
	return err
}

func (ic *instrumentedCoordinator) DestroySession(ctx context.Context, s lock.SessionID) error {
	start := time.Now()
	err := ic.c.DestroySession(ctx, s)
	ic.applied("destroy_session", start)
	return err
}

func (ic *instrumentedCoordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	ctx, span := startChild(ic.tracer, ctx, "loom.lock.acquire", key)
	start := time.Now()
	tok, err := ic.c.Acquire(ctx, s, key)
	ic.applied("acquire", start)
	ic.m.lockAcquire.WithLabelValues(lockOutcome(err)).Inc()
	if span != nil && err == nil {
		span.SetAttributes(attrToken.Int64(int64(tok)))
	}
	finish(span, err)
	return tok, err
}

func (ic *instrumentedCoordinator) Release(ctx context.Context, s lock.SessionID, key string) error {
	start := time.Now()
	err := ic.c.Release(ctx, s, key)
	ic.applied("release", start)
	return err
}

func (ic *instrumentedCoordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	return ic.c.Holder(ctx, key)
}

// Close closes the wrapped coordinator.
func (ic *instrumentedCoordinator) Close() error { return ic.c.Close() }
