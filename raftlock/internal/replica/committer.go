package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Group commit. Every command becomes a call: its encoded bytes (with a
// unique id, if its state machine deduplicates it), queued for the
// Group's one committer goroutine. The committer takes everything queued
// (up to MaxBatch calls and MaxBatchBytes) as soon as a send slot is free,
// with no timer, and sends it as one unit: as one Raft entry when this
// node is the leader, or as one forward request to the leader otherwise.
// The leader puts forwarded commands in its own queue, so commands from
// every node share its next entry.
//
// A send that fails in a way that leaves the outcome unknown (leadership
// lost, the leader unreachable, a forward cancelled or timed out) is
// retried with the same command bytes, hence the same ids, but flagged as
// retries (Codec.MarkRetry): the state machine applies each id once and
// answers a repeat with the remembered result, or, for a retry older than
// what it remembers, with an unknown outcome (see the package dedup).
// Calls are retried until their caller's context ends or the Group
// closes.

// call is one command on its way through the committer. The caller fills
// the inputs and waits on done; the committer sets the outputs and closes
// done. state, attempts and abandoned are guarded by Group.mu.
type call[R any] struct {
	ctx       context.Context
	cmd       []byte
	wait      bool // its caller waits for this replica to apply it (see nudge)
	forwarded bool // from HandleForward: committed here or answered Codec.Retry, never forwarded again

	state     callState
	attempts  int  // sends so far
	abandoned bool // the caller stopped waiting; the committer drops it

	res   R
	index uint64 // Raft index the result was applied at
	err   error  // the call failed as a whole (closed, unknown outcome, ...)
	done  chan struct{}
}

type callState uint8

const (
	callQueued   callState = iota // in Group.queue
	callInFlight                  // in a batch being sent
	callDone                      // answered: done is closed
)

// enqueue queues calls for the committer; Errors.Closed after Close.
func (g *Group[R]) enqueue(calls ...*call[R]) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return g.errs.Closed
	}
	for _, c := range calls {
		c.state, c.done = callQueued, make(chan struct{})
	}
	g.queue = append(g.queue, calls...)
	g.mu.Unlock()
	g.signalWake()
	return nil
}

