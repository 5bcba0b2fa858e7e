package raftlock

import (
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

// Queries on the local replica. Each runs on one consistent view (the
// overlays over a bbolt read transaction, fsm.view) on the caller's
// goroutine, sees the state after some applied batch, and asks the state
// machine the records belong to, which changes nothing when it reads.

// readEntries returns actor's entries with Seq >= from. The records are
// copied out of the view and decoded after it is released: a long read
// delays the applies (which wait for readers) as little as it can.
func (f *fsm) readEntries(actor string, from uint64) ([]journal.Entry, error) {
	var recs [][]byte
	err := f.view(func(l *layers) error {
		recs = journalsm.New(l.journalBuckets(), nil).Entries(actor, from)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]journal.Entry, len(recs))
	for i, rec := range recs {
		if out[i], err = journal.UnmarshalEntry(rec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *fsm) actorState(actor string) (journal.ActorState, error) {
	var st journal.ActorState
	err := f.view(func(l *layers) error {
		var err error
		st, err = journalsm.New(l.journalBuckets(), nil).State(actor)
		return err
	})
	return st, err
}

func (f *fsm) loadSnapshot(actor string) (journal.Snapshot, bool, error) {
	var (
		snap journal.Snapshot
		ok   bool
	)
	err := f.view(func(l *layers) error {
		var err error
		snap, ok, err = journalsm.New(l.journalBuckets(), nil).Snapshot(actor)
		return err
	})
	return snap, ok, err
}

// holder reports the lock on key if its session has not lapsed at now
// (UnixNano).
func (f *fsm) holder(key string, now int64) (lock.LockInfo, bool, error) {
	var (
		info lock.LockInfo
		ok   bool
	)
	err := f.view(func(l *layers) error {
		var err error
		info, ok, err = locksm.New(l.lockBuckets(), nil).Holder(key, now)
		return err
	})
	return info, ok, err
}

// hasLapsed reports whether some session's deadline is before now
// (UnixNano): the leader's reaper then commits a reap command.
func (f *fsm) hasLapsed(now int64) (bool, error) {
	var lapsed bool
	err := f.view(func(l *layers) error {
		lapsed = locksm.New(l.lockBuckets(), nil).Lapsed(now)
		return nil
	})
	return lapsed, err
}
