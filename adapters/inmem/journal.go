package inmem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// Journal is an in-memory journal.Journal with the same semantics as the
// durable backends, minus durability. Entries and snapshots are kept in
// their encoded form (journal.MarshalEntry, journal.MarshalSnapshot), which
// copies them on the way in and makes what Read returns identical, field
// for field, to what a FileJournal returns.
//
// It is also the queue.Store of the same actors: its queues are the
// queuesm state machine on kv.Mem buckets, and an Append applies its
// acknowledgements and sends in the same critical section as its entries
// (see queue.Store). It is a queue.Notifier too.
//
// All state is guarded by mu; every method holds it for its whole
// duration. The only goroutine is the one Notify starts to deliver
// notifications; Close stops it and waits for it.
type Journal struct {
	mu     sync.Mutex
	closed bool
	actors map[string]*actorLog
	mem    *kv.Mem
	q      *queuesm.Machine
	clock  func() time.Time

	// Notifications: fn, what the machine reported since the dispatcher
	// last ran, and the dispatcher's signals.
	fn    func(actor string, at time.Time)
	notes []queue.Ready
	kick  chan struct{} // buffered 1; nil until Notify
	done  chan struct{}
	wg    sync.WaitGroup
}

// actorLog is one actor's state.
type actorLog struct {
	state   journal.ActorState
	first   uint64   // Seq of entries[0]; entries below it were truncated
	entries [][]byte // encoded entries first, first+1, ..., state.Tail
	snap    []byte   // encoded snapshot, nil if none
}

var (
	_ journal.Journal = (*Journal)(nil)
	_ queue.Store     = (*Journal)(nil)
	_ queue.Notifier  = (*Journal)(nil)
)

// Options configure a Journal. The zero value is the default.
type Options struct {
	// Retention is how long the ids of acknowledged and purged messages
	// are remembered; 0 means queue.DefaultRetention.
	Retention time.Duration
	// Clock stamps acceptances and acknowledgements; nil means time.Now.
	Clock func() time.Time
}

// NewJournal returns an empty in-memory journal with the default Options.
func NewJournal() *Journal { return NewJournalWith(Options{}) }

// NewJournalWith returns an empty in-memory journal configured by opts.
func NewJournalWith(opts Options) *Journal {
	j := &Journal{actors: map[string]*actorLog{}, mem: kv.NewMem(), clock: opts.Clock, done: make(chan struct{})}
	if j.clock == nil {
		j.clock = time.Now
	}
	j.q = queuesm.New(queuesm.NewBuckets(j.mem.Bucket), queuesm.Config{Retention: opts.Retention, OnWake: j.noted})
	return j
}

// noted collects a notification of the machine; mu is held.
func (j *Journal) noted(actor string, at int64) {
	if j.fn != nil {
		j.notes = append(j.notes, queue.Ready{Actor: actor, At: time.Unix(0, at).UTC()})
	}
}

// lockAs takes mu after the checks every method shares: ctx (a done context
// means no effect) and closed, reported as closedErr. On nil the caller
// must call unlock.
func (j *Journal) lockAs(ctx context.Context, closedErr error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("%w: in-memory journal", closedErr)
	}
	return nil
}

// lock is lockAs for the journal's methods.
func (j *Journal) lock(ctx context.Context) error { return j.lockAs(ctx, journal.ErrClosed) }

// qlock is lockAs for the queue's methods.
func (j *Journal) qlock(ctx context.Context) error { return j.lockAs(ctx, queue.ErrClosed) }