func (g *Group[R]) signalWake() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// waitCall waits for c's answer. If ctx ends first: a call never sent is
// withdrawn and ctx.Err() returned (no effect); otherwise the outcome is
// unknown and the error wraps Errors.UnknownOutcome and ctx.Err().
func (g *Group[R]) waitCall(ctx context.Context, c *call[R]) (R, uint64, error) {
	select {
	case <-c.done:
		return c.res, c.index, c.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	if c.state == callDone {
		g.mu.Unlock()
		return c.res, c.index, c.err
	}
	c.abandoned = true
	never := c.state == callQueued && c.attempts == 0
	name := g.codec.Name(c.cmd)
	g.mu.Unlock()
	var zero R
	if never {
		return zero, 0, ctx.Err()
	}
	return zero, 0, fmt.Errorf("%s: %s: %w: %w", g.name, name, g.errs.UnknownOutcome, ctx.Err())
}

// abandon tells the committer that nobody waits for c any more.
func (g *Group[R]) abandon(c *call[R]) {
	g.mu.Lock()
	c.abandoned = true
	g.mu.Unlock()
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
func (g *Group[R]) commitLoop() {
	defer g.committerWG.Done()
	raftSlots := make(chan struct{}, g.cfg.MaxInFlight)
	forwardSlots := make(chan struct{}, g.cfg.MaxForwardsInFlight)
	var senders sync.WaitGroup
	defer func() {
		senders.Wait()
		g.failQueue()
	}()
	for {
		if !g.waitWork() {
			return
		}
		rt, ok := g.route()
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
		case <-g.closing:
			return
		}
		// Leadership may have changed while this waited for a slot: look
		// again, and wait for a slot of the other kind if it did.
		if now, ok := g.route(); !ok || now.self != rt.self {
			<-slots
			continue
		} else {
			rt = now
		}
		batch := g.take(rt)
		if len(batch) == 0 {
			<-slots
			continue
		}
		senders.Go(func() {
			defer func() {
				<-slots
				g.signalWake()
			}()
			g.send(rt, batch)
		})
	}
}

// send sends one batch, answers it, and requeues what must be retried,
// pausing with a backoff that grows while sends keep failing.
func (g *Group[R]) send(rt route, batch []*call[R]) {
	var retry []*call[R]
	if rt.self {
		retry = g.sendRaft(batch)
	} else {
		retry = g.sendForward(rt, batch)
	}
	if len(retry) == 0 {
		g.failures.Store(0)
		return
	}
	g.stats.retries.Add(1)
	g.requeue(retry)
	n := min(g.failures.Add(1), 8)
	g.pause(time.Millisecond << (n - 1)) // 1ms, 2ms, ... 128ms
}

// waitWork blocks until the queue is not empty; false once closed.
func (g *Group[R]) waitWork() bool {
	for {
		g.mu.Lock()
		n, closed := len(g.queue), g.closed
		g.mu.Unlock()
		switch {
		case closed:
			return false
		case n > 0:
			return true
		}
		<-g.wake
	}
}

// route blocks until there is somewhere to send: this node, once it is the
// leader and has taken office, or the leader it knows of. ok is false when
// the Group is closing.
func (g *Group[R]) route() (route, bool) {
	for {
		g.lmu.Lock()
		ready, changed, ctx := g.ready, g.changed, g.routeCtx
		g.lmu.Unlock()
		if ready {
			return route{self: true, changed: changed, ctx: ctx}, true
		}
		if g.raft.State() != raft.Leader {
			if addr, id := g.raft.LeaderWithID(); id != "" && id != g.id {
				return route{id: id, addr: addr, changed: changed, ctx: ctx}, true
			}
			if g.cfg.LeaderHint != nil {
				if id, addr := g.cfg.LeaderHint(); id != "" && id != g.id {
					return route{id: id, addr: addr, changed: changed, ctx: ctx}, true
				}
			}
		}
		// No leader known, or this node is taking office. Leader changes
		// are observed (changed is closed), but observations can be
		// dropped: look again after a while regardless.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-g.closing:
			t.Stop()
			return route{}, false
		}
		t.Stop()
	}
}

// pause waits d, or until leadership changes or the Group closes.
func (g *Group[R]) pause(d time.Duration) {
	g.lmu.Lock()
	changed := g.changed
	g.lmu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-g.closing:
	}
}

// take removes the next batch from the queue. Calls whose callers gave up
// are dropped; calls never sent whose context has ended are answered with
// it (no effect); forwarded calls are answered Codec.Retry unless this
// node commits the batch itself.
func (g *Group[R]) take(rt route) []*call[R] {
	g.mu.Lock()
	defer g.mu.Unlock()
	var batch []*call[R]
	size, i := 0, 0
	for ; i < len(g.queue) && len(batch) < g.cfg.MaxBatch; i++ {
		c := g.queue[i]
		switch {
		case c.abandoned:
			g.finishLocked(c)
			continue
		case c.forwarded && !rt.self:
			c.res = g.codec.Retry(fmt.Sprintf("%s: %s is not the leader (%s is)", g.name, g.id, rt.id))
			g.finishLocked(c)
			continue
		case c.attempts == 0 && c.ctx.Err() != nil:
			c.err = c.ctx.Err()
			g.finishLocked(c)
			continue
		}
		if len(batch) > 0 && size+len(c.cmd) > g.cfg.MaxBatchBytes {
			break
		}
		size += len(c.cmd)
		c.state = callInFlight
		c.attempts++
		if c.attempts > 1 {
			// Nobody reads c.cmd now: the send before this one has
			// returned (it copied the bytes into its request or entry).
			g.codec.MarkRetry(c.cmd)
		}
		batch = append(batch, c)
	}
	n := copy(g.queue, g.queue[i:])
	clear(g.queue[n:])
	g.queue = g.queue[:n]
	return batch
}

func (g *Group[R]) finishLocked(c *call[R]) {
	c.state = callDone
	close(c.done)
}

