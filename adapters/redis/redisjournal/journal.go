package redisjournal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// Options configure Open. Start from DefaultOptions and set Redis; Open
// never fills in defaults silently (Validate says what is wrong).
type Options struct {
	// Redis names the server, its credentials and the key prefix every key
	// starts with (redis.Options.Prefix). The journal makes its own client
	// from it, with go-redis's retries off: a command that was sent and
	// lost its answer must not be sent again, or an append that was applied
	// would come back as ErrConflict (a clean refusal) on the second try.
	Redis redis.Options

	// MaxBatch is the most mutations (appends, snapshots, truncations) sent
	// in one pipeline. Default 1024: large enough that a batch is bounded
	// by the number of callers, small enough that one pipeline's replies
	// stay well under a second on a slow server.
	MaxBatch int

	// Pipelines is the most pipelines in flight at once, each on its own
	// connection, sent by its own committer goroutine. Default 2, so that
	// Redis can execute (and fsync) one batch while the answers to the
	// previous one travel back and the next is assembled. On the 2-core
	// test machine 1, 2 and 4 were within noise of each other at 64
	// callers (BenchmarkAppend); more cores may want more.
	Pipelines int

	// QueueRetention is how long the queue (queue.Store) remembers the id
	// of an acknowledged or purged message. 0 means
	// queue.DefaultRetention; negative is invalid.
	QueueRetention time.Duration

	// Meter, when not nil, counts the journal's traffic (see RedisStats);
	// several clients may share one, and it then counts them all. nil:
	// Open makes one for the journal.
	Meter *redis.Meter
}

// DefaultOptions returns the options described on each field, with an
// empty Redis (which Validate refuses: set Redis.Addr or another way of
// naming the server).
func DefaultOptions() Options {
	return Options{MaxBatch: 1024, Pipelines: 2}
}

// Validate reports every invalid field, joined, each wrapping
// journal.ErrInvalid.
func (o Options) Validate() error {
	var errs []error
	if _, err := o.Redis.ClientOptions(); err != nil {
		errs = append(errs, fmt.Errorf("%w: redisjournal: %w", journal.ErrInvalid, err))
	}
	if o.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("%w: redisjournal: MaxBatch %d, want at least 1", journal.ErrInvalid, o.MaxBatch))
	}
	if o.Pipelines < 1 {
		errs = append(errs, fmt.Errorf("%w: redisjournal: Pipelines %d, want at least 1", journal.ErrInvalid, o.Pipelines))
	}
	if o.QueueRetention < 0 {
		errs = append(errs, fmt.Errorf("%w: redisjournal: QueueRetention %v is negative", journal.ErrInvalid, o.QueueRetention))
	}
	return errors.Join(errs...)
}

// Journal is a journal.Journal on a Redis server; see the package
// documentation for its layout and guarantees.
//
// Goroutines: Open starts Options.Pipelines committer goroutines, stopped
// and waited for by Close. Append, SaveSnapshot and Truncate encode their
// records on the caller's goroutine, queue a request and wait; a committer
// takes everything queued and sends it as one pipeline. Read, Tail and
// LoadSnapshot run on the caller's goroutine. mu guards the queue, the
// request states and closed.
type Journal struct {
	client   *goredis.Client
	meter    *redis.Meter
	addr     string // for errors
	prefix   string
	maxBatch int

	mu      sync.Mutex
	cond    *sync.Cond // on mu: the queue became non-empty, or closed was set
	closed  bool
	queue   []*request
	readers sync.WaitGroup // in-flight reads; Add under mu while !closed

	retention time.Duration              // queue: how long gone ids are remembered
	notify    atomic.Pointer[notifyFunc] // queue.Notifier

	wake *waker // cross-node wakes (wake.go)

	committers sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error

	// unsafeAppend replaces Append (but for appends with queue entries)
	// when set; only SetUnsafeSkipFence sets it, and it exists only in
	// a binary built with -tags loomchaos (unsafe_loomchaos.go): nil in
	// every other build.
	unsafeAppend func(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error)
}

var _ journal.Journal = (*Journal)(nil)

