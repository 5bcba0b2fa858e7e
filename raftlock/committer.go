package raftlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Group commit. Every write becomes a call: an encoded command with a
// unique id, queued for the Store's one committer goroutine. The committer
// takes everything queued (up to MaxBatch calls and MaxBatchBytes) as soon
// as its previous send has returned, with no timer, and sends it as one
// unit: as one Raft entry when this node is the leader, or as one forward
// request to the leader otherwise. The leader puts forwarded commands in
// its own queue, so commands from every node share its next entry.
//
// A send that fails in a way that leaves the outcome unknown (leadership
// lost, the leader unreachable, a forward cancelled or timed out) is
// retried with the same command bytes, hence the same ids, but flagged as
// retries: the state machine applies each id once and answers a repeat
// with the remembered result, or, for a retry older than what it
// remembers, with ErrUnknownOutcome (see applyCommand). Calls are retried
// until their caller's context ends or the Store closes.

// call is one command on its way through the committer. The caller fills
// the inputs and waits on done; the committer sets the outputs and closes
// done. state, attempts and abandoned are guarded by Store.mu.
type call struct {
	ctx       context.Context
	op        op
	cmd       []byte
	forwarded bool // from HandleForward: committed here or answered codeRetry, never forwarded again

	state     callState
	attempts  int  // sends so far
	abandoned bool // the caller stopped waiting; the committer drops it

	res   result
	index uint64 // Raft index the result was applied at
	err   error  // the call failed as a whole (closed, unknown outcome, ...)
	done  chan struct{}
}

type callState uint8

const (
	callQueued   callState = iota // in Store.queue
	callInFlight                  // in a batch being sent
	callDone                      // answered: done is closed
)

// enqueue queues calls for the committer; errClosed after Close.
func (s *Store) enqueue(calls ...*call) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	for _, c := range calls {
		c.state, c.done = callQueued, make(chan struct{})
	}
	s.queue = append(s.queue, calls...)
	s.mu.Unlock()
	s.signalWake()
	return nil
}

