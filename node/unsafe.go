//go:build loomchaos

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// UnsafeMode deliberately breaks one of Loom's guarantees. DEBUG ONLY: it
// exists so that the chaos suite can prove its checkers catch a broken
// build (test/chaos, TestChaosCheckersBite). A node in an unsafe mode
// loses acknowledged writes or lets two nodes write one actor; never run
// one with data you care about. `loom-node run --debug-unsafe MODE` sets
// it; the empty mode is the safe default.
type UnsafeMode string

// Unsafe modes.
const (
	// UnsafeAckBeforeDurable acknowledges a turn before its journal
	// append is durable: Append returns at once and the real append runs
	// behind, per actor in order, given up after a second; one that fails
	// is lost (and the ones behind it with it), while the actor goes on
	// from its in-memory state.
	UnsafeAckBeforeDurable UnsafeMode = "ack-before-durable"
	// UnsafeIgnoreLock activates an actor even when another node holds
	// its lock, under that holder's token: two nodes then serve and write
	// the same actor, the journal's fence passes both (their tokens are
	// equal), and only the conditional append keeps the log in order.
	UnsafeIgnoreLock UnsafeMode = "ignore-lock"
	// UnsafeMessageAckFirst acknowledges a durable message in a journal
	// append of its own, before the append of the state change its turn
	// made, which follows ackFirstWindow later: a crash (or a failed
	// append) in between loses the message's effect while its queue has
	// forgotten it.
	UnsafeMessageAckFirst UnsafeMode = "message-ack-first"
	// UnsafeRedisSkipFence (journal.backend redis only) runs the Redis
	// journal's appends without their fencing check
	// (redisjournal.Journal.SetUnsafeSkipFence): an append under an old
	// token refused because the log moved on is moved to the log's end
	// and accepted there. And every append is held skipFenceInFlight
	// before it is sent, past its caller's end (as a request already on
	// its way to Redis), so that an owner stopped past its session TTL
	// (SIGSTOP) has appends in flight when it wakes: they land after the
	// new owner's entries, under the old owner's token.
	UnsafeRedisSkipFence UnsafeMode = "redis-skip-fence"
)

// UnsafeModes lists the modes (for flag help).
var UnsafeModes = []UnsafeMode{UnsafeAckBeforeDurable, UnsafeIgnoreLock, UnsafeMessageAckFirst, UnsafeRedisSkipFence}

func (m UnsafeMode) validate(c config.Config) error {
	if m == UnsafeRedisSkipFence && c.Journal.Backend != config.JournalRedis {
		return fmt.Errorf("node: unsafe mode %q needs journal.backend %q, not %q", m, config.JournalRedis, c.Journal.Backend)
	}
	if m == "" || slices.Contains(UnsafeModes, m) {
		return nil
	}
	return fmt.Errorf("node: unknown unsafe mode %q (want one of %v)", m, UnsafeModes)
}

// unsafeRuntime applies the unsafe mode to the runtime's journal and
// coordinator. It returns a function that stops what the mode started
// (nil when there is nothing to stop).
func (n *Node) unsafeRuntime(ro *runtime.Options) func() {
	switch n.opts.Unsafe {
	case UnsafeAckBeforeDurable:
		n.log.Warn("UNSAFE debug mode: turns are acknowledged before their journal append is durable", "mode", n.opts.Unsafe)
		wb := &writeBehind{Journal: ro.Journal, log: n.log, queues: map[string]*wbQueue{}}
		ro.Journal = wb
		return wb.wait
	case UnsafeIgnoreLock:
		n.log.Warn("UNSAFE debug mode: actors are activated even when another node holds their lock", "mode", n.opts.Unsafe)
		ro.Coordinator = lockIgnorer{ro.Coordinator}
	case UnsafeMessageAckFirst:
		n.log.Warn("UNSAFE debug mode: messages are acknowledged before the state change they made is appended", "mode", n.opts.Unsafe)
		ro.Journal = ackFirst{ro.Journal}
	case UnsafeRedisSkipFence:
		// validate made sure the journal is Redis's.
		n.log.Warn("UNSAFE debug mode: the Redis journal accepts appends under old tokens, at the log's end", "mode", n.opts.Unsafe)
		n.journal.(*redisjournal.Journal).SetUnsafeSkipFence()
		ro.Journal = inFlight{ro.Journal}
	}
	return nil
}