// Open connects to the server o.Redis names, loads the scripts and starts
// the committers. It fails with an error wrapping ErrUnavailable (naming
// the server) if the server cannot be reached or refuses, and with
// journal.ErrInvalid for invalid options.
func Open(ctx context.Context, o Options) (*Journal, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	co, err := o.Redis.ClientOptions()
	if err != nil {
		return nil, err
	}
	co.MaxRetries = -1 // see Options.Redis
	meter := o.Meter
	if meter == nil {
		meter = new(redis.Meter)
	}
	client := goredis.NewClient(co)
	client.AddHook(meter)
	j := &Journal{client: client, meter: meter, addr: co.Addr, prefix: o.Redis.Prefix(), maxBatch: o.MaxBatch, retention: o.QueueRetention}
	if j.retention == 0 {
		j.retention = queue.DefaultRetention
	}
	j.cond = sync.NewCond(&j.mu)
	if err := j.loadScripts(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	for range o.Pipelines {
		j.committers.Add(1)
		go j.commitLoop()
	}
	j.startWaker()
	return j, nil
}

// loadScripts loads every script into the server's cache, in one round
// trip.
func (j *Journal) loadScripts(ctx context.Context) error {
	pipe := j.client.Pipeline()
	cmds := make([]*goredis.StringCmd, len(scripts))
	for i, s := range scripts {
		cmds[i] = pipe.ScriptLoad(ctx, s.src)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("redisjournal: load scripts into redis at %s: %w", j.addr, ctx.Err())
		}
		// SCRIPT LOAD changes nothing a caller can see: a failure is
		// always "not applied".
		var rerr goredis.Error
		if errors.As(err, &rerr) && !redis.NotApplied(err) { // a server that cannot compile them
			return fmt.Errorf("%w: load scripts into redis at %s (Redis 7.0 or later is needed): %w", ErrUnavailable, j.addr, err)
		}
		return fmt.Errorf("%w: load scripts into redis at %s: %w", ErrUnavailable, j.addr, err)
	}
	for i, s := range scripts {
		if got := cmds[i].Val(); got != s.Hash() {
			return fmt.Errorf("redisjournal: redis at %s loaded a script as %s, its SHA-1 is %s", j.addr, got, s.Hash())
		}
	}
	return nil
}

// Keys. An actor's keys are
//
//	<prefix>j{<actor>}h   its head: a hash
//	<prefix>j{<actor>}l   its log: a stream
//
// The actor is between braces so that both keys hash to the same Redis
// Cluster slot (a script may only touch keys of one slot); the one-byte
// suffix after the closing brace keeps the names of different actors apart
// whatever bytes the actors hold.
func (j *Journal) headKey(actor string) string { return j.prefix + "j{" + actor + "}h" }
func (j *Journal) logKey(actor string) string  { return j.prefix + "j{" + actor + "}l" }

// Append implements journal.Journal. The entries are stamped and encoded on
// the caller's goroutine; a committer sends the append script in its next
// pipeline.
func (j *Journal) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, err
	}
	if hasQueueEntries(entries) {
		return j.appendQueue(ctx, actor, token, expectedSeq, entries)
	}
	if j.unsafeAppend != nil {
		return j.unsafeAppend(ctx, actor, token, expectedSeq, entries)
	}
	return j.appendWith(ctx, appendScript, actor, token, expectedSeq, entries)
}

// appendWith stamps and encodes entries and has a committer run s (the
// append script, or the loomchaos build's unsafe variant) on them.
func (j *Journal) appendWith(ctx context.Context, s *script, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	tail := expectedSeq + uint64(len(entries))
	args := make([]any, 3, 3+2*len(entries))
	args[0], args[1], args[2] = strconv.FormatUint(token, 10), strconv.FormatUint(expectedSeq, 10), strconv.FormatUint(tail, 10)
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = expectedSeq+uint64(i)+1, actor, token
		args = append(args, strconv.FormatUint(e.Seq, 10)+"-0", journal.MarshalEntry(e))
	}
	r := &request{op: opAppend, actor: actor, token: token, seq: expectedSeq,
		script: s, keys: []string{j.headKey(actor), j.logKey(actor)}, args: args}
	if err := j.do(ctx, r); err != nil {
		return 0, err
	}
	return tail, nil
}

// SaveSnapshot implements journal.Journal.
func (j *Journal) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	snap.Token = token
	return j.do(ctx, &request{op: opSnapshot, actor: actor, token: token, seq: snap.Seq,
		script: snapshotScript, keys: []string{j.headKey(actor)},
		args: []any{strconv.FormatUint(token, 10), strconv.FormatUint(snap.Seq, 10), journal.MarshalSnapshot(snap)}})
}

// Truncate implements journal.Journal. A successful Truncate, even one that
// removes nothing, raises the actor's highest token to token.
func (j *Journal) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	return j.do(ctx, &request{op: opTruncate, actor: actor, token: token, seq: throughSeq,
		script: truncateScript, keys: []string{j.headKey(actor), j.logKey(actor)},
		args: []any{strconv.FormatUint(token, 10), strconv.FormatUint(throughSeq, 10)}})
}