func (s *Store) signalWake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// waitCall waits for c's answer. If ctx ends first: a call never sent is
// withdrawn and ctx.Err() returned (no effect); otherwise the outcome is
// unknown and the error wraps ErrUnknownOutcome and ctx.Err().
func (s *Store) waitCall(ctx context.Context, c *call) (result, uint64, error) {
	select {
	case <-c.done:
		return c.res, c.index, c.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	if c.state == callDone {
		s.mu.Unlock()
		return c.res, c.index, c.err
	}
	c.abandoned = true
	never := c.state == callQueued && c.attempts == 0
	s.mu.Unlock()
	if never {
		return result{}, 0, ctx.Err()
	}
	return result{}, 0, fmt.Errorf("raftlock: %s: %w: %w", c.op, ErrUnknownOutcome, ctx.Err())
}

// abandon tells the committer that nobody waits for c any more.
func (s *Store) abandon(c *call) {
	s.mu.Lock()
	c.abandoned = true
	s.mu.Unlock()
}

// route is where the committer sends a batch: to Raft here, or to the
// leader through the Forwarder.
type route struct {
	self bool
	id   raft.ServerID
	addr raft.ServerAddress

	// changed is closed, and ctx cancelled, once leadership or the known
	// leader changes after the route was chosen.
	changed <-chan struct{}
	ctx     context.Context
}

// commitLoop is the committer goroutine, started by Open and stopped by
// Close. It takes a batch as soon as a send slot for its route is free
// (MaxInFlight batches committed to Raft here, MaxForwardsInFlight
// forwarded to the leader; with 1, the next batch is taken when the
// previous send has returned) and hands it to a sender goroutine. Once
// Close has set closed, it waits for the batches in flight to be answered,
// fails what is queued, and exits.
func (s *Store) commitLoop() {
	defer s.committerWG.Done()
	raftSlots := make(chan struct{}, s.cfg.MaxInFlight)
	forwardSlots := make(chan struct{}, s.cfg.MaxForwardsInFlight)
	var senders sync.WaitGroup
	defer func() {
		senders.Wait()
		s.failQueue()
	}()
	for {
		if !s.waitWork() {
			return
		}
		rt, ok := s.route()
		if !ok {
			return
		}
		slots := raftSlots
		if !rt.self {
			slots = forwardSlots
		}
		select {
		case slots <- struct{}{}:
		case <-rt.changed:
			// The leader changed while every slot of this route was
			// taken (by forwards to a leader that stopped answering,
			// say, now cancelled): route again. A node that became
			// the leader commits through Raft at once.
			continue
		case <-s.closing:
			return
		}
		// Leadership may have changed while this waited for a slot: look
		// again, and wait for a slot of the other kind if it did.
		if now, ok := s.route(); !ok || now.self != rt.self {
			<-slots
			continue
		} else {
			rt = now
		}
		batch := s.take(rt)
		if len(batch) == 0 {
			<-slots
			continue
		}
		senders.Go(func() {
			defer func() {
				<-slots
				s.signalWake()
			}()
			s.send(rt, batch)
		})
	}
}

// send sends one batch, answers it, and requeues what must be retried,
// pausing with a backoff that grows while sends keep failing.
func (s *Store) send(rt route, batch []*call) {
	var retry []*call
	if rt.self {
		retry = s.sendRaft(batch)
	} else {
		retry = s.sendForward(rt, batch)
	}
	if len(retry) == 0 {
		s.failures.Store(0)
		return
	}
	s.stats.retries.Add(1)
	s.requeue(retry)
	n := min(s.failures.Add(1), 8)
	s.pause(time.Millisecond << (n - 1)) // 1ms, 2ms, ... 128ms
}

// waitWork blocks until the queue is not empty; false once closed.
func (s *Store) waitWork() bool {
	for {
		s.mu.Lock()
		n, closed := len(s.queue), s.closed
		s.mu.Unlock()
		switch {
		case closed:
			return false
		case n > 0:
			return true
		}
		<-s.wake
	}
}

// route blocks until there is somewhere to send: this node, once it is the
// leader and has taken office, or the leader it knows of. ok is false when
// the Store is closing.
func (s *Store) route() (route, bool) {
	for {
		s.lmu.Lock()
		ready, changed, ctx := s.ready, s.changed, s.routeCtx
		s.lmu.Unlock()
		if ready {
			return route{self: true, changed: changed, ctx: ctx}, true
		}
		if s.raft.State() != raft.Leader {
			if addr, id := s.raft.LeaderWithID(); id != "" && id != s.cfg.NodeID {
				return route{id: id, addr: addr, changed: changed, ctx: ctx}, true
			}
		}
		// No leader known, or this node is taking office. Leader changes
		// are observed (changed is closed), but observations can be
		// dropped: look again after a while regardless.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-s.closing:
			t.Stop()
			return route{}, false
		}
		t.Stop()
	}
}

// pause waits d, or until leadership changes or the Store closes.
func (s *Store) pause(d time.Duration) {
	s.lmu.Lock()
	changed := s.changed
	s.lmu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-s.closing:
	}
}

// take removes the next batch from the queue. Calls whose callers gave up
// are dropped; calls never sent whose context has ended are answered with
// it (no effect); forwarded calls are answered codeRetry unless this node
// commits the batch itself.
func (s *Store) take(rt route) []*call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var batch []*call
	size, i := 0, 0
	for ; i < len(s.queue) && len(batch) < s.cfg.MaxBatch; i++ {
		c := s.queue[i]
		switch {
		case c.abandoned:
			s.finishLocked(c)
			continue
		case c.forwarded && !rt.self:
			c.res = result{code: codeRetry, text: fmt.Sprintf("raftlock: %s is not the leader (%s is)", s.cfg.NodeID, rt.id)}
			s.finishLocked(c)
			continue
		case c.attempts == 0 && c.ctx.Err() != nil:
			c.err = c.ctx.Err()
			s.finishLocked(c)
			continue
		}
		if len(batch) > 0 && size+len(c.cmd) > s.cfg.MaxBatchBytes {
			break
		}
		size += len(c.cmd)
		c.state = callInFlight
		c.attempts++
		if c.attempts > 1 {
			// Nobody reads c.cmd now: the send before this one has
			// returned (it copied the bytes into its request or entry).
			markRetry(c.cmd)
		}
		batch = append(batch, c)
	}
	n := copy(s.queue, s.queue[i:])
	clear(s.queue[n:])
	s.queue = s.queue[:n]
	return batch
}

