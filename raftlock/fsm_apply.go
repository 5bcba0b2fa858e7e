package raftlock

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
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
	m    *fsmMeta
	prev int64 // the state machine's clock before the entry being applied
	now  int64 // the state machine's clock for the entry being applied

	locks    *locksm.Machine    // sessions and locks; its counters are m.locks
	journals *journalsm.Machine // journals, fenced by locks
	// qm is the message queues' machine, acknowledged by the journals'
	// appends: made by queues() for the first command of the batch that
	// needs it, over l, so that a batch of plain appends costs nothing
	// more for the queues.
	qm             *queuesm.Machine
	l              *layers
	queueRetention time.Duration
	// queueRules: the entry being applied was written with the queues
	// (queueWireVersion): it may hold queue commands, and its appends'
	// message entries obey the queue rules (applyAppend).
	queueRules bool
	// wakes are what the batch gave the queues' actors to deliver, one
	// per actor in the order the batch first gave it something, with its
	// wake after the last command that did (fsm.notify); wakeOf indexes
	// them by actor.
	wakes  []wake
	wakeOf map[string]int
	dedup  dedup.Table // the results of commands with an id; its State is m.dedup
}

// wake is one notification of the queue machine.
type wake struct {
	actor string
	at    int64
}

func newApplyCtx(l *layers, m *fsmMeta, dedupWindow uint64, dedupRetention int64, dedupIndex map[string]uint64, queueRetention time.Duration) *applyCtx {
	locks := locksm.New(l.lockBuckets(), &m.locks)
	return &applyCtx{
		m: m, locks: locks, journals: journalsm.New(l.journalBuckets(), locks), l: l, queueRetention: queueRetention,
		dedup: dedup.Table{Bucket: l.bucket(bDedup), State: &m.dedup, Index: dedupIndex, Window: dedupWindow, Retention: dedupRetention},
	}
}

// queues returns the message queues' machine of the batch.
func (ac *applyCtx) queues() *queuesm.Machine {
	if ac.qm == nil {
		ac.qm = queuesm.New(ac.l.queueBuckets(), queuesm.Config{Retention: ac.queueRetention, OnWake: ac.onWake})
	}
	return ac.qm
}

// onWake notes that the command being applied gave actor something to
// deliver, at at (queuesm.Config.OnWake): a batch of many enqueues to one
// actor notifies it once.
func (ac *applyCtx) onWake(actor string, at int64) {
	if i, ok := ac.wakeOf[actor]; ok {
		ac.wakes[i].at = at
		return
	}
	if ac.wakeOf == nil {
		ac.wakeOf = map[string]int{}
	}
	ac.wakeOf[actor] = len(ac.wakes)
	ac.wakes = append(ac.wakes, wake{actor, at})
}

// applyEntry applies one Raft command entry (a batch). The clock moves to
// the batch's stamp, but never backwards: a new leader whose clock is
// behind the old one's continues from the old one's time.
func (ac *applyCtx) applyEntry(l *raft.Log) (*applyResponse, error) {
	stamp, cmds, err := wire.DecodeBatch(l.Data)
	if err != nil {
		return &applyResponse{index: l.Index, err: err}, nil
	}
	ac.prev = ac.m.time
	ac.m.time = max(ac.m.time, stamp)
	ac.now = ac.m.time
	ac.queueRules = l.Data[0] >= queueWireVersion // DecodeBatch read the version there
	resp := &applyResponse{index: l.Index, results: make([]result, len(cmds))}
	for i, raw := range cmds {
		if resp.results[i], err = ac.applyCommand(raw); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// applyCommand applies one command, or returns the remembered result if a
// command with its id was applied before. The dedup table decides
// (dedup.Table.Check): a retry (flagRetry) that the table does not
// remember and that was born no later than the newest result the table
// forgot may have been applied, and its result forgotten: it is answered
// codeUnknown (ErrUnknownOutcome), not applied, and not remembered, so
// that nobody is told "not applied" about a command that was. Any other
// command not remembered was never applied, and runs. (Unless a forward
// request was held up past both dedup bounds after its sender gave up,
// and the leader began it before it saw the cancellation: that late first
// attempt runs again; see the package doc.) The decision reads only the
// entry and the state, so every replica makes the same one.
func (ac *applyCtx) applyCommand(raw []byte) (result, error) {
	c, err := decodeCommand(raw)
	if err == nil && c.op == opQueue && !ac.queueRules {
		err = fmt.Errorf("%w: unknown op %d in a batch from before the queues", errBadWire, uint8(c.op))
	}
	if err != nil {
		return result{code: codeBadCommand, text: err.Error()}, nil
	}
	var dk []byte
	if c.id.seq != 0 {
		dk = dedupKey(c.id)
		switch v, res, err := ac.dedup.Check(dk, c.born, c.retry); {
		case err != nil:
			return result{}, err
		case v == dedup.Remembered:
			r, err := decodeResult(res)
			if err != nil {
				return result{}, fmt.Errorf("dedup record: %w", err)
			}
			return r, nil
		case v == dedup.Unknown:
			return result{code: codeUnknown, text: fmt.Sprintf(
				"raftlock: %s: outcome unknown: retry of command %s/%d, created at %s; if it was applied, its result is older than the dedup table remembers (it forgot results up to %s); not applied now",
				c.op, c.id.origin, c.id.seq, fmtClock(c.born), fmtClock(ac.m.dedup.Forgot))}, nil
		}
	}
	r, err := ac.exec(c)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", c.op, err)
	}
	if dk != nil {
		if err := ac.dedup.Remember(dk, ac.now, encodeResult(r)); err != nil {
			return result{}, err
		}
	}
	return r, nil
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
	case opCreateSession, opCreateSessionAs:
		var id lock.SessionID
		id, rule, err = ac.locks.CreateSession(ac.now, c.owner, int64(c.ttl), c.session)
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
		r.value, rule, err = ac.applyAppend(c)
	case opQueue:
		r, rule, err = ac.execQueue(c)
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