// Read implements journal.Journal. It reads the actor's log with one
// XRANGE, so it sees the log at one instant (a Truncate cannot cut into
// the middle of what it returns), and checks each record's checksum, its
// Seq against its stream id, and its actor.
func (j *Journal) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return nil, err
	}
	defer j.readers.Done()
	start := "-"
	if fromSeq > 1 {
		start = strconv.FormatUint(fromSeq, 10) + "-0"
	}
	msgs, err := j.client.XRange(ctx, j.logKey(actor), start, "+").Result()
	if err != nil {
		return nil, j.readErr(ctx, "read", actor, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	out := make([]journal.Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := decodeMessage(actor, m)
		if err == nil && len(out) > 0 && e.Seq != out[len(out)-1].Seq+1 {
			err = fmt.Errorf("%w: seq %d follows seq %d", journal.ErrCorrupt, e.Seq, out[len(out)-1].Seq)
		}
		if err != nil {
			return nil, fmt.Errorf("redisjournal: read %q at %s, stream id %s: %w", actor, j.addr, m.ID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// decodeMessage decodes one stream entry of actor's log.
func decodeMessage(actor string, m goredis.XMessage) (journal.Entry, error) {
	v, ok := m.Values["e"].(string)
	if !ok || len(m.Values) != 1 {
		return journal.Entry{}, fmt.Errorf("%w: stream entry without its record", journal.ErrCorrupt)
	}
	e, err := journal.UnmarshalEntry([]byte(v))
	if err != nil {
		return journal.Entry{}, err
	}
	if m.ID != strconv.FormatUint(e.Seq, 10)+"-0" || e.Actor != actor {
		return journal.Entry{}, fmt.Errorf("%w: record for %q seq %d stored in %q's log", journal.ErrCorrupt, e.Actor, e.Seq, actor)
	}
	return e, nil
}

// Tail implements journal.Journal.
func (j *Journal) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return journal.Tail{}, err
	}
	defer j.readers.Done()
	vals, err := j.client.HMGet(ctx, j.headKey(actor), "tail", "token").Result()
	if err != nil {
		return journal.Tail{}, j.readErr(ctx, "tail of", actor, err)
	}
	var nums [2]uint64
	for i, v := range vals {
		if v == nil {
			continue
		}
		s, _ := v.(string)
		if nums[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return journal.Tail{}, fmt.Errorf("%w: redisjournal: tail of %q at %s: head field %v", journal.ErrCorrupt, actor, j.addr, v)
		}
	}
	return journal.Tail{Seq: nums[0], Token: nums[1]}, nil
}

// LoadSnapshot implements journal.Journal.
func (j *Journal) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	if err := j.enterRead(ctx, actor); err != nil {
		return journal.Snapshot{}, false, err
	}
	defer j.readers.Done()
	v, err := j.client.HGet(ctx, j.headKey(actor), "snap").Bytes()
	if errors.Is(err, goredis.Nil) {
		return journal.Snapshot{}, false, nil
	}
	if err != nil {
		return journal.Snapshot{}, false, j.readErr(ctx, "load snapshot of", actor, err)
	}
	snap, err := journal.UnmarshalSnapshot(v)
	if err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("redisjournal: load snapshot of %q at %s: %w", actor, j.addr, err)
	}
	return snap, true, nil
}

// readErr wraps the failure of a read: a read has no effect, so whatever
// went wrong on the way is ErrUnavailable, unless the caller's context
// ended.
func (j *Journal) readErr(ctx context.Context, op, actor string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("redisjournal: %s %q at %s: %w", op, actor, j.addr, ctx.Err())
	}
	return fmt.Errorf("%w: %s %q at %s: %w", ErrUnavailable, op, actor, j.addr, err)
}

// Ping sends Redis a PING and returns how long the answer took. Any
// failure, the caller's context ending while it waited included, wraps
// ErrUnavailable (a PING changes nothing); after Close it is
// journal.ErrClosed, and a context already done returns its error. The
// PING is sent from a goroutine of its own, so Ping returns when ctx
// ends even if Redis does not answer; Close waits for it.
func (j *Journal) Ping(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, fmt.Errorf("%w: redis journal at %s", journal.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	j.mu.Unlock()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		defer j.readers.Done()
		done <- j.client.Ping(ctx).Err()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%w: ping redis at %s: %w", ErrUnavailable, j.addr, err)
	}
	return d, nil
}

// RedisStats returns what the journal's Meter (Options.Meter, or its
// own) has counted: with a shared Meter, the traffic of every client using
// it. (Stats is the queue's: queue.Store.)
func (j *Journal) RedisStats() redis.Stats { return j.meter.Snapshot() }

// Addr is the address of the Redis server, host:port, for display.
func (j *Journal) Addr() string { return j.addr }

// enterRead admits a read: ctx, actor and closed checks, then registers it
// with j.readers (the caller must call j.readers.Done).
func (j *Journal) enterRead(ctx context.Context, actor string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := journal.CheckActor(actor); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("%w: redis journal at %s", journal.ErrClosed, j.addr)
	}
	j.readers.Add(1)
	return nil
}

// Close implements journal.Journal: it rejects new operations, lets the
// committers send every request already queued and wait for their answers,
// waits for in-flight reads, and closes the client. Later calls wait for
// the first and return nil.
func (j *Journal) Close() error {
	first := false
	j.closeOnce.Do(func() {
		first = true
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		j.cond.Broadcast()
		j.committers.Wait()
		j.readers.Wait()
		j.stopWaker()
		if err := j.client.Close(); err != nil {
			j.closeErr = fmt.Errorf("redisjournal: close client of %s: %w", j.addr, err)
		}
	})
	if !first {
		return nil
	}
	return j.closeErr
}