// requeue puts calls back at the head of the queue, in order.
func (g *Group[R]) requeue(calls []*call[R]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	keep := calls[:0:0]
	for _, c := range calls {
		if c.abandoned {
			g.finishLocked(c)
			continue
		}
		c.state = callQueued
		keep = append(keep, c)
	}
	g.queue = append(keep, g.queue...)
}

// failQueue answers everything queued once the Group is closed.
func (g *Group[R]) failQueue() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.queue {
		if c.attempts > 0 {
			c.err = fmt.Errorf("%s: %s: %w: the store closed while retrying it", g.name, g.codec.Name(c.cmd), g.errs.UnknownOutcome)
		} else {
			c.err = g.errs.Closed
		}
		g.finishLocked(c)
	}
	clear(g.queue)
	g.queue = nil
}

// answer delivers the results of a batch applied at index.
func (g *Group[R]) answer(batch []*call[R], results []R, index uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range batch {
		c.res, c.index = results[i], index
		g.finishLocked(c)
	}
}

// fail answers every call of batch with err.
func (g *Group[R]) fail(batch []*call[R], err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range batch {
		c.err = err
		g.finishLocked(c)
	}
}

func commands[R any](batch []*call[R]) [][]byte {
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

// response reads what the FSM answered an entry of n commands with.
func (g *Group[R]) response(resp any, n int) (index uint64, results []R, err error) {
	r, ok := resp.(Response[R])
	if !ok {
		return 0, nil, fmt.Errorf("%w: unexpected apply response %T", g.errs.StateMachine, resp)
	}
	index, results, err = r.Outcome()
	switch {
	case err != nil:
		return 0, nil, err
	case len(results) != n:
		return 0, nil, fmt.Errorf("%w: %d results for %d commands", g.errs.StateMachine, len(results), n)
	}
	return index, results, nil
}

// sendRaft commits batch as one Raft entry stamped with this (leader)
// node's clock, and answers it. It returns the calls to retry.
func (g *Group[R]) sendRaft(batch []*call[R]) (retry []*call[R]) {
	f := g.raft.Apply(g.wire.EncodeBatch(g.Stamp(), commands(batch)), 0)
	if err := f.Error(); err != nil {
		if retryableRaftError(err) {
			g.log.Debug(g.name+": apply failed, will retry", "err", err, "commands", len(batch))
			return batch
		}
		g.fail(batch, fmt.Errorf("%s: %w: raft: %w", g.name, g.errs.UnknownOutcome, err))
		return nil
	}
	index, results, err := g.response(f.Response(), len(batch))
	if err != nil {
		g.fail(batch, err)
		return nil
	}
	g.stats.batches.Add(1)
	g.stats.commands.Add(uint64(len(batch)))
	g.answer(batch, results, index)
	return nil
}

// sendForward sends batch to the leader and answers what it applied; it
// returns the calls to retry (all of them if the request failed).
func (g *Group[R]) sendForward(rt route, batch []*call[R]) (retry []*call[R]) {
	if g.cfg.Forwarder == nil {
		err := fmt.Errorf("%s: %w: the leader is %s and Config.Forwarder is nil", g.name, g.errs.NotLeader, rt.id)
		for _, c := range batch {
			if c.attempts > 1 {
				g.fail([]*call[R]{c}, fmt.Errorf("%w: %w", g.errs.UnknownOutcome, err))
			} else {
				g.fail([]*call[R]{c}, err)
			}
		}
		return nil
	}
	g.stats.forwards.Add(1)
	g.stats.forwarded.Add(uint64(len(batch)))
	// The forward ends at ForwardTimeout, or as soon as the leader known
	// changes (rt.ctx), whichever comes first; its commands are then
	// retried, with the same ids and flagged as retries, wherever the
	// next route leads.
	ctx, cancel := context.WithTimeout(rt.ctx, g.cfg.ForwardTimeout)
	out, err := g.cfg.Forwarder.Forward(ctx, rt.id, rt.addr, g.wire.EncodeForward(commands(batch)))
	cancel()
	if err != nil {
		g.log.Debug(g.name+": forward failed, will retry", "leader", rt.id, "err", err, "commands", len(batch))
		return batch
	}
	index, results, err := DecodeForwardResponse(g.wire, g.codec, out)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("%d results for %d commands", len(results), len(batch))
	}
	if err != nil {
		g.log.Warn(g.name+": bad forward response, will retry", "leader", rt.id, "err", err)
		return batch
	}
	done, doneResults := batch[:0:0], results[:0:0]
	for i, c := range batch {
		if g.codec.IsRetry(results[i]) {
			retry = append(retry, c)
			continue
		}
		done, doneResults = append(done, c), append(doneResults, results[i])
	}
	g.answer(done, doneResults, index)
	g.nudge(rt, done, index)
	return retry
}

