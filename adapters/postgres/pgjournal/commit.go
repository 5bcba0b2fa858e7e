package pgjournal

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/journal"
)

// --- group commit ---

type opKind uint8

const (
	opAppend opKind = iota + 1
	opSnapshot
	opTruncate
	opQueue // a queue.Store write
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
	stateTaken            // in a batch: sent (or failed) regardless of ctx
	stateWithdrawn        // its caller gave up while it was queued: dropped
)

// request is one mutation waiting for a committer. The caller's goroutine
// fills the inputs, the committer err, then closes done.
type request struct {
	ctx   context.Context
	op    opKind
	actor string
	token uint64
	seq   uint64 // expectedSeq (append), snapshot Seq, throughSeq (truncate)
	sql   string
	args  []any
	// dest are where the committer scans the statement's one row; once
	// the batch has committed, answer (nil: the journal's verdict, read
	// into v) turns them into the request's error.
	dest   []any
	answer func() error
	v      verdict

	state int // guarded by Journal.mu

	err  error // output
	done chan struct{}
}

// verdictDest makes r's dest the journal functions' verdict, followed by
// more.
func (r *request) verdictDest(more ...any) *request {
	r.dest = append([]any{&r.v.ok, &r.v.tail, &r.v.token, &r.v.snapSeq}, more...)
	return r
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
		return fmt.Errorf("%w: postgres journal at %s", journal.ErrClosed, j.addr)
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
		return fmt.Errorf("%w: %s %q: gave up waiting for postgres at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, ctx.Err())
	}
}

// commitLoop is a committer goroutine, started by Open and stopped by
// Close. It takes everything queued (up to maxBatch requests) and sends it
// as one batch, with no timer: a lone request goes out at once, and
// requests that arrive while the committers' batches are in flight share
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

// send sends batch as one pgx batch, which PostgreSQL runs as one implicit
// transaction, and answers every request.
//
// The requests are sent in actor order (stable, so one actor's keep their
// queue order): every batch takes its actors' row locks in the same order,
// so two committers' batches never deadlock.
//
// Refusals are answers, not errors, so they do not roll the batch back.
// If the batch fails, the whole transaction failed with it: an error the
// server answered (postgres.NotApplied) rolled all of it back, and each
// request is then sent again alone, so that one request's failure is not
// every request's, and again while it meets a deadlock or a serialization
// failure (another transaction's doing); any other failure leaves every
// request's outcome unknown.
func (j *Journal) send(batch []*request) {
	slices.SortStableFunc(batch, func(a, b *request) int { return strings.Compare(a.actor, b.actor) })
	sent, err := j.sendBatch(batch)
	if err == nil {
		return
	}
	if !sent { // no connection: nothing was sent, and a retry would fare no better
		for _, r := range batch {
			r.err = fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, r.op, r.actor, j.addr, err)
			close(r.done)
		}
		return
	}
	if !postgres.NotApplied(err) {
		for _, r := range batch {
			r.err = fmt.Errorf("%w: %s %q at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, err)
			close(r.done)
		}
		return
	}
	if len(batch) == 1 {
		j.sendAlone(batch[0], err)
		return
	}
	for _, r := range batch {
		j.send([]*request{r})
	}
}

// conflictRetries is how many times a request sent alone is sent again
// after the server rolled it back for a deadlock or a serialization
// failure (postgres.IsConflict): another transaction's doing, which the
// next attempt does not meet again.
const conflictRetries = 5

// sendAlone answers r, whose batch failed with err (not applied), after
// sending it again while it fails for a conflict.
func (j *Journal) sendAlone(r *request, err error) {
	for range conflictRetries {
		if !postgres.IsConflict(err) {
			break
		}
		var sent bool
		if sent, err = j.sendBatch([]*request{r}); err == nil {
			return
		}
		if sent && !postgres.NotApplied(err) {
			r.err = fmt.Errorf("%w: %s %q at %s: %w", ErrUnknownOutcome, r.op, r.actor, j.addr, err)
			close(r.done)
			return
		}
	}
	r.err = fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, r.op, r.actor, j.addr, err)
	close(r.done)
}

// verdict is a mutation function's answer: whether it wrote, and the head
// it found.
type verdict struct {
	ok      bool
	tail    uint64
	token   uint64
	snapSeq *uint64
}

// sendBatch sends batch and, if it committed, answers every request and
// returns nil. On failure it answers none and returns the error, and
// whether the batch was sent at all (false: no connection could be had).
func (j *Journal) sendBatch(batch []*request) (sent bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	conn, err := j.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	for _, r := range batch {
		b.Queue(r.sql, r.args...)
	}
	br := conn.SendBatch(ctx, b)
	var firstErr error
	for _, r := range batch {
		if err := br.QueryRow().Scan(r.dest...); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if err := br.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return true, firstErr
	}
	for _, r := range batch {
		if r.answer != nil {
			r.err = r.answer()
		} else {
			r.err = j.result(r, r.v)
		}
		close(r.done)
	}
	return true, nil
}

// result turns a committed verdict into r's error: nil, or the refusal the
// journal's rules give for the head the function found.
func (j *Journal) result(r *request, v verdict) error {
	if v.ok {
		return nil
	}
	st := journal.ActorState{Tail: v.tail, Token: v.token}
	if v.snapSeq != nil {
		st.HasSnapshot, st.SnapshotSeq = true, *v.snapSeq
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
		// The function refused, so nothing was written; but the rules
		// accept what it refused.
		return fmt.Errorf("pgjournal: %s %q at %s: refused by the server, accepted by the rules (head %+v): not applied", r.op, r.actor, j.addr, st)
	}
	return rule
}