func (s *Store) finishLocked(c *call) {
	c.state = callDone
	close(c.done)
}

// requeue puts calls back at the head of the queue, in order.
func (s *Store) requeue(calls []*call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := calls[:0:0]
	for _, c := range calls {
		if c.abandoned {
			s.finishLocked(c)
			continue
		}
		c.state = callQueued
		keep = append(keep, c)
	}
	s.queue = append(keep, s.queue...)
}

// failQueue answers everything queued once the Store is closed.
func (s *Store) failQueue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.queue {
		if c.attempts > 0 {
			c.err = fmt.Errorf("raftlock: %s: %w: the store closed while retrying it", c.op, ErrUnknownOutcome)
		} else {
			c.err = errClosed
		}
		s.finishLocked(c)
	}
	clear(s.queue)
	s.queue = nil
}

// answer delivers the results of a batch applied at index.
func (s *Store) answer(batch []*call, results []result, index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range batch {
		c.res, c.index = results[i], index
		s.finishLocked(c)
	}
}

// fail answers every call of batch with err.
func (s *Store) fail(batch []*call, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range batch {
		c.err = err
		s.finishLocked(c)
	}
}

func commands(batch []*call) [][]byte {
	cmds := make([][]byte, len(batch))
	for i, c := range batch {
		cmds[i] = c.cmd
	}
	return cmds
}

// retryableRaftError reports whether an Apply error leaves the command to
// be retried elsewhere or later: it was not applied, or it may have been
// and the dedup table makes a retry safe.
func retryableRaftError(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrEnqueueTimeout) ||
		errors.Is(err, raft.ErrAbortedByRestore)
}

// sendRaft commits batch as one Raft entry stamped with this (leader)
// node's clock, and answers it. It returns the calls to retry.
func (s *Store) sendRaft(batch []*call) (retry []*call) {
	f := s.raft.Apply(encodeBatch(s.stamp(), commands(batch)), 0)
	if err := f.Error(); err != nil {
		if retryableRaftError(err) {
			s.log.Debug("raftlock: apply failed, will retry", "err", err, "commands", len(batch))
			return batch
		}
		s.fail(batch, fmt.Errorf("raftlock: %w: raft: %w", ErrUnknownOutcome, err))
		return nil
	}
	resp, ok := f.Response().(*applyResponse)
	switch {
	case !ok || resp == nil:
		s.fail(batch, fmt.Errorf("%w: unexpected apply response %T", ErrStateMachine, f.Response()))
		return nil
	case resp.err != nil:
		s.fail(batch, resp.err)
		return nil
	case len(resp.results) != len(batch):
		s.fail(batch, fmt.Errorf("%w: %d results for %d commands", ErrStateMachine, len(resp.results), len(batch)))
		return nil
	}
	s.stats.batches.Add(1)
	s.stats.commands.Add(uint64(len(batch)))
	s.answer(batch, resp.results, resp.index)
	return nil
}