// nudge asks the leader to let this node learn soon that index committed,
// if some caller of batch waits for this replica to apply it (Exec with
// wait). A follower learns the commit index from the next AppendEntries,
// which the leader sends when it appends an entry, or after CommitTimeout.
// Under load the next batch carries the news. When nothing else is queued
// here, nudge sends an empty forward request, on which the leader appends
// a Barrier entry (see HandleForward): one round trip instead of waiting
// up to 2x CommitTimeout. Calls that do not wait for the local apply send
// no nudges (each would cost the leader an entry); a read that needs one
// asks for it (catchUp).
func (g *Group[R]) nudge(rt route, batch []*call[R], index uint64) {
	if !slices.ContainsFunc(batch, func(c *call[R]) bool { return c.wait }) {
		return
	}
	if applied, _, _ := g.fsm.Progress(); applied >= index {
		return
	}
	g.mu.Lock()
	idle := len(g.queue) == 0
	g.mu.Unlock()
	if !idle {
		return
	}
	g.sendNudge(rt.ctx, rt)
}

// sendNudge sends an empty forward request to the leader of rt, for at
// most ForwardTimeout.
func (g *Group[R]) sendNudge(ctx context.Context, rt route) {
	g.stats.nudges.Add(1)
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ForwardTimeout)
	defer cancel()
	if _, err := g.cfg.Forwarder.Forward(ctx, rt.id, rt.addr, g.wire.EncodeForward(nil)); err != nil {
		g.log.Debug(g.name+": nudge failed", "leader", rt.id, "err", err)
	}
}

// catchUp waits until this replica has applied index. A follower that has
// not nudges the leader first, so that it learns of the commit in one round
// trip (see nudge).
func (g *Group[R]) catchUp(ctx context.Context, index uint64) error {
	if applied, _, _ := g.fsm.Progress(); applied >= index {
		return nil
	}
	if g.cfg.Forwarder != nil && g.raft.State() != raft.Leader {
		if addr, id := g.raft.LeaderWithID(); id != "" && id != g.id {
			g.sendNudge(ctx, route{id: id, addr: addr})
		}
	}
	return g.fsm.WaitApplied(ctx, index, g.closing)
}

// HandleForward applies a forward request from a follower's committer (the
// bytes its Forwarder sent) as the leader, and returns the encoded answer
// for the Forwarder to carry back. A request with no commands is a nudge:
// the leader appends a Barrier entry, so that followers learn the latest
// commit index at once. The commands join this node's queue and
// share its next Raft entries. It fails with Errors.NotLeader (no effect)
// if this node is not the leader or has not yet taken office; a command
// that the node could not commit because it lost leadership meanwhile is
// answered Codec.Retry inside the response. If ctx ends first the error
// wraps ctx.Err() and the outcome is unknown (the follower retries;
// commands are deduplicated).
func (g *Group[R]) HandleForward(ctx context.Context, batch []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !g.IsLeader() {
		if g.isClosed() {
			return nil, g.errs.Closed
		}
		id, addr := g.Leader()
		return nil, fmt.Errorf("%s: %w: %s (leader is %q at %q)", g.name, g.errs.NotLeader, g.id, id, addr)
	}
	cmds, err := g.wire.DecodeForward(batch)
	if err != nil {
		return nil, fmt.Errorf("%s: forward request: %w", g.name, err)
	}
	if len(cmds) == 0 {
		// A nudge (see nudge): append a Barrier so that followers learn
		// the commit index now, unless commands are queued here, whose
		// entry will carry it. The Barrier's future is not needed.
		g.mu.Lock()
		idle := len(g.queue) == 0
		g.mu.Unlock()
		if idle {
			_ = g.raft.Barrier(g.cfg.Raft.CommitTimeout)
		}
		return g.wire.EncodeForwardResponse(0, nil), nil
	}
	calls := make([]*call[R], len(cmds))
	for i, cmd := range cmds {
		calls[i] = &call[R]{ctx: ctx, cmd: cmd, forwarded: true}
	}
	if err := g.enqueue(calls...); err != nil {
		return nil, err
	}
	results := make([]R, len(calls))
	var index uint64
	for i, c := range calls {
		res, idx, err := g.waitCall(ctx, c)
		if err != nil {
			for _, rest := range calls[i+1:] {
				g.abandon(rest)
			}
			return nil, err
		}
		results[i], index = res, max(index, idx)
	}
	return EncodeForwardResponse(g.wire, g.codec, index, results), nil
}

