package locksm

import (
	"bytes"
	"fmt"
	"math"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// MaxKeyLen is the longest lock key, in bytes. It equals
// journal.MaxActorLen: a lock key is the key of the actor whose journal it
// fences.
const MaxKeyLen = journal.MaxActorLen

// MaxOwnerLen bounds a session's owner (a node id).
const MaxOwnerLen = 1024

// Buckets are the buckets the machine keeps its records in (layout.go).
type Buckets struct {
	Sessions, Expiry, Held, Locks kv.Bucket
}

// Counters are the machine's state outside its buckets (raftlock keeps
// them in its meta record): the last fencing token granted and the last
// session number issued.
type Counters struct {
	Token    uint64
	Sessions uint64
}

// Journals is what a grant needs of the journals: the highest token that
// has written key's journal (0 if none), so that a new holder's token is
// above it and the journal's history never fences it.
type Journals interface {
	WrittenToken(key string) (uint64, error)
}

// Machine applies the session and lock commands to its buckets and
// counters. Each method is one command: a rule violation (expired, held,
// not held, invalid) comes back as rule, wrapping the lock package's
// sentinel, and changes nothing; err is a storage failure or a corrupt
// record, fatal to the state machine. now is the stamped clock of the
// command (UnixNano), the same on every replica.
type Machine struct {
	b Buckets
	c *Counters
}

// New returns a machine over b and c. c may be nil for a machine used only
// to read (Holder, Lapsed).
func New(b Buckets, c *Counters) *Machine { return &Machine{b: b, c: c} }

// CheckKey reports a lock key Acquire and Release refuse, wrapping
// lock.ErrInvalid.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty lock key", lock.ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: lock key of %d bytes exceeds %d", lock.ErrInvalid, len(key), MaxKeyLen)
	}
	return nil
}

// --- sessions ---

// getSession returns the session record, ok false if there is none.
func (m *Machine) getSession(id lock.SessionID) (session, bool, error) {
	v := m.b.Sessions.Get([]byte(id))
	if v == nil {
		return session{}, false, nil
	}
	s, err := unmarshalSession(v)
	return s, err == nil, err
}

// liveSession returns the session if it exists and has not lapsed at now;
// a lapsed session is deleted with its locks.
func (m *Machine) liveSession(now int64, id lock.SessionID) (session, bool, error) {
	s, ok, err := m.getSession(id)
	if err != nil || !ok {
		return session{}, false, err
	}
	if s.deadline < now {
		return session{}, false, m.deleteSession(id, s)
	}
	return s, true, nil
}

func (m *Machine) putSession(id lock.SessionID, s session) error {
	if err := m.b.Sessions.Put([]byte(id), s.marshal()); err != nil {
		return err
	}
	return m.b.Expiry.Put(expiryKey(s.deadline, id), nil)
}

// setDeadline moves a session's deadline.
func (m *Machine) setDeadline(id lock.SessionID, s session, deadline int64) error {
	if deadline == s.deadline {
		return nil
	}
	if err := m.b.Expiry.Delete(expiryKey(s.deadline, id)); err != nil {
		return err
	}
	s.deadline = deadline
	return m.putSession(id, s)
}

// deleteSession removes a session and frees its locks.
func (m *Machine) deleteSession(id lock.SessionID, s session) error {
	prefix := heldPrefix(id)
	var keys [][]byte
	c := m.b.Held.PrefixCursor(prefix)
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		lockKey := k[len(prefix):]
		if v := m.b.Locks.Get(lockKey); v != nil {
			g, err := unmarshalGrant(v)
			if err != nil {
				return err
			}
			if g.session == id {
				if err := m.b.Locks.Delete(lockKey); err != nil {
					return err
				}
			}
		}
		if err := m.b.Held.Delete(k); err != nil {
			return err
		}
	}
	if err := m.b.Expiry.Delete(expiryKey(s.deadline, id)); err != nil {
		return err
	}
	return m.b.Sessions.Delete([]byte(id))
}

// MaxSessionLen bounds a session id that CreateSession is given.
const MaxSessionLen = 128