// unlock releases mu and wakes the dispatcher if notifications wait.
func (j *Journal) unlock() {
	waiting := len(j.notes) > 0 && j.kick != nil
	j.mu.Unlock()
	if waiting {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

// now is the clock as UnixNano.
func (j *Journal) now() int64 { return queue.UnixNano(j.clock()) }

// actor returns the actor's log, creating it (unstored) if absent.
func (j *Journal) actor(key string) *actorLog {
	if a, ok := j.actors[key]; ok {
		return a
	}
	return &actorLog{first: 1}
}

// Append implements journal.Journal. Entries of kind KindMessageAck,
// KindMessageDirect and KindMessageSend are applied to the queues as
// queue.Store describes, their rules checked after the journal's and
// before anything is written.
func (j *Journal) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	if err := j.lock(ctx); err != nil {
		return 0, err
	}
	defer j.unlock()
	a := j.actor(actor)
	if err := a.state.CheckAppend(actor, token, expectedSeq); err != nil {
		return 0, err
	}
	var msgs queuesm.AppendMessages
	for _, e := range entries {
		switch e.Kind {
		case journal.KindMessageAck:
			msgs.Acks = append(msgs.Acks, e.IdempotencyKey)
		case journal.KindMessageDirect:
			msgs.Directs = append(msgs.Directs, e.IdempotencyKey)
		case journal.KindMessageSend:
			msgs.Sends = append(msgs.Sends, queuesm.Msg{ID: e.IdempotencyKey, Encoded: e.Payload})
		}
	}
	now := j.now()
	if !msgs.Empty() {
		invalid, rule, err := j.q.CheckAppend(now, actor, &msgs)
		switch {
		case err != nil:
			return 0, fmt.Errorf("inmem: append to %q: %w", actor, err)
		case invalid != nil:
			return 0, fmt.Errorf("%w: append to %q: %w", journal.ErrInvalid, actor, invalid)
		case rule != nil:
			return 0, fmt.Errorf("%w: append to %q: %w", journal.ErrAck, actor, rule)
		}
	}
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		a.entries = append(a.entries, journal.MarshalEntry(e))
	}
	a.state = a.state.Appended(token, len(entries))
	j.actors[actor] = a
	// The checks passed: on kv.Mem these can fail only if memory is corrupt.
	if !msgs.Empty() {
		if err := j.q.ApplyAppend(now, actor, &msgs); err != nil {
			return 0, fmt.Errorf("inmem: append to %q: %w", actor, err)
		}
	}
	return a.state.Tail, nil
}

// Read implements journal.Journal.
func (j *Journal) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	if err := journal.CheckActor(actor); err != nil {
		return nil, err
	}
	if err := j.lock(ctx); err != nil {
		return nil, err
	}
	defer j.unlock()
	a := j.actor(actor)
	from := max(fromSeq, a.first)
	if from > a.state.Tail {
		return nil, nil
	}
	out := make([]journal.Entry, 0, a.state.Tail-from+1)
	for _, rec := range a.entries[from-a.first:] {
		e, err := journal.UnmarshalEntry(rec)
		if err != nil { // only if memory was corrupted
			return nil, fmt.Errorf("inmem: read %q: %w", actor, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Tail implements journal.Journal.
func (j *Journal) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Tail{}, err
	}
	if err := j.lock(ctx); err != nil {
		return journal.Tail{}, err
	}
	defer j.unlock()
	st := j.actor(actor).state
	return journal.Tail{Seq: st.Tail, Token: st.Token}, nil
}

// SaveSnapshot implements journal.Journal.
func (j *Journal) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	if err := j.lock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	a := j.actor(actor)
	if err := a.state.CheckSnapshot(actor, token, snap.Seq); err != nil {
		return err
	}
	snap.Token = token
	a.snap = journal.MarshalSnapshot(snap)
	a.state = a.state.Snapshotted(token, snap.Seq)
	j.actors[actor] = a
	return nil
}

// LoadSnapshot implements journal.Journal.
func (j *Journal) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Snapshot{}, false, err
	}
	if err := j.lock(ctx); err != nil {
		return journal.Snapshot{}, false, err
	}
	defer j.unlock()
	a := j.actor(actor)
	if a.snap == nil {
		return journal.Snapshot{}, false, nil
	}
	s, err := journal.UnmarshalSnapshot(a.snap)
	if err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("inmem: load snapshot of %q: %w", actor, err)
	}
	return s, true, nil
}

// Truncate implements journal.Journal. A successful Truncate, even one that
// removes nothing, raises the actor's highest token to token.
func (j *Journal) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	if err := j.lock(ctx); err != nil {
		return err
	}
	defer j.unlock()
	a := j.actor(actor)
	if err := a.state.CheckTruncate(actor, token, throughSeq); err != nil {
		return err
	}
	if throughSeq >= a.first {
		// Copy the survivors so the truncated records can be collected.
		a.entries = append([][]byte(nil), a.entries[throughSeq-a.first+1:]...)
		a.first = throughSeq + 1
	}
	a.state = a.state.Truncated(token)
	j.actors[actor] = a
	return nil
}

// Close implements journal.Journal and queue.Store. It waits for the
// operation in flight, if any (it takes mu), drops all data, and stops the
// notification goroutine, waiting for it.
func (j *Journal) Close() error {
	j.mu.Lock()
	first := !j.closed
	j.closed = true
	j.actors, j.mem, j.q, j.notes, j.fn = nil, nil, nil, nil, nil
	j.mu.Unlock()
	if first {
		close(j.done)
	}
	j.wg.Wait()
	return nil
}
