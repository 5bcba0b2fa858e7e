package inmem

import (
	"context"
	"fmt"
	"sync"

	"github.com/loom-mesh/loom/journal"
)

// Journal is an in-memory journal.Journal with the same semantics as the
// durable backends, minus durability. Entries and snapshots are kept in
// their encoded form (journal.MarshalEntry, journal.MarshalSnapshot), which
// copies them on the way in and makes what Read returns identical, field
// for field, to what a FileJournal returns.
//
// All state is guarded by mu; every method holds it for its whole
// duration. There are no goroutines.
type Journal struct {
	mu     sync.Mutex
	closed bool
	actors map[string]*actorLog
}

// actorLog is one actor's state.
type actorLog struct {
	state   journal.ActorState
	first   uint64   // Seq of entries[0]; entries below it were truncated
	entries [][]byte // encoded entries first, first+1, ..., state.Tail
	snap    []byte   // encoded snapshot, nil if none
}

var _ journal.Journal = (*Journal)(nil)

// NewJournal returns an empty in-memory journal.
func NewJournal() *Journal {
	return &Journal{actors: map[string]*actorLog{}}
}

// lock takes mu after the checks every method shares: ctx (a done context
// means no effect) and closed. On nil the caller must unlock mu.
func (j *Journal) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("%w: in-memory journal", journal.ErrClosed)
	}
	return nil
}

// actor returns the actor's log, creating it (unstored) if absent.
func (j *Journal) actor(key string) *actorLog {
	if a, ok := j.actors[key]; ok {
		return a
	}
	return &actorLog{first: 1}
}

// Append implements journal.Journal.
func (j *Journal) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	if err := j.lock(ctx); err != nil {
		return 0, err
	}
	defer j.mu.Unlock()
	a := j.actor(actor)
	if err := a.state.CheckAppend(actor, token, expectedSeq); err != nil {
		return 0, err
	}
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		a.entries = append(a.entries, journal.MarshalEntry(e))
	}
	a.state = a.state.Appended(token, len(entries))
	j.actors[actor] = a
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
	defer j.mu.Unlock()
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
	defer j.mu.Unlock()
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
	defer j.mu.Unlock()
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
	defer j.mu.Unlock()
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
	defer j.mu.Unlock()
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

// Close implements journal.Journal. It waits for the operation in flight,
// if any (it takes mu), and drops all data.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	j.actors = nil
	return nil
}
