package journalsm

import (
	"bytes"
	"fmt"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
)

// Buckets are the buckets the machine keeps its records in (layout.go).
type Buckets struct {
	Actors, Log, Snapshots kv.Bucket
}

// Locks is what the journal rules need of the locks: the second fencing
// rule (a write with a token below that of the lock held on the actor's
// key is fenced). HeldToken returns the token of the lock on key if it is
// held at the stamped clock now, held false if not; it may free a lock
// whose session has lapsed, as every lock rule that meets one does.
// locksm.Machine implements it.
type Locks interface {
	HeldToken(now int64, key string) (token uint64, held bool, err error)
}

// Machine applies the journal commands to its buckets. Each method is one
// command: a rule violation (fenced, conflict, invalid) comes back as
// rule, wrapping the journal package's sentinel, and changes nothing in
// the journals; err is a storage failure or a corrupt record, fatal to the
// state machine. now is the stamped clock of the command (UnixNano), the
// same on every replica; the journal rules use it only to ask locks.
type Machine struct {
	b     Buckets
	locks Locks
}

// New returns a machine over b that consults locks for the lock fence.
// locks may be nil for a machine used only to read (State, Entries,
// Snapshot, WrittenToken).
func New(b Buckets, locks Locks) *Machine { return &Machine{b: b, locks: locks} }

// State returns actor's state, the zero state if it never was written.
func (m *Machine) State(actor string) (journal.ActorState, error) {
	v := m.b.Actors.Get([]byte(actor))
	if v == nil {
		return journal.ActorState{}, nil
	}
	return unmarshalActor(v)
}

// WrittenToken returns the highest token that has written actor's journal
// (0 if none): a new lock grant's token is above it (locksm.Journals).
func (m *Machine) WrittenToken(actor string) (uint64, error) {
	st, err := m.State(actor)
	return st.Token, err
}

// checkLockFence is the second fencing rule: while the lock of the same key
// is held (its session alive at the stamped clock) with token T, a write
// with a lower token is fenced, even if nothing was written under T yet.
// This makes an ex-owner harmless from the moment a new owner acquires.
func (m *Machine) checkLockFence(now int64, what, actor string, token uint64) (rule, err error) {
	held, ok, err := m.locks.HeldToken(now, actor)
	if err != nil || !ok || token >= held {
		return nil, err
	}
	return fmt.Errorf("%w: %s %q with token %d, the lock is held with token %d", journal.ErrFenced, what, actor, token, held), nil
}

// prologue checks the actor key and the lock fence and loads the actor's
// state.
func (m *Machine) prologue(now int64, what, actor string, token uint64) (journal.ActorState, error, error) {
	if rule := journal.CheckActor(actor); rule != nil {
		return journal.ActorState{}, rule, nil
	}
	if rule, err := m.checkLockFence(now, what, actor, token); rule != nil || err != nil {
		return journal.ActorState{}, rule, err
	}
	st, err := m.State(actor)
	return st, nil, err
}

// CheckAppend applies Append's rules, for an append of n records, and
// writes nothing: raftlock checks the rules of the journal first, then
// those of the message entries the append carries, before either writes.
func (m *Machine) CheckAppend(now int64, actor string, token, expected uint64, n int) (rule, err error) {
	st, rule, err := m.prologue(now, "append to", actor, token)
	if rule != nil || err != nil {
		return rule, err
	}
	if n == 0 || uint64(n) > ^uint64(0)-expected {
		return fmt.Errorf("%w: append to %q with %d entries after seq %d", journal.ErrInvalid, actor, n, expected), nil
	}
	return st.CheckAppend(actor, token, expected), nil
}

// Append stores records (journal.MarshalEntry records, already stamped
// with their seqs, actor and token) as actor's entries after expected,
// which must be its tail, and returns the new tail.
func (m *Machine) Append(now int64, actor string, token, expected uint64, records [][]byte) (tail uint64, rule, err error) {
	st, rule, err := m.prologue(now, "append to", actor, token)
	if rule != nil || err != nil {
		return 0, rule, err
	}
	if len(records) == 0 || uint64(len(records)) > ^uint64(0)-expected {
		return 0, fmt.Errorf("%w: append to %q with %d entries after seq %d", journal.ErrInvalid, actor, len(records), expected), nil
	}
	if rule := st.CheckAppend(actor, token, expected); rule != nil {
		return 0, rule, nil
	}
	prefix := EntryPrefix(actor)
	for i, rec := range records {
		if err := m.b.Log.Put(EntryKey(prefix, st.Tail+uint64(i)+1), rec); err != nil {
			return 0, nil, err
		}
	}
	st = st.Appended(token, len(records))
	return st.Tail, nil, m.b.Actors.Put([]byte(actor), MarshalActor(st))
}

// SaveSnapshot stores record (a journal.MarshalSnapshot record) as actor's
// snapshot at seq, replacing the previous one.
func (m *Machine) SaveSnapshot(now int64, actor string, token, seq uint64, record []byte) (rule, err error) {
	st, rule, err := m.prologue(now, "snapshot of", actor, token)
	if rule != nil || err != nil {
		return rule, err
	}
	if rule := st.CheckSnapshot(actor, token, seq); rule != nil {
		return rule, nil
	}
	if err := m.b.Snapshots.Put([]byte(actor), record); err != nil {
		return nil, err
	}
	return nil, m.b.Actors.Put([]byte(actor), MarshalActor(st.Snapshotted(token, seq)))
}

// Truncate deletes actor's entries with seqs up to through.
func (m *Machine) Truncate(now int64, actor string, token, through uint64) (rule, err error) {
	st, rule, err := m.prologue(now, "truncate of", actor, token)
	if rule != nil || err != nil {
		return rule, err
	}
	if rule := st.CheckTruncate(actor, token, through); rule != nil {
		return rule, nil
	}
	if err := m.deleteEntries(EntryPrefix(actor), through); err != nil {
		return nil, err
	}
	return nil, m.b.Actors.Put([]byte(actor), MarshalActor(st.Truncated(token)))
}

// deleteEntries removes the entries under prefix with Seq <= through. The
// keys are collected first: deleting under a moving cursor can skip keys.
func (m *Machine) deleteEntries(prefix []byte, through uint64) error {
	var keys [][]byte
	c := m.b.Log.PrefixCursor(prefix)
	for k, _ := c.First(); isEntryKeyOf(k, prefix) && entrySeq(k) <= through; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := m.b.Log.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// --- reads ---

// Entries returns copies of actor's entry records with Seq >= from, in seq
// order, undecoded: raftlock decodes them after it has released its view.
func (m *Machine) Entries(actor string, from uint64) [][]byte {
	var recs [][]byte
	prefix := EntryPrefix(actor)
	c := m.b.Log.PrefixCursor(prefix)
	for k, v := c.Seek(EntryKey(prefix, max(from, 1))); isEntryKeyOf(k, prefix); k, v = c.Next() {
		recs = append(recs, bytes.Clone(v))
	}
	return recs
}

// Snapshot returns actor's snapshot, ok false if it has none.
func (m *Machine) Snapshot(actor string) (journal.Snapshot, bool, error) {
	v := m.b.Snapshots.Get([]byte(actor))
	if v == nil {
		return journal.Snapshot{}, false, nil
	}
	snap, err := journal.UnmarshalSnapshot(v)
	return snap, err == nil, err
}