// CreateSession creates a session of owner that lapses ttl nanoseconds
// after now unless renewed. Its id is id if that is not empty (a
// session another machine issued, which this one must not have yet),
// else one this machine makes up.
func (m *Machine) CreateSession(now int64, owner string, ttl int64, id lock.SessionID) (lock.SessionID, error, error) {
	switch {
	case owner == "":
		return "", fmt.Errorf("%w: empty session owner", lock.ErrInvalid), nil
	case len(owner) > MaxOwnerLen:
		return "", fmt.Errorf("%w: session owner of %d bytes exceeds %d", lock.ErrInvalid, len(owner), MaxOwnerLen), nil
	case ttl <= 0:
		return "", fmt.Errorf("%w: session TTL %d ns is not positive", lock.ErrInvalid, ttl), nil
	case len(id) > MaxSessionLen:
		return "", fmt.Errorf("%w: session id of %d bytes exceeds %d", lock.ErrInvalid, len(id), MaxSessionLen), nil
	}
	if id == "" {
		m.c.Sessions++
		// The number makes the id unique in this cluster; the creation
		// time makes it unlikely to name a session of an earlier
		// cluster that used the same directory names.
		id = lock.SessionID(fmt.Sprintf("s%d.%x", m.c.Sessions, uint64(now)))
	} else if _, ok, err := m.getSession(id); err != nil || ok {
		return "", fmt.Errorf("%w: session %s exists", lock.ErrInvalid, id), err
	}
	if err := m.putSession(id, session{ttl: ttl, deadline: addDuration(now, ttl), owner: owner}); err != nil {
		return "", nil, err
	}
	return id, nil, nil
}

// Renew moves the deadline of a live session to a TTL after now.
func (m *Machine) Renew(now int64, id lock.SessionID) (rule, err error) {
	s, ok, err := m.liveSession(now, id)
	if err != nil || !ok {
		return fmt.Errorf("%w: renew of session %s", lock.ErrSessionExpired, id), err
	}
	return nil, m.setDeadline(id, s, addDuration(now, s.ttl))
}

// DestroySession ends a session, lapsed or not, and frees its locks; a
// missing session is no error.
func (m *Machine) DestroySession(id lock.SessionID) error {
	s, ok, err := m.getSession(id)
	if err != nil || !ok {
		return err
	}
	return m.deleteSession(id, s)
}

