package raftlock

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

// applyCtx applies commands on the FSM goroutine, to the active overlay on
// top of the state machine's other layers (fsm_overlay.go): it decodes
// each entry, moves the clock, answers retries from the dedup table, and
// hands every other command to the state machine it belongs to, sessions
// and locks (locksm) or journals (journalsm). Every decision is a function
// of that state and the stamped clock, never of the local clock nor of
// when the layers were flushed, so replicas agree.
//
// A command's rule violation (fenced, held, expired...) is detected before
// it writes anything and becomes its result; any other error is fatal to
// the state machine.
type applyCtx struct {
	m              *fsmMeta
	dedupWindow    uint64
	dedupRetention int64             // nanoseconds
	dedupIndex     map[string]uint64 // fsm.dedupIndex: dedup key -> chunk number
	prev           int64             // the state machine's clock before the entry being applied
	now            int64             // the state machine's clock for the entry being applied

	locks    *locksm.Machine    // sessions and locks; its counters are m.locks
	journals *journalsm.Machine // journals, fenced by locks
	dedup    bkt
}

func newApplyCtx(l *layers, m *fsmMeta, dedupWindow uint64, dedupRetention int64, dedupIndex map[string]uint64) *applyCtx {
	locks := locksm.New(l.lockBuckets(), &m.locks)
	return &applyCtx{
		m: m, dedupWindow: dedupWindow, dedupRetention: dedupRetention, dedupIndex: dedupIndex,
		locks: locks, journals: journalsm.New(l.journalBuckets(), locks),
		dedup: l.bucket(bDedup),
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
//
// A retry (flagRetry) that the table does not remember and that was born
// no later than the newest result the table forgot (dedupForgot) may have
// been applied, and its result forgotten: it is answered codeUnknown
// (ErrUnknownOutcome), not applied, and not remembered, so that nobody is
// told "not applied" about a command that was. Any other command not
// remembered was never applied, and runs: the table holds every result
// applied after dedupForgot, and no replica applies a command at a clock
// before its birth (command.born), so a retry born later would be there;
// and a first attempt cannot have been applied before, since the
// committer sends a retry only after the first attempt was handed on
// (to Raft here, or to the leader), which puts the first attempt earlier
// in the log than its retries. (Unless a forward request was held up
// past both dedup bounds after its sender gave up, and the leader began
// it before it saw the cancellation: that late first attempt runs again;
// see the package doc.) The decision reads only the entry and the state,
// so every replica makes the same one.
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
		if c.retry && c.born <= ac.m.dedupForgot {
			return result{code: codeUnknown, text: fmt.Sprintf(
				"raftlock: %s: outcome unknown: retry of command %s/%d, created at %s; if it was applied, its result is older than the dedup table remembers (it forgot results up to %s); not applied now",
				c.op, c.id.origin, c.id.seq, fmtClock(c.born), fmtClock(ac.m.dedupForgot))}, nil
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
	if err := forEachDedupRecord(v, func(k []byte, _ int64, r []byte, _ int) bool {
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

// remember stores r as the result of the command with dedup key dk,
// applied now, at the end of the last chunk, and sweeps.
func (ac *applyCtx) remember(dk []byte, r result) error {
	ac.m.dedupNext++
	chunk := (ac.m.dedupNext - 1) / dedupChunk
	if err := ac.dedup.Append(u64Key(chunk), appendDedupRecord(nil, dk, ac.now, encodeResult(r))); err != nil {
		return err
	}
	ac.dedupIndex[string(dk)] = chunk
	if ac.m.dedupCount == 0 {
		ac.m.dedupOldest = ac.now
	}
	ac.m.dedupCount++
	return ac.sweep()
}

// sweep forgets the oldest results that are outside both bounds (see
// DedupWindow): it runs once the table holds dedupSlack results more than
// the window and its oldest result is dedupSlackTime older than the
// retention, and forgets, oldest first, every result that is both past
// the window and at least the retention old. Sweeping in bulk rewrites
// the oldest chunks once per dedupSlack commands (or dedupSlackTime)
// instead of on every command.
func (ac *applyCtx) sweep() error {
	if ac.m.dedupCount <= ac.dedupWindow+dedupSlack(ac.dedupWindow) ||
		addDuration(ac.m.dedupOldest, ac.dedupRetention+dedupSlackTime(ac.dedupRetention)) > ac.now {
		return nil
	}
	// Forget the oldest results outside both bounds: whole chunks, then
	// the head of the first chunk kept.
	excess := ac.m.dedupCount - ac.dedupWindow
	var (
		gone      [][]byte // chunks to delete
		cut       []byte   // the chunk to cut, and what is left of it
		rest      []byte
		forgotten []string
		forgot    = ac.m.dedupForgot
		oldest    int64 // when the first result kept was applied
		kept      bool  // a result is kept
	)
	c := ac.dedup.Cursor()
	for k, v := c.First(); k != nil && !kept; k, v = c.Next() {
		end := 0
		err := forEachDedupRecord(v, func(dk []byte, at int64, _ []byte, next int) bool {
			if excess == 0 || addDuration(at, ac.dedupRetention) > ac.now {
				oldest, kept = at, true
				return false
			}
			forgotten = append(forgotten, string(dk))
			forgot = at
			excess--
			end = next
			return true
		})
		if err != nil {
			return err
		}
		switch {
		case end == len(v):
			gone = append(gone, bytes.Clone(k))
		case end > 0:
			cut, rest = bytes.Clone(k), bytes.Clone(v[end:])
		}
	}
	if !kept && excess > 0 {
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
	ac.m.dedupCount -= uint64(len(forgotten))
	ac.m.dedupForgot, ac.m.dedupOldest = forgot, oldest
	return nil
}

// fmtClock formats a state machine clock reading for messages.
func fmtClock(t int64) string {
	if t == math.MinInt64 {
		return "the start"
	}
	return time.Unix(0, t).UTC().Format(time.RFC3339Nano)
}

// exec runs one command on the state machine it belongs to. A rule
// violation is returned as the result (via resultOf); err is fatal.
func (ac *applyCtx) exec(c command) (result, error) {
	var r result
	var rule, err error
	switch c.op {
	case opNoop:
	case opLeaderStart:
		err = ac.locks.LeaderStart(ac.prev, ac.now)
	case opReap:
		err = ac.locks.Reap(ac.now)
	case opCreateSession:
		var id lock.SessionID
		id, rule, err = ac.locks.CreateSession(ac.now, c.owner, int64(c.ttl))
		r.text = string(id)
	case opRenew:
		rule, err = ac.locks.Renew(ac.now, c.session)
	case opDestroySession:
		err = ac.locks.DestroySession(c.session)
	case opEndOwner:
		r.value, err = ac.locks.EndOwner(c.owner, c.session)
	case opAcquire:
		r.value, rule, err = ac.locks.Acquire(ac.now, c.session, c.key, ac.journals)
	case opRelease:
		rule, err = ac.locks.Release(ac.now, c.session, c.key)
	case opAppend:
		r.value, rule, err = ac.journals.Append(ac.now, c.key, c.token, c.seq, c.records)
	case opSaveSnapshot:
		rule, err = ac.journals.SaveSnapshot(ac.now, c.key, c.token, c.seq, c.records[0])
	case opTruncate:
		rule, err = ac.journals.Truncate(ac.now, c.key, c.token, c.seq)
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
