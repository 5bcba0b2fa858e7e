package raftlock

import (
	"bytes"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// Queries on the local replica. Each runs on one consistent view (the
// overlays over a bbolt read transaction, fsm.view) on the caller's
// goroutine and sees the state after some applied batch.

// readEntries returns actor's entries with Seq >= from. The records are
// copied out of the view and decoded after it is released: a long read
// delays the applies (which wait for readers) as little as it can.
func (f *fsm) readEntries(actor string, from uint64) ([]journal.Entry, error) {
	var recs [][]byte
	err := f.view(func(l *layers) error {
		prefix := actorPrefix(actor)
		c := l.bucket(bLog).PrefixCursor(prefix)
		for k, v := c.Seek(entryKey(prefix, max(from, 1))); isEntryKeyOf(k, prefix); k, v = c.Next() {
			recs = append(recs, bytes.Clone(v)) // v is only valid in tx
		}
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
		v := l.bucket(bActors).Get([]byte(actor))
		if v == nil {
			return nil
		}
		var err error
		st, err = unmarshalActor(v)
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
		v := l.bucket(bSnapshots).Get([]byte(actor))
		if v == nil {
			return nil
		}
		var err error
		snap, err = journal.UnmarshalSnapshot(v)
		ok = err == nil
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
		v := l.bucket(bLocks).Get([]byte(key))
		if v == nil {
			return nil
		}
		g, err := unmarshalGrant(v)
		if err != nil {
			return err
		}
		sv := l.bucket(bSessions).Get([]byte(g.session))
		if sv == nil {
			return nil
		}
		s, err := unmarshalSession(sv)
		if err != nil || s.deadline < now {
			return err
		}
		info, ok = lock.LockInfo{Key: key, Session: g.session, Owner: s.owner, Token: g.token}, true
		return nil
	})
	return info, ok, err
}

// hasLapsed reports whether some session's deadline is before now
// (UnixNano): the leader's reaper then commits a reap command.
func (f *fsm) hasLapsed(now int64) (bool, error) {
	var lapsed bool
	err := f.view(func(l *layers) error {
		k, _ := l.bucket(bExpiry).Cursor().First()
		lapsed = k != nil && expiryDeadline(k) < now
		return nil
	})
	return lapsed, err
}
