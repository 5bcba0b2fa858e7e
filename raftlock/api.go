package raftlock

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

// The lock.Coordinator and journal.Journal methods. Writes go through the
// committer (exec) and return once this node's replica has applied them;
// reads run on this node's replica (enterRead).

// Sync returns once this node's replica has applied every command committed
// before Sync was called (it commits a no-op and waits for it). Reads after
// Sync see all of them: use it after Open, or to read an actor whose lock
// was not acquired on this node.
func (s *Store) Sync(ctx context.Context) error {
	_, err := s.exec(ctx, command{op: opNoop})
	return err
}

// enterRead admits a read: ctx, closed and a failed state machine; then
// it waits until this replica has applied this node's latest journal write
// (see execEncoded).
func (s *Store) enterRead(ctx context.Context) error { return s.rep.BeforeRead(ctx) }

// --- lock.Coordinator ---

// CreateSession opens a session for owner with the given TTL, counted on the
// leader's clock from when it stamps the command.
func (s *Store) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	switch {
	case owner == "":
		return "", fmt.Errorf("%w: empty session owner", lock.ErrInvalid)
	case len(owner) > locksm.MaxOwnerLen:
		return "", fmt.Errorf("%w: session owner of %d bytes exceeds %d", lock.ErrInvalid, len(owner), locksm.MaxOwnerLen)
	case ttl <= 0:
		return "", fmt.Errorf("%w: session TTL %v is not positive", lock.ErrInvalid, ttl)
	}
	return s.createSession(ctx, owner, ttl, "")
}

// createSession is CreateSession; with an id, the session gets that id
// (one another group issued: see Groups.CreateSession).
func (s *Store) createSession(ctx context.Context, owner string, ttl time.Duration, id lock.SessionID) (lock.SessionID, error) {
	c := command{op: opCreateSession, owner: owner, ttl: ttl}
	if id != "" {
		c.op, c.session = opCreateSessionAs, id
	}
	res, err := s.exec(ctx, c)
	if err != nil {
		return "", err
	}
	if err := res.err(); err != nil {
		return "", err
	}
	return lock.SessionID(res.text), nil
}

// Renew extends the session to a full TTL from the leader's stamp.
func (s *Store) Renew(ctx context.Context, id lock.SessionID) error {
	res, err := s.exec(ctx, command{op: opRenew, session: id})
	if err != nil {
		return err
	}
	return res.err()
}

// DestroySession ends the session and frees its locks.
func (s *Store) DestroySession(ctx context.Context, id lock.SessionID) error {
	res, err := s.exec(ctx, command{op: opDestroySession, session: id})
	if err != nil {
		return err
	}
	return res.err()
}

// EndSessionsOf ends every session whose owner is owner except keep (""
// keeps none), freeing their locks, and returns how many it ended. A node
// calls it when it starts, for the sessions of its previous incarnation:
// their locks would otherwise stay held until the sessions' TTL ran out,
// since a new leader extends every session it finds. Node ids are unique
// in a cluster, so no other live node owns them.
func (s *Store) EndSessionsOf(ctx context.Context, owner string, keep lock.SessionID) (int, error) {
	if owner == "" || len(owner) > locksm.MaxOwnerLen {
		return 0, fmt.Errorf("%w: session owner of %d bytes", lock.ErrInvalid, len(owner))
	}
	res, err := s.exec(ctx, command{op: opEndOwner, owner: owner, session: keep})
	if err != nil {
		return 0, err
	}
	if err := res.err(); err != nil {
		return 0, err
	}
	return int(res.value), nil
}

// Acquire takes the lock key for session id and returns its fencing token:
// one more than the highest token granted so far in the cluster and than
// the highest token that has written the journal of the same key. When it
// returns, the grant is applied on this node, so Read, Tail and
// LoadSnapshot of that actor here see every append committed before it.
func (s *Store) Acquire(ctx context.Context, id lock.SessionID, key string) (uint64, error) {
	if err := locksm.CheckKey(key); err != nil {
		return 0, err
	}
	res, err := s.exec(ctx, command{op: opAcquire, session: id, key: key})
	if err != nil {
		return 0, err
	}
	if err := res.err(); err != nil {
		return 0, err
	}
	return res.value, nil
}

// Release frees the lock if session id holds it.
func (s *Store) Release(ctx context.Context, id lock.SessionID, key string) error {
	if err := locksm.CheckKey(key); err != nil {
		return err
	}
	res, err := s.exec(ctx, command{op: opRelease, session: id, key: key})
	if err != nil {
		return err
	}
	return res.err()
}

// Holder reports who holds key according to this node's replica. A lock
// counts as held while its session's deadline is not before the later of
// the replica's clock (the last leader stamp applied here) and this node's
// own clock (Config.Now); it is a hint on a node that lags or whose clock
// differs from the leader's, exact on the leader and after Sync.
func (s *Store) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	if err := locksm.CheckKey(key); err != nil {
		return lock.LockInfo{}, false, err
	}
	if err := s.enterRead(ctx); err != nil {
		return lock.LockInfo{}, false, err
	}
	_, clock, _ := s.fsm.Progress()
	return s.fsm.holder(key, max(clock, s.rep.Stamp().UnixNano()))
}

// --- journal.Journal ---

// Append appends entries to actor's log, fenced by the highest token that
// has written it and by the lock of the same key (see the package
// documentation). On success the entries are committed by a quorum; this
// node's replica may apply them a moment later, and reads on this node wait
// for that, so they always see this node's own writes.
func (s *Store) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	records := make([][]byte, len(entries))
	for i, e := range entries {
		// Stamped for the only seqs they can get: the append succeeds only
		// if expectedSeq is the tail.
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		records[i] = journal.MarshalEntry(e)
	}
	res, err := s.exec(ctx, command{op: opAppend, key: actor, token: token, seq: expectedSeq, records: records})
	if err != nil {
		return 0, err
	}
	if err := res.err(); err != nil {
		return 0, err
	}
	return res.value, nil
}

// SaveSnapshot stores snap as actor's snapshot, fenced like Append.
func (s *Store) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	rec := journal.MarshalSnapshot(journal.Snapshot{Seq: snap.Seq, Token: token, Data: snap.Data})
	res, err := s.exec(ctx, command{op: opSaveSnapshot, key: actor, token: token, seq: snap.Seq, records: [][]byte{rec}})
	if err != nil {
		return err
	}
	return res.err()
}

// Truncate removes actor's entries with Seq <= throughSeq, fenced like
// Append.
func (s *Store) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	res, err := s.exec(ctx, command{op: opTruncate, key: actor, token: token, seq: throughSeq})
	if err != nil {
		return err
	}
	return res.err()
}

// Read returns actor's entries with Seq >= fromSeq from this node's replica.
func (s *Store) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	if err := journal.CheckActor(actor); err != nil {
		return nil, err
	}
	if err := s.enterRead(ctx); err != nil {
		return nil, err
	}
	return s.fsm.readEntries(actor, fromSeq)
}

// Tail returns actor's tail and highest token from this node's replica.
func (s *Store) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Tail{}, err
	}
	if err := s.enterRead(ctx); err != nil {
		return journal.Tail{}, err
	}
	st, err := s.fsm.actorState(actor)
	if err != nil {
		return journal.Tail{}, err
	}
	return journal.Tail{Seq: st.Tail, Token: st.Token}, nil
}

// LoadSnapshot returns actor's snapshot from this node's replica.
func (s *Store) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Snapshot{}, false, err
	}
	if err := s.enterRead(ctx); err != nil {
		return journal.Snapshot{}, false, err
	}
	return s.fsm.loadSnapshot(actor)
}
