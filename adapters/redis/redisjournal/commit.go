package redisjournal

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/journal"
)

// --- group commit ---

type opKind uint8

const (
	opAppend opKind = iota + 1
	opSnapshot
	opTruncate
	opQueue // a queue.Store write: its reply is kept raw for the caller
)

func (o opKind) String() string {
	switch o {
	case opAppend:
		return "append to"
	case opSnapshot:
		return "snapshot of"
	case opQueue:
		return "queue write for"
	default:
		return "truncate of"
	}
}

// Request states, guarded by Journal.mu.
const (
	stateQueued    = iota // in j.queue, not yet taken by a committer
	stateTaken            // in a pipeline: sent (or failed) regardless of ctx
	stateWithdrawn        // its caller gave up while it was queued: dropped
)

// request is one mutation waiting for a committer. The caller's goroutine
// fills the inputs, the committer err, then closes done.
type request struct {
	ctx    context.Context
	op     opKind
	actor  string
	token  uint64
	seq    uint64 // expectedSeq (append), snapshot Seq, throughSeq (truncate)
	script *script
	keys   []string
	args   []any

	state int // guarded by Journal.mu

	err   error    // output
	reply any      // output of opQueue: the script's reply
	wakes []string // output of an append with queue entries: actor, tb(at) pairs
	done  chan struct{}
}

// do queues r for a committer and waits for its answer. If ctx ends while r
// is still queued, r is withdrawn and do returns ctx.Err(): no effect. If a
// committer has already taken r, it is sent regardless; do then returns an
// error wrapping ErrUnknownOutcome and ctx.Err().
func (j *Journal) do(ctx context.Context, r *request) error {
	r.ctx = ctx
	r.done = make(chan struct{})
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("%w: redis journal at %s", journal.ErrClosed, j.addr)
	}
	r.state = stateQueued
	j.queue = append(j.queue, r)
	j.mu.Unlock()
	j.cond.Signal()

	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
	}
	j.mu.Lock()
	queued := r.state == stateQueued
	if queued {
		r.state = stateWithdrawn
	}
	j.mu.Unlock()
	if queued {
		return ctx.Err()
	}
	select {
	case <-r.done: // answered meanwhile: the outcome is known after all
		return r.err
	default:
		return fmt.Errorf("%w: %s %q: gave up waiting for redis at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, ctx.Err())
	}
}

// commitLoop is a committer goroutine, started by Open and stopped by
// Close. It takes everything queued (up to maxBatch requests) and sends it
// as one pipeline, with no timer: a lone request goes out at once, and
// requests that arrive while the committers' pipelines are in flight share
// the next one. After Close it drains the queue, then exits.
func (j *Journal) commitLoop() {
	defer j.committers.Done()
	batch := make([]*request, 0, j.maxBatch)
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closed {
			j.cond.Wait()
		}
		if len(j.queue) == 0 { // closed and drained
			j.mu.Unlock()
			return
		}
		batch = batch[:0]
		i := 0
		for ; i < len(j.queue) && len(batch) < j.maxBatch; i++ {
			r := j.queue[i]
			switch {
			case r.state == stateWithdrawn:
			case r.ctx.Err() != nil:
				// Its caller's context ended before it was taken: no
				// effect. The caller may not be waiting any more.
				r.state, r.err = stateTaken, r.ctx.Err()
				close(r.done)
			default:
				r.state = stateTaken
				batch = append(batch, r)
			}
		}
		n := copy(j.queue, j.queue[i:])
		clear(j.queue[n:])
		j.queue = j.queue[:n]
		more := n > 0
		j.mu.Unlock()
		if more { // more than one batch was queued: wake another committer
			j.cond.Signal()
		}
		if len(batch) > 0 {
			j.send(batch)
			clear(batch)
		}
	}
}