// sendForward sends batch to the leader and answers what it applied; it
// returns the calls to retry (all of them if the request failed).
func (s *Store) sendForward(rt route, batch []*call) (retry []*call) {
	if s.cfg.Forwarder == nil {
		err := fmt.Errorf("raftlock: %w: the leader is %s and Config.Forwarder is nil", ErrNotLeader, rt.id)
		for _, c := range batch {
			if c.attempts > 1 {
				s.fail([]*call{c}, fmt.Errorf("%w: %w", ErrUnknownOutcome, err))
			} else {
				s.fail([]*call{c}, err)
			}
		}
		return nil
	}
	s.stats.forwards.Add(1)
	s.stats.forwarded.Add(uint64(len(batch)))
	// The forward ends at ForwardTimeout, or as soon as the leader known
	// changes (rt.ctx), whichever comes first; its commands are then
	// retried, with the same ids and flagged as retries, wherever the
	// next route leads.
	ctx, cancel := context.WithTimeout(rt.ctx, s.cfg.ForwardTimeout)
	out, err := s.cfg.Forwarder.Forward(ctx, rt.id, rt.addr, encodeForward(commands(batch)))
	cancel()
	if err != nil {
		s.log.Debug("raftlock: forward failed, will retry", "leader", rt.id, "err", err, "commands", len(batch))
		return batch
	}
	index, results, err := decodeForwardResponse(out)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("%w: %d results for %d commands", errBadWire, len(results), len(batch))
	}
	if err != nil {
		s.log.Warn("raftlock: bad forward response, will retry", "leader", rt.id, "err", err)
		return batch
	}
	done, doneResults := batch[:0:0], results[:0:0]
	for i, c := range batch {
		if results[i].code == codeRetry {
			retry = append(retry, c)
			continue
		}
		done, doneResults = append(done, c), append(doneResults, results[i])
	}
	s.answer(done, doneResults, index)
	s.nudge(rt, done, index)
	return retry
}

// nudge asks the leader to let this node learn soon that index committed,
// if some caller of batch waits for this replica to apply it (exec: any
// write but a journal write). A follower learns the commit index from the
// next AppendEntries, which the leader sends when it appends an entry, or
// after CommitTimeout. Under load the next batch carries the news. When
// nothing else is queued here, nudge sends an empty forward request, on
// which the leader appends a Barrier entry (see HandleForward): one round
// trip instead of waiting up to 2x CommitTimeout. Journal writes do not
// wait for the local apply, so a stream of them sends no nudges (each would
// cost the leader an entry); a read that needs one asks for it (catchUp).
func (s *Store) nudge(rt route, batch []*call, index uint64) {
	if !slices.ContainsFunc(batch, func(c *call) bool { return !journalWrite(c.op) }) {
		return
	}
	if applied, _, _ := s.fsm.progress(); applied >= index {
		return
	}
	s.mu.Lock()
	idle := len(s.queue) == 0
	s.mu.Unlock()
	if !idle {
		return
	}
	s.sendNudge(rt.ctx, rt)
}

// sendNudge sends an empty forward request to the leader of rt, for at
// most ForwardTimeout.
func (s *Store) sendNudge(ctx context.Context, rt route) {
	s.stats.nudges.Add(1)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	if _, err := s.cfg.Forwarder.Forward(ctx, rt.id, rt.addr, encodeForward(nil)); err != nil {
		s.log.Debug("raftlock: nudge failed", "leader", rt.id, "err", err)
	}
}

// catchUp waits until this replica has applied index. A follower that has
// not nudges the leader first, so that it learns of the commit in one round
// trip (see nudge).
func (s *Store) catchUp(ctx context.Context, index uint64) error {
	if applied, _, _ := s.fsm.progress(); applied >= index {
		return nil
	}
	if s.cfg.Forwarder != nil && s.raft.State() != raft.Leader {
		if addr, id := s.raft.LeaderWithID(); id != "" && id != s.cfg.NodeID {
			s.sendNudge(ctx, route{id: id, addr: addr})
		}
	}
	return s.fsm.waitApplied(ctx, index, s.closing)
}

