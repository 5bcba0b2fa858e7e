package raftlock

import (
	"bytes"
	"fmt"
	"math"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// applyCtx applies commands on the FSM goroutine, to the active overlay on
// top of the state machine's other layers (fsm_overlay.go). Every decision
// is a function of that state and the stamped clock, never of the local
// clock nor of when the layers were flushed, so replicas agree.
//
// A command's rule violation (fenced, held, expired...) is detected before
// it writes anything and becomes its result; any other error is fatal to
// the state machine.
type applyCtx struct {
	m           *fsmMeta
	dedupWindow uint64
	dedupIndex  map[string]uint64 // fsm.dedupIndex: dedup key -> chunk number
	prev        int64             // the state machine's clock before the entry being applied
	now         int64             // the state machine's clock for the entry being applied

	sessions, expiry, held, locks, actors, log, snapshots, dedup bkt
}

func newApplyCtx(l *layers, m *fsmMeta, dedupWindow uint64, dedupIndex map[string]uint64) *applyCtx {
	return &applyCtx{
		m: m, dedupWindow: dedupWindow, dedupIndex: dedupIndex,
		sessions: l.bucket(bSessions), expiry: l.bucket(bExpiry), held: l.bucket(bHeld),
		locks: l.bucket(bLocks), actors: l.bucket(bActors), log: l.bucket(bLog),
		snapshots: l.bucket(bSnapshots), dedup: l.bucket(bDedup),
	}
}

// applyEntry applies one Raft command entry (a batch). The clock moves to
// the batch's stamp, but never backwards: a new leader whose clock is
// behind the old one's continues from the old one's time.
func (ac *applyCtx) applyEntry(l *raft.Log) (*applyResponse, error) {
	stamp, cmds, err := decodeBatch(l.Data)
	if err != nil {
		return &applyResponse{index: l.Index, err: err}, nil
	}
	ac.prev = ac.m.time
	ac.m.time = max(ac.m.time, stamp)
	ac.now = ac.m.time
	resp := &applyResponse{index: l.Index, results: make([]result, len(cmds))}
	for i, raw := range cmds {
		if resp.results[i], err = ac.applyCommand(raw); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// applyCommand applies one command, or returns the remembered result if a
// command with its id was applied before.
func (ac *applyCtx) applyCommand(raw []byte) (result, error) {
	c, err := decodeCommand(raw)
	if err != nil {
		return result{code: codeBadCommand, text: err.Error()}, nil
	}
	var dk []byte
	if c.id.seq != 0 {
		dk = dedupKey(c.id)
		if r, ok, err := ac.remembered(dk); err != nil || ok {
			return r, err
		}
	}
	r, err := ac.exec(c)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", c.op, err)
	}
	if dk != nil {
		if err := ac.remember(dk, r); err != nil {
			return result{}, err
		}
	}
	return r, nil
}

// remembered returns the result of the command with dedup key dk, ok
// false if it is not in the dedup table.
func (ac *applyCtx) remembered(dk []byte) (r result, ok bool, err error) {
	chunk, ok := ac.dedupIndex[string(dk)]
	if !ok {
		return result{}, false, nil
	}
	v := ac.dedup.Get(u64Key(chunk))
	var res []byte
	if err := forEachDedupRecord(v, func(k, r []byte, _ int) bool {
		if bytes.Equal(k, dk) {
			res = r
		}
		return res == nil
	}); err != nil {
		return result{}, false, err
	}
	if res == nil {
		return result{}, false, fmt.Errorf("%w: dedup index names chunk %d, which does not hold the key", journal.ErrCorrupt, chunk)
	}
	r, err = decodeResult(res)
	if err != nil {
		return result{}, false, fmt.Errorf("dedup record: %w", err)
	}
	return r, true, nil
}

// remember stores r as the result of the command with dedup key dk, at the
// end of the last chunk. Once the table holds dedupSlack results more than
// the window, the oldest are forgotten in one sweep, down to the window:
// sweeping in bulk rewrites the oldest chunks once per dedupSlack commands
// instead of on every command.
func (ac *applyCtx) remember(dk []byte, r result) error {
	ac.m.dedupNext++
	key := u64Key((ac.m.dedupNext - 1) / dedupChunk)
	if err := ac.dedup.Append(key, appendDedupRecord(nil, dk, encodeResult(r))); err != nil {
		return err
	}
	ac.dedupIndex[string(dk)] = (ac.m.dedupNext - 1) / dedupChunk
	ac.m.dedupCount++
	if ac.m.dedupCount <= ac.dedupWindow+dedupSlack(ac.dedupWindow) {
		return nil
	}
	// Forget the oldest excess results: whole chunks, then the head of
	// the first chunk kept.
	excess := ac.m.dedupCount - ac.dedupWindow
	var (
		gone      [][]byte // chunks to delete
		cut       []byte   // the chunk to cut, and what is left of it
		rest      []byte
		forgotten []string
	)
	c := ac.dedup.Cursor()
	for k, v := c.First(); k != nil && excess > 0; k, v = c.Next() {
		end := 0
		err := forEachDedupRecord(v, func(dk, _ []byte, next int) bool {
			if excess == 0 {
				return false
			}
			forgotten = append(forgotten, string(dk))
			excess--
			end = next
			return true
		})
		if err != nil {
			return err
		}
		if end == len(v) {
			gone = append(gone, bytes.Clone(k))
		} else {
			cut, rest = bytes.Clone(k), bytes.Clone(v[end:])
		}
	}
	if excess > 0 {
		return fmt.Errorf("%w: dedup table holds %d results fewer than it counts", journal.ErrCorrupt, excess)
	}
	for _, k := range gone {
		if err := ac.dedup.Delete(k); err != nil {
			return err
		}
	}
	if cut != nil {
		if err := ac.dedup.Put(cut, rest); err != nil {
			return err
		}
	}
	for _, k := range forgotten {
		delete(ac.dedupIndex, k)
	}
	ac.m.dedupCount = ac.dedupWindow
	return nil
}

// exec runs one command. A rule violation is returned as the result (via
// resultOf); err is fatal.
func (ac *applyCtx) exec(c command) (result, error) {
	var r result
	var rule, err error
	switch c.op {
	case opNoop:
	case opLeaderStart:
		err = ac.leaderStart()
	case opReap:
		err = ac.reap()
	case opCreateSession:
		r, rule, err = ac.createSession(c.owner, int64(c.ttl))
	case opRenew:
		rule, err = ac.renew(c.session)
	case opDestroySession:
		err = ac.destroySession(c.session)
	case opEndOwner:
		r.value, err = ac.endOwner(c.owner, c.session)
	case opAcquire:
		r.value, rule, err = ac.acquire(c.session, c.key)
	case opRelease:
		rule, err = ac.release(c.session, c.key)
	case opAppend:
		r.value, rule, err = ac.append(c)
	case opSaveSnapshot:
		rule, err = ac.saveSnapshot(c)
	case opTruncate:
		rule, err = ac.truncate(c)
	default:
		rule = fmt.Errorf("%w: unknown op %d", errBadWire, c.op)
	}
	if err != nil {
		return result{}, err
	}
	if rule != nil {
		return resultOf(rule), nil
	}
	return r, nil
}

// --- sessions ---

// getSession returns the session record, ok false if there is none.
func (ac *applyCtx) getSession(id lock.SessionID) (session, bool, error) {
	v := ac.sessions.Get([]byte(id))
	if v == nil {
		return session{}, false, nil
	}
	s, err := unmarshalSession(v)
	return s, err == nil, err
}

// liveSession returns the session if it exists and has not lapsed at the
// state machine's clock; a lapsed session is deleted with its locks.
func (ac *applyCtx) liveSession(id lock.SessionID) (session, bool, error) {
	s, ok, err := ac.getSession(id)
	if err != nil || !ok {
		return session{}, false, err
	}
	if s.deadline < ac.now {
		return session{}, false, ac.deleteSession(id, s)
	}
	return s, true, nil
}

func (ac *applyCtx) putSession(id lock.SessionID, s session) error {
	if err := ac.sessions.Put([]byte(id), s.marshal()); err != nil {
		return err
	}
	return ac.expiry.Put(expiryKey(s.deadline, id), nil)
}

// setDeadline moves a session's deadline.
func (ac *applyCtx) setDeadline(id lock.SessionID, s session, deadline int64) error {
	if deadline == s.deadline {
		return nil
	}
	if err := ac.expiry.Delete(expiryKey(s.deadline, id)); err != nil {
		return err
	}
	s.deadline = deadline
	return ac.putSession(id, s)
}

// deleteSession removes a session and frees its locks.
func (ac *applyCtx) deleteSession(id lock.SessionID, s session) error {
	prefix := heldPrefix(id)
	var keys [][]byte
	c := ac.held.PrefixCursor(prefix)
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		lockKey := k[len(prefix):]
		if v := ac.locks.Get(lockKey); v != nil {
			g, err := unmarshalGrant(v)
			if err != nil {
				return err
			}
			if g.session == id {
				if err := ac.locks.Delete(lockKey); err != nil {
					return err
				}
			}
		}
		if err := ac.held.Delete(k); err != nil {
			return err
		}
	}
	if err := ac.expiry.Delete(expiryKey(s.deadline, id)); err != nil {
		return err
	}
	return ac.sessions.Delete([]byte(id))
}

func (ac *applyCtx) createSession(owner string, ttl int64) (result, error, error) {
	switch {
	case owner == "":
		return result{}, fmt.Errorf("%w: empty session owner", lock.ErrInvalid), nil
	case len(owner) > maxOwnerLen:
		return result{}, fmt.Errorf("%w: session owner of %d bytes exceeds %d", lock.ErrInvalid, len(owner), maxOwnerLen), nil
	case ttl <= 0:
		return result{}, fmt.Errorf("%w: session TTL %d ns is not positive", lock.ErrInvalid, ttl), nil
	}
	ac.m.sessions++
	// The number makes the id unique in this cluster; the creation time
	// makes it unlikely to name a session of an earlier cluster that
	// used the same directory names.
	id := lock.SessionID(fmt.Sprintf("s%d.%x", ac.m.sessions, uint64(ac.now)))
	if err := ac.putSession(id, session{ttl: ttl, deadline: addDuration(ac.now, ttl), owner: owner}); err != nil {
		return result{}, nil, err
	}
	return result{text: string(id)}, nil, nil
}

func (ac *applyCtx) renew(id lock.SessionID) (rule, err error) {
	s, ok, err := ac.liveSession(id)
	if err != nil || !ok {
		return fmt.Errorf("%w: renew of session %s", lock.ErrSessionExpired, id), err
	}
	return nil, ac.setDeadline(id, s, addDuration(ac.now, s.ttl))
}

func (ac *applyCtx) destroySession(id lock.SessionID) error {
	s, ok, err := ac.getSession(id)
	if err != nil || !ok {
		return err
	}
	return ac.deleteSession(id, s)
}

// endOwner ends every session of owner but keep, with their locks, and
// returns how many it ended.
func (ac *applyCtx) endOwner(owner string, keep lock.SessionID) (uint64, error) {
	type item struct {
		id lock.SessionID
		s  session
	}
	var ended []item
	err := ac.sessions.ForEach(func(k, v []byte) error {
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
		if err := ac.deleteSession(it.id, it.s); err != nil {
			return 0, err
		}
	}
	return uint64(len(ended)), nil
}

// leaderStart is a new leader's first command. Sessions that had lapsed by
// the previous leader's last stamp are expired; every other session is
// given at least a full TTL from the new leader's stamp, so a leader
// change (whose clock may run ahead, and which cannot know when renewals
// sent to the old leader arrived) never expires a session its owner kept
// renewing.
func (ac *applyCtx) leaderStart() error {
	type item struct {
		id lock.SessionID
		s  session
	}
	var all []item
	err := ac.sessions.ForEach(func(k, v []byte) error {
		s, err := unmarshalSession(v)
		all = append(all, item{lock.SessionID(k), s})
		return err
	})
	if err != nil {
		return err
	}
	for _, it := range all {
		if it.s.deadline < ac.prev {
			if err := ac.deleteSession(it.id, it.s); err != nil {
				return err
			}
			continue
		}
		if err := ac.setDeadline(it.id, it.s, max(it.s.deadline, addDuration(ac.now, it.s.ttl))); err != nil {
			return err
		}
	}
	return nil
}

// reap expires every session whose deadline is before the clock.
func (ac *applyCtx) reap() error {
	var ids []lock.SessionID
	c := ac.expiry.Cursor()
	for k, _ := c.First(); k != nil && expiryDeadline(k) < ac.now; k, _ = c.Next() {
		ids = append(ids, lock.SessionID(k[8:]))
	}
	for _, id := range ids {
		s, ok, err := ac.getSession(id)
		if err != nil {
			return err
		}
		if ok {
			if err := ac.deleteSession(id, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// --- locks ---

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty lock key", lock.ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: lock key of %d bytes exceeds %d", lock.ErrInvalid, len(key), MaxKeyLen)
	}
	return nil
}

// liveGrant returns the lock on key if its session is alive; a lock whose
// session lapsed is freed (with the session).
func (ac *applyCtx) liveGrant(key string) (grant, session, bool, error) {
	v := ac.locks.Get([]byte(key))
	if v == nil {
		return grant{}, session{}, false, nil
	}
	g, err := unmarshalGrant(v)
	if err != nil {
		return grant{}, session{}, false, err
	}
	s, ok, err := ac.liveSession(g.session)
	if err != nil || !ok {
		if err == nil && ac.locks.Get([]byte(key)) != nil {
			// A lock without its session (should not happen): free it.
			err = ac.locks.Delete([]byte(key))
		}
		return grant{}, session{}, false, err
	}
	return g, s, true, nil
}

func (ac *applyCtx) acquire(id lock.SessionID, key string) (token uint64, rule, err error) {
	if rule := checkKey(key); rule != nil {
		return 0, rule, nil
	}
	if _, ok, err := ac.liveSession(id); err != nil || !ok {
		return 0, fmt.Errorf("%w: acquire of %q by session %s", lock.ErrSessionExpired, key, id), err
	}
	g, gs, held, err := ac.liveGrant(key)
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
	st, err := ac.actorState(key)
	if err != nil {
		return 0, nil, err
	}
	if token = max(ac.m.token, st.Token); token == math.MaxUint64 {
		return 0, fmt.Errorf("%w: no fencing token left above %d for %q", lock.ErrInvalid, token, key), nil
	}
	token++
	ac.m.token = token
	if err := ac.locks.Put([]byte(key), grant{token: token, session: id}.marshal()); err != nil {
		return 0, nil, err
	}
	return token, nil, ac.held.Put(heldKey(id, key), nil)
}

func (ac *applyCtx) release(id lock.SessionID, key string) (rule, err error) {
	if rule := checkKey(key); rule != nil {
		return rule, nil
	}
	notHeld := fmt.Errorf("%w: release of %q by session %s", lock.ErrNotHeld, key, id)
	if _, ok, err := ac.liveSession(id); err != nil || !ok {
		return notHeld, err
	}
	g, _, held, err := ac.liveGrant(key)
	if err != nil || !held || g.session != id {
		return notHeld, err
	}
	if err := ac.locks.Delete([]byte(key)); err != nil {
		return nil, err
	}
	return nil, ac.held.Delete(heldKey(id, key))
}

// --- journal ---

func (ac *applyCtx) actorState(actor string) (journal.ActorState, error) {
	v := ac.actors.Get([]byte(actor))
	if v == nil {
		return journal.ActorState{}, nil
	}
	return unmarshalActor(v)
}

// checkLockFence is the second fencing rule: while the lock of the same key
// is held (its session alive at the stamped clock) with token T, a write
// with a lower token is fenced, even if nothing was written under T yet.
// This makes an ex-owner harmless from the moment a new owner acquires.
func (ac *applyCtx) checkLockFence(what, actor string, token uint64) (rule, err error) {
	g, _, held, err := ac.liveGrant(actor)
	if err != nil || !held || token >= g.token {
		return nil, err
	}
	return fmt.Errorf("%w: %s %q with token %d, the lock is held with token %d", journal.ErrFenced, what, actor, token, g.token), nil
}

// journalPrologue checks the actor key and the lock fence and loads the
// actor's state.
func (ac *applyCtx) journalPrologue(what string, c command) (journal.ActorState, error, error) {
	if rule := journal.CheckActor(c.key); rule != nil {
		return journal.ActorState{}, rule, nil
	}
	if rule, err := ac.checkLockFence(what, c.key, c.token); rule != nil || err != nil {
		return journal.ActorState{}, rule, err
	}
	st, err := ac.actorState(c.key)
	return st, nil, err
}

func (ac *applyCtx) append(c command) (tail uint64, rule, err error) {
	st, rule, err := ac.journalPrologue("append to", c)
	if rule != nil || err != nil {
		return 0, rule, err
	}
	if len(c.records) == 0 || uint64(len(c.records)) > ^uint64(0)-c.seq {
		return 0, fmt.Errorf("%w: append to %q with %d entries after seq %d", journal.ErrInvalid, c.key, len(c.records), c.seq), nil
	}
	if rule := st.CheckAppend(c.key, c.token, c.seq); rule != nil {
		return 0, rule, nil
	}
	if err := ac.appendEntries(actorPrefix(c.key), st.Tail, c.records); err != nil {
		return 0, nil, err
	}
	st = st.Appended(c.token, len(c.records))
	return st.Tail, nil, ac.actors.Put([]byte(c.key), marshalActor(st))
}

func (ac *applyCtx) saveSnapshot(c command) (rule, err error) {
	st, rule, err := ac.journalPrologue("snapshot of", c)
	if rule != nil || err != nil {
		return rule, err
	}
	if rule := st.CheckSnapshot(c.key, c.token, c.seq); rule != nil {
		return rule, nil
	}
	if err := ac.snapshots.Put([]byte(c.key), c.records[0]); err != nil {
		return nil, err
	}
	return nil, ac.actors.Put([]byte(c.key), marshalActor(st.Snapshotted(c.token, c.seq)))
}

func (ac *applyCtx) truncate(c command) (rule, err error) {
	st, rule, err := ac.journalPrologue("truncate of", c)
	if rule != nil || err != nil {
		return rule, err
	}
	if rule := st.CheckTruncate(c.key, c.token, c.seq); rule != nil {
		return rule, nil
	}
	if err := deleteEntries(ac.log, actorPrefix(c.key), c.seq); err != nil {
		return nil, err
	}
	return nil, ac.actors.Put([]byte(c.key), marshalActor(st.Truncated(c.token)))
}

// appendEntries stores recs as the seqs after tail of the actor with the
// given key prefix.
func (ac *applyCtx) appendEntries(prefix []byte, tail uint64, recs [][]byte) error {
	for i, rec := range recs {
		if err := ac.log.Put(entryKey(prefix, tail+uint64(i)+1), rec); err != nil {
			return err
		}
	}
	return nil
}

// deleteEntries removes the entries under prefix with Seq <= through. The
// keys are collected first: deleting under a moving cursor can skip keys.
func deleteEntries(b bkt, prefix []byte, through uint64) error {
	var keys [][]byte
	c := b.PrefixCursor(prefix)
	for k, _ := c.First(); isEntryKeyOf(k, prefix) && entrySeq(k) <= through; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