// Exec runs cmd, an encoded command, through the committer and returns its
// result. With wait it returns once this node's replica has applied it, so
// that a read after Exec returns sees it. Without, it returns once the
// command is committed (durable), without waiting for this node to learn
// of the commit (on a follower that can take up to a CommitTimeout);
// BeforeRead waits for it instead, so this node still reads its own
// writes. If ctx ends before the command was sent, Exec returns ctx.Err()
// (no effect); after, an error wrapping Errors.UnknownOutcome and
// ctx.Err().
func (g *Group[R]) Exec(ctx context.Context, cmd []byte, wait bool) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	cl := &call[R]{ctx: ctx, cmd: cmd, wait: wait}
	if err := g.enqueue(cl); err != nil {
		return zero, err
	}
	res, index, err := g.waitCall(ctx, cl)
	if err != nil {
		return zero, err
	}
	if !wait || g.cfg.Partial && !g.waitReplicated(ctx, index) {
		for {
			cur := g.lastWrite.Load()
			if index <= cur || g.lastWrite.CompareAndSwap(cur, index) {
				break
			}
		}
		return res, nil
	}
	if err := g.fsm.WaitApplied(ctx, index, g.closing); err != nil {
		switch {
		case errors.Is(err, g.errs.Closed):
			// Committed; nothing can be read here any more anyway.
		case errors.Is(err, g.errs.StateMachine):
			return zero, err
		default:
			return zero, fmt.Errorf("%s: %s committed at index %d, but this node has not applied it yet: %w", g.name, g.codec.Name(cmd), index, err)
		}
	}
	return res, nil
}

// waitReplicated waits, on a Partial node, until its replica has applied
// index (true), or as long as the node replicates the group: outside it
// (never a member, or removed meanwhile) the replica will not apply index,
// and the leader's answer is the result (false). Whatever ends the wait
// otherwise (ctx, Close, a failed state machine) is Exec's to report, and
// true leaves it to Exec's own wait.
func (g *Group[R]) waitReplicated(ctx context.Context, index uint64) bool {
	for g.Replicating() {
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := g.fsm.WaitApplied(wctx, index, g.closing)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return true
		}
	}
	return false
}

// BeforeRead admits a read of this node's replica: it fails if ctx has
// ended, the Group is closed or the state machine failed, and otherwise
// returns once the replica has applied this node's latest command that
// Exec returned without waiting for (nudging the leader if it has to), so
// that the node reads its own writes.
func (g *Group[R]) BeforeRead(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.isClosed() {
		return g.errs.Closed
	}
	if _, _, failed := g.fsm.Progress(); failed != nil {
		return failed
	}
	if g.cfg.Partial && !g.Replicating() {
		return fmt.Errorf("%s: %w: %s is not a member of its configuration, or has not heard from a leader for an election timeout",
			g.name, g.errs.NotReplica, g.id)
	}
	if w := g.lastWrite.Load(); w > 0 {
		if err := g.catchUp(ctx, w); err != nil {
			return fmt.Errorf("%s: read waiting for this node's write at index %d: %w", g.name, w, err)
		}
	}
	return nil
}