// HandleForward applies a forward request from a follower's committer (the
// bytes its Forwarder sent) as the leader, and returns the encoded answer
// for the Forwarder to carry back. A request with no commands is a nudge:
// the leader appends a Barrier entry, so that followers learn the latest
// commit index at once. The commands join this node's queue and
// share its next Raft entries. It fails with ErrNotLeader (no effect) if
// this node is not the leader or has not yet taken office; a command that
// the node could not commit because it lost leadership meanwhile is
// answered "retry" inside the response. If ctx ends first the error wraps
// ctx.Err() and the outcome is unknown (the follower retries; commands are
// deduplicated).
func (s *Store) HandleForward(ctx context.Context, batch []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.IsLeader() {
		if s.isClosed() {
			return nil, errClosed
		}
		id, addr := s.Leader()
		return nil, fmt.Errorf("raftlock: %w: %s (leader is %q at %q)", ErrNotLeader, s.cfg.NodeID, id, addr)
	}
	cmds, err := decodeForward(batch)
	if err != nil {
		return nil, fmt.Errorf("raftlock: forward request: %w", err)
	}
	if len(cmds) == 0 {
		// A nudge (see Store.nudge): append a Barrier so that followers
		// learn the commit index now, unless commands are queued here,
		// whose entry will carry it. The Barrier's future is not needed.
		s.mu.Lock()
		idle := len(s.queue) == 0
		s.mu.Unlock()
		if idle {
			_ = s.raft.Barrier(s.cfg.CommitTimeout)
		}
		return encodeForwardResponse(0, nil), nil
	}
	calls := make([]*call, len(cmds))
	for i, cmd := range cmds {
		calls[i] = &call{ctx: ctx, op: cmdOp(cmd), cmd: cmd, forwarded: true}
	}
	if err := s.enqueue(calls...); err != nil {
		return nil, err
	}
	results := make([]result, len(calls))
	var index uint64
	for i, c := range calls {
		res, idx, err := s.waitCall(ctx, c)
		if err != nil {
			for _, rest := range calls[i+1:] {
				s.abandon(rest)
			}
			return nil, err
		}
		results[i], index = res, max(index, idx)
	}
	return encodeForwardResponse(index, results), nil
}

// exec runs one command through the committer and waits until this node's
// replica has applied it, so that a read after exec returns sees it.
// Commands other than noop and reap get a fresh id, and are born at this
// replica's clock (see command.born).
func (s *Store) exec(ctx context.Context, c command) (result, error) {
	if c.op != opNoop && c.op != opReap {
		c.id = cmdID{origin: s.origin, seq: s.seq.Add(1)}
		_, c.born, _ = s.fsm.progress()
	}
	return s.execEncoded(ctx, c.op, encodeCommand(c))
}

// journalWrite reports whether o is a journal write (see execEncoded).
func journalWrite(o op) bool {
	return o == opAppend || o == opSaveSnapshot || o == opTruncate
}

// execEncoded is exec for a command already encoded (with its id).
func (s *Store) execEncoded(ctx context.Context, o op, cmd []byte) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	cl := &call{ctx: ctx, op: o, cmd: cmd}
	if err := s.enqueue(cl); err != nil {
		return result{}, err
	}
	res, index, err := s.waitCall(ctx, cl)
	if err != nil {
		return result{}, err
	}
	if journalWrite(o) {
		// A journal write is durable once committed, and nothing reads
		// its result from this replica right away: do not wait for this
		// node to learn of the commit (on a follower that can take up to
		// a CommitTimeout). Reads on this node wait for it instead (see
		// enterRead), so this node still reads its own writes.
		for {
			cur := s.lastWrite.Load()
			if index <= cur || s.lastWrite.CompareAndSwap(cur, index) {
				break
			}
		}
		return res, nil
	}
	if err := s.fsm.waitApplied(ctx, index, s.closing); err != nil {
		switch {
		case errors.Is(err, errClosed):
			// Committed; nothing can be read here any more anyway.
		case errors.Is(err, ErrStateMachine):
			return result{}, err
		default:
			return result{}, fmt.Errorf("raftlock: %s committed at index %d, but this node has not applied it yet: %w", o, index, err)
		}
	}
	return res, nil
}