// EndOwner ends every session of owner but keep, with their locks, and
// returns how many it ended.
func (m *Machine) EndOwner(owner string, keep lock.SessionID) (uint64, error) {
	type item struct {
		id lock.SessionID
		s  session
	}
	var ended []item
	err := m.b.Sessions.ForEach(func(k, v []byte) error {
		s, err := unmarshalSession(v)
		if err == nil && s.owner == owner && lock.SessionID(k) != keep {
			ended = append(ended, item{lock.SessionID(bytes.Clone(k)), s})
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, it := range ended {
		if err := m.deleteSession(it.id, it.s); err != nil {
			return 0, err
		}
	}
	return uint64(len(ended)), nil
}

// LeaderStart is a new leader's first command; prev is the clock before
// it (the previous leader's last stamp), now the new leader's stamp.
// Sessions that had lapsed by prev are expired; every other session is
// given at least a full TTL from now, so a leader change (whose clock may
// run ahead, and which cannot know when renewals sent to the old leader
// arrived) never expires a session its owner kept renewing.
func (m *Machine) LeaderStart(prev, now int64) error {
	type item struct {
		id lock.SessionID
		s  session
	}
	var all []item
	err := m.b.Sessions.ForEach(func(k, v []byte) error {
		s, err := unmarshalSession(v)
		all = append(all, item{lock.SessionID(k), s})
		return err
	})
	if err != nil {
		return err
	}
	for _, it := range all {
		if it.s.deadline < prev {
			if err := m.deleteSession(it.id, it.s); err != nil {
				return err
			}
			continue
		}
		if err := m.setDeadline(it.id, it.s, max(it.s.deadline, addDuration(now, it.s.ttl))); err != nil {
			return err
		}
	}
	return nil
}

// Reap expires every session whose deadline is before now.
func (m *Machine) Reap(now int64) error {
	var ids []lock.SessionID
	c := m.b.Expiry.Cursor()
	for k, _ := c.First(); k != nil && expiryDeadline(k) < now; k, _ = c.Next() {
		ids = append(ids, lock.SessionID(k[8:]))
	}
	for _, id := range ids {
		s, ok, err := m.getSession(id)
		if err != nil {
			return err
		}
		if ok {
			if err := m.deleteSession(id, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// --- locks ---

// liveGrant returns the lock on key if its session is alive at now; a
// lock whose session lapsed is freed (with the session).
func (m *Machine) liveGrant(now int64, key string) (grant, session, bool, error) {
	v := m.b.Locks.Get([]byte(key))
	if v == nil {
		return grant{}, session{}, false, nil
	}
	g, err := unmarshalGrant(v)
	if err != nil {
		return grant{}, session{}, false, err
	}
	s, ok, err := m.liveSession(now, g.session)
	if err != nil || !ok {
		if err == nil && m.b.Locks.Get([]byte(key)) != nil {
			// A lock without its session (should not happen): free it.
			err = m.b.Locks.Delete([]byte(key))
		}
		return grant{}, session{}, false, err
	}
	return g, s, true, nil
}

// Acquire grants the lock on key to session id and returns its fencing
// token: the lock's token if id holds it already, else one more than the
// larger of every token granted so far and the highest token that has
// written key's journal (asked of written only then).
func (m *Machine) Acquire(now int64, id lock.SessionID, key string, written Journals) (token uint64, rule, err error) {
	if rule := CheckKey(key); rule != nil {
		return 0, rule, nil
	}
	if _, ok, err := m.liveSession(now, id); err != nil || !ok {
		return 0, fmt.Errorf("%w: acquire of %q by session %s", lock.ErrSessionExpired, key, id), err
	}
	g, gs, held, err := m.liveGrant(now, key)
	if err != nil {
		return 0, nil, err
	}
	if held {
		if g.session == id {
			return g.token, nil, nil
		}
		return 0, &lock.HeldError{Key: key, Holder: gs.owner, Token: g.token}, nil
	}
	// A token above every token granted so far, and above any token that
	// has written the journal of the same key, so the new holder is never
	// fenced by history.
	floor, err := written.WrittenToken(key)
	if err != nil {
		return 0, nil, err
	}
	if token = max(m.c.Token, floor); token == math.MaxUint64 {
		return 0, fmt.Errorf("%w: no fencing token left above %d for %q", lock.ErrInvalid, token, key), nil
	}
	token++
	m.c.Token = token
	if err := m.b.Locks.Put([]byte(key), grant{token: token, session: id}.marshal()); err != nil {
		return 0, nil, err
	}
	return token, nil, m.b.Held.Put(heldKey(id, key), nil)
}

// Release frees the lock on key if session id holds it at now.
func (m *Machine) Release(now int64, id lock.SessionID, key string) (rule, err error) {
	if rule := CheckKey(key); rule != nil {
		return rule, nil
	}
	notHeld := fmt.Errorf("%w: release of %q by session %s", lock.ErrNotHeld, key, id)
	if _, ok, err := m.liveSession(now, id); err != nil || !ok {
		return notHeld, err
	}
	g, _, held, err := m.liveGrant(now, key)
	if err != nil || !held || g.session != id {
		return notHeld, err
	}
	if err := m.b.Locks.Delete([]byte(key)); err != nil {
		return nil, err
	}
	return nil, m.b.Held.Delete(heldKey(id, key))
}

// HeldToken returns the token of the lock on key if it is held at now (its
// session alive), held false if not. Like every rule that meets a lapsed
// session, it deletes that session and frees its locks. It is the lock
// fence of the journal rules (journalsm.Locks).
func (m *Machine) HeldToken(now int64, key string) (token uint64, held bool, err error) {
	g, _, held, err := m.liveGrant(now, key)
	if err != nil || !held {
		return 0, false, err
	}
	return g.token, true, nil
}

// --- reads ---

// Holder reports the lock on key if its session has not lapsed at now. It
// changes nothing: raftlock's queries call it on a read-only view, with a
// clock of their own.
func (m *Machine) Holder(key string, now int64) (lock.LockInfo, bool, error) {
	v := m.b.Locks.Get([]byte(key))
	if v == nil {
		return lock.LockInfo{}, false, nil
	}
	g, err := unmarshalGrant(v)
	if err != nil {
		return lock.LockInfo{}, false, err
	}
	sv := m.b.Sessions.Get([]byte(g.session))
	if sv == nil {
		return lock.LockInfo{}, false, nil
	}
	s, err := unmarshalSession(sv)
	if err != nil || s.deadline < now {
		return lock.LockInfo{}, false, err
	}
	return lock.LockInfo{Key: key, Session: g.session, Owner: s.owner, Token: g.token}, true, nil
}

// Lapsed reports whether some session's deadline is before now (then
// raftlock's leader commits a reap command). It changes nothing.
func (m *Machine) Lapsed(now int64) bool {
	k, _ := m.b.Expiry.Cursor().First()
	return k != nil && expiryDeadline(k) < now
}