// skipFenceInFlight is how long UnsafeRedisSkipFence holds an append
// before sending it: at the hot actors' rate (about 20 turns a second
// each in the chaos suite) an actor then has an append in flight almost
// all the time.
const skipFenceInFlight = 80 * time.Millisecond

// inFlight is the journal of UnsafeRedisSkipFence: each append waits
// skipFenceInFlight, then goes out whatever its caller's context says (it
// counts as sent: a stopped process's requests go out when it continues).
type inFlight struct{ journal.Journal }

func (f inFlight) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	time.Sleep(skipFenceInFlight)
	return f.Journal.Append(context.WithoutCancel(ctx), actor, token, expectedSeq, entries)
}

// ackFirstWindow is how long UnsafeMessageAckFirst leaves a message
// acknowledged and its effect unwritten.
const ackFirstWindow = 100 * time.Millisecond

// ackFirst is the journal of UnsafeMessageAckFirst. (The message store is
// the journal underneath, so the first append takes the message out of
// its queue, or accepts a message applied on acceptance.)
type ackFirst struct{ journal.Journal }

func (a ackFirst) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	var acks, rest []journal.Entry
	for _, e := range entries {
		switch e.Kind {
		case journal.KindMessageAck:
			acks = append(acks, e)
		case journal.KindMessageDirect:
			// The turn's entry accepts its message: split it into the
			// acceptance alone, then the turn's changes.
			acks = append(acks, journal.Entry{Kind: journal.KindMessageDirect, Method: e.Method, Time: e.Time, CorrelationID: e.CorrelationID, IdempotencyKey: e.IdempotencyKey})
			if len(e.Payload) > 0 {
				rest = append(rest, journal.Entry{Kind: journal.KindInvocation, Method: e.Method, Payload: e.Payload, Time: e.Time, CorrelationID: e.CorrelationID})
			}
		default:
			rest = append(rest, e)
		}
	}
	if len(acks) == 0 || len(rest) == 0 {
		return a.Journal.Append(ctx, actor, token, expectedSeq, entries)
	}
	tail, err := a.Journal.Append(ctx, actor, token, expectedSeq, acks)
	if err != nil {
		return 0, err
	}
	time.Sleep(ackFirstWindow)
	return a.Journal.Append(ctx, actor, token, tail, rest)
}

// writeBehind is the journal of UnsafeAckBeforeDurable.
type writeBehind struct {
	journal.Journal
	log *slog.Logger

	mu     sync.Mutex
	queues map[string]*wbQueue
	wg     sync.WaitGroup
}

type wbQueue struct {
	pending []func() error
	broken  bool // an append failed: the rest cannot land either
}

func (w *writeBehind) Append(_ context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	entries = slices.Clone(entries)
	job := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := w.Journal.Append(ctx, actor, token, expectedSeq, entries)
		return err
	}
	w.mu.Lock()
	q := w.queues[actor]
	start := q == nil
	if start {
		q = &wbQueue{}
		w.queues[actor] = q
		w.wg.Add(1)
	}
	q.pending = append(q.pending, job)
	w.mu.Unlock()
	if start {
		go w.drain(actor, q)
	}
	return expectedSeq + uint64(len(entries)), nil
}

// drain runs actor's queued appends in order until the queue is empty.
func (w *writeBehind) drain(actor string, q *wbQueue) {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		if len(q.pending) == 0 {
			delete(w.queues, actor)
			w.mu.Unlock()
			return
		}
		job := q.pending[0]
		q.pending = q.pending[1:]
		broken := q.broken
		w.mu.Unlock()
		if broken {
			continue
		}
		if err := job(); err != nil {
			w.log.Warn("UNSAFE: an acknowledged journal append failed and is lost", "actor", actor, "err", err)
			if !errors.Is(err, journal.ErrConflict) {
				w.mu.Lock()
				q.broken = true
				w.mu.Unlock()
			}
		}
	}
}

// wait waits for the appends behind.
func (w *writeBehind) wait() { w.wg.Wait() }

// lockIgnorer is the coordinator of UnsafeIgnoreLock.
type lockIgnorer struct{ lock.Coordinator }

func (c lockIgnorer) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	tok, err := c.Coordinator.Acquire(ctx, s, key)
	var held *lock.HeldError
	if errors.As(err, &held) && held.Token > 0 {
		return held.Token, nil
	}
	return tok, err
}