// send sends batch as one pipeline of EVALSHAs and answers every request.
// Requests answered NOSCRIPT (the server forgot the scripts: a restart, a
// SCRIPT FLUSH) did not run: the scripts are loaded again and those
// requests sent again, once.
func (j *Journal) send(batch []*request) {
	ctx := context.Background() // bounded by the client's read and write timeouts
	pending := batch
	for attempt := 0; ; attempt++ {
		pipe := j.client.Pipeline()
		cmds := make([]*goredis.Cmd, len(pending))
		for i, r := range pending {
			cmds[i] = r.script.EvalSha(ctx, pipe, r.keys, r.args...)
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		var again []*request
		for i, r := range pending {
			if attempt == 0 && isNoScript(cmds[i].Err()) {
				again = append(again, r)
				continue
			}
			r.err = j.result(r, cmds[i])
			close(r.done)
		}
		if len(again) == 0 {
			return
		}
		if err := j.loadScripts(ctx); err != nil {
			for _, r := range again {
				r.err = fmt.Errorf("redisjournal: %s %q: %w", r.op, r.actor, err)
				close(r.done)
			}
			return
		}
		pending = again
	}
}

// result turns the answer to r's script into r's error: nil, a refusal from
// the journal's rules, or a failure classified as ErrUnavailable (no
// effect) or ErrUnknownOutcome.
func (j *Journal) result(r *request, cmd *goredis.Cmd) error {
	if r.op == opQueue {
		v, err := cmd.Result()
		if err != nil {
			if redis.NotApplied(err) {
				return fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, r.op, r.actor, j.addr, err)
			}
			return fmt.Errorf("%w: %s %q at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, err)
		}
		r.reply = v
		return nil
	}
	reply, err := cmd.StringSlice()
	if err != nil {
		if redis.NotApplied(err) {
			return fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, r.op, r.actor, j.addr, err)
		}
		return fmt.Errorf("%w: %s %q at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, err)
	}
	if len(reply) == 4 && reply[0] == "ack" && r.op == opAppend {
		return ackRule(r.actor, reply[1], reply[2])
	}
	if len(reply) < 4 || len(reply)%2 != 0 || reply[0] != "ok" && (reply[0] != "no" || len(reply) != 4) {
		return fmt.Errorf("%w: %s %q at %s: unexpected script reply %q", ErrUnknownOutcome, r.op, r.actor, j.addr, reply)
	}
	if reply[0] == "ok" {
		r.wakes = reply[4:]
		return nil
	}
	st, err := headState(reply[1:])
	if err != nil {
		// The script refused, so nothing was written; but its reason cannot
		// be told.
		return fmt.Errorf("redisjournal: %s %q at %s: %w", r.op, r.actor, j.addr, err)
	}
	var rule error
	switch r.op {
	case opAppend:
		rule = st.CheckAppend(r.actor, r.token, r.seq)
	case opSnapshot:
		rule = st.CheckSnapshot(r.actor, r.token, r.seq)
	case opTruncate:
		rule = st.CheckTruncate(r.actor, r.token, r.seq)
	}
	if rule == nil {
		return fmt.Errorf("redisjournal: %s %q at %s: the script refused what the rules accept (head %+v): not applied", r.op, r.actor, j.addr, st)
	}
	return rule
}

// headState parses the head a script reports: tail, token, snapshot seq
// ("" for none).
func headState(h []string) (journal.ActorState, error) {
	var st journal.ActorState
	var err error
	if st.Tail, err = strconv.ParseUint(h[0], 10, 64); err != nil {
		return st, fmt.Errorf("%w: head tail %q", journal.ErrCorrupt, h[0])
	}
	if st.Token, err = strconv.ParseUint(h[1], 10, 64); err != nil {
		return st, fmt.Errorf("%w: head token %q", journal.ErrCorrupt, h[1])
	}
	if h[2] != "" {
		st.HasSnapshot = true
		if st.SnapshotSeq, err = strconv.ParseUint(h[2], 10, 64); err != nil {
			return st, fmt.Errorf("%w: head snapshot seq %q", journal.ErrCorrupt, h[2])
		}
	}
	return st, nil
}
