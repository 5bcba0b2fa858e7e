package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/queue"
)

// The FileJournal is also a queue.Store: the queue rules (internal/queuesm)
// run on buckets of the same bbolt file ("q." and a name, queuesm's
// BucketNames), in the committer's transactions. A queue write is a
// request like an append, group-committed and fsynced with the others;
// an append's KindMessageAck and KindMessageSend entries are checked after
// the journal's rules and before anything is written, then applied in the
// same request, so an acknowledgement commits with the state change. The
// reads run read-only transactions on the caller's goroutine. OpenFile's
// recovery checks the journal's records only: the queue buckets hold their
// own encodings (queue's, with a CRC each) and a damaged record there fails
// the read or write that meets it with queue.ErrCorrupt.

var (
	_ queue.Store    = (*FileJournal)(nil)
	_ queue.Notifier = (*FileJournal)(nil)
)

// queueWake is a notification of the queue machine.
type queueWake struct {
	actor string
	at    int64
}

// createQueueBuckets adds the queue machine's buckets to a file that lacks
// them (new, or written before the queues).
func createQueueBuckets(db *bolt.DB) error {
	missing := false
	if err := db.View(func(tx *bolt.Tx) error {
		for _, name := range queuesm.BucketNames {
			missing = missing || tx.Bucket([]byte(name)) == nil
		}
		return nil
	}); err != nil || !missing {
		return err // a file that has them is not written to
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range queuesm.BucketNames {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
}

// queues is the queue machine on tx's buckets. In a read-write
// transaction its notifications go to f.wakes (committer only).
func (f *FileJournal) queues(tx *bolt.Tx) *queuesm.Machine {
	b := queuesm.NewBuckets(func(name string) kv.Bucket { return boltBucket{tx.Bucket([]byte(name))} })
	cfg := queuesm.Config{Retention: f.qRetention}
	if tx.Writable() {
		cfg.OnWake = func(actor string, at int64) { f.wakes = append(f.wakes, queueWake{actor, at}) }
	}
	return queuesm.New(b, cfg)
}

// announce tells the Notify function about the committed transaction's
// notifications (committer only, after the commit and after the batch's
// writers were answered).
func (f *FileJournal) announce() {
	fn := f.notify.Load()
	if fn == nil {
		return
	}
	for _, w := range f.wakes {
		(*fn)(w.actor, time.Unix(0, w.at).UTC())
	}
}

// appendMessages are the message entries of one append, checked.
type appendMessages struct {
	m     *queuesm.Machine
	now   int64
	actor string
	acks  []string
	sends [][]byte
}

// apply acknowledges and enqueues, after the append's entries are written.
func (a appendMessages) apply() error {
	if a.m == nil {
		return nil
	}
	if len(a.acks) > 0 {
		if err := a.m.Ack(a.now, a.actor, a.acks); err != nil {
			return err
		}
	}
	for _, p := range a.sends {
		if _, err := a.m.EnqueueOutbox(a.now, p); err != nil {
			return err
		}
	}
	return nil
}

// checkMessages applies the rules of r's message entries: every ack names
// a pending message of the actor (else a reject wrapping ErrAck), every
// send is a valid message (else ErrInvalid).
func (f *FileJournal) checkMessages(tx *bolt.Tx, r *request) (appendMessages, error, error) {
	a := appendMessages{actor: r.actor}
	for _, rec := range r.recs {
		if k := recordKind(rec); k != KindMessageAck && k != KindMessageSend {
			continue
		}
		e, err := UnmarshalEntry(rec)
		if err != nil {
			return a, nil, err
		}
		if a.m == nil {
			a.m, a.now = f.queues(tx), queue.UnixNano(f.now())
		}
		if e.Kind == KindMessageAck {
			a.acks = append(a.acks, e.IdempotencyKey)
			continue
		}
		if rule := a.m.CheckOutbox(e.IdempotencyKey, e.Payload); rule != nil {
			return a, fmt.Errorf("%w: append to %q: %w", ErrInvalid, r.actor, rule), nil
		}
		a.sends = append(a.sends, e.Payload)
	}
	if len(a.acks) > 0 {
		rule, err := a.m.CheckAcks(r.actor, a.acks)
		if err != nil {
			return a, nil, err
		}
		if rule != nil {
			return a, fmt.Errorf("%w: append to %q: %w", ErrAck, r.actor, rule), nil
		}
	}
	return a, nil, nil
}

// recordKind reads the kind of a MarshalEntry record without decoding it:
// the version byte, the uvarint seq, then the kind.
func recordKind(rec []byte) Kind {
	i := 1
	for i < len(rec) && rec[i]&0x80 != 0 {
		i++
	}
	if i+1 >= len(rec) {
		return 0
	}
	return Kind(rec[i+1])
}

// write runs a queue write through the committer.
func (f *FileJournal) write(ctx context.Context, what string, fn func(m *queuesm.Machine, now int64) (reject, fatal error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := f.do(ctx, &request{op: opQueue, actor: what, queue: fn})
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w: %w", queue.ErrClosed, err)
	}
	return err
}

// read runs fn on the queue machine in a read-only transaction.
func (f *FileJournal) read(ctx context.Context, fn func(m *queuesm.Machine) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("%w: %w: %s", queue.ErrClosed, ErrClosed, f.path)
	}
	f.readers.Add(1)
	f.mu.Unlock()
	defer f.readers.Done()
	return f.db.View(func(tx *bolt.Tx) error { return fn(f.queues(tx)) })
}

// Enqueue implements queue.Store.
func (f *FileJournal) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	var acc queue.Accepted
	err := f.write(ctx, msg.Actor, func(m *queuesm.Machine, now int64) (rule, err error) {
		acc, rule, err = m.Enqueue(now, msg)
		return rule, err
	})
	return acc, err
}

// Due implements queue.Store.
func (f *FileJournal) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	var out []queue.Message
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Due(actor, queue.UnixNano(now), max)
		return err
	})
	return out, err
}

// Release implements queue.Store. It writes (and fsyncs) nothing when
// nothing of actor's is due at now.
func (f *FileJournal) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	if err := queue.CheckActor(actor); err != nil {
		return 0, err
	}
	var due bool
	if err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		due, err = m.Releasable(actor, queue.UnixNano(now))
		return err
	}); err != nil || !due {
		return 0, err
	}
	var n int
	err := f.write(ctx, actor, func(m *queuesm.Machine, _ int64) (rule, err error) {
		n, rule, err = m.Release(queue.UnixNano(now), actor)
		return rule, err
	})
	return n, err
}

// Ready implements queue.Store.
func (f *FileJournal) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	var out []queue.Ready
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Ready(queue.UnixNano(until), max)
		return err
	})
	return out, err
}

// Retry implements queue.Store.
func (f *FileJournal) Retry(ctx context.Context, fl queue.Failure) error {
	return f.write(ctx, fl.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.Retry(now, fl) })
}

// DeadLetter implements queue.Store.
func (f *FileJournal) DeadLetter(ctx context.Context, fl queue.Failure) error {
	return f.write(ctx, fl.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.DeadLetter(now, fl) })
}

// ListDead implements queue.Store.
func (f *FileJournal) ListDead(ctx context.Context, fl queue.Filter) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.ListDead(fl)
		return err
	})
	return out, err
}

// Replay implements queue.Store.
func (f *FileJournal) Replay(ctx context.Context, fl queue.Filter, now time.Time) (int, error) {
	var n int
	err := f.write(ctx, "dead letters", func(m *queuesm.Machine, _ int64) (rule, err error) {
		n, rule, err = m.Replay(queue.UnixNano(now), fl)
		return rule, err
	})
	return n, err
}

// Purge implements queue.Store.
func (f *FileJournal) Purge(ctx context.Context, fl queue.Filter) (int, error) {
	var n int
	err := f.write(ctx, "dead letters", func(m *queuesm.Machine, now int64) (rule, err error) {
		n, rule, err = m.Purge(now, fl)
		return rule, err
	})
	return n, err
}

// SetReminder implements queue.Store.
func (f *FileJournal) SetReminder(ctx context.Context, r queue.Reminder) error {
	return f.write(ctx, r.Actor, func(m *queuesm.Machine, now int64) (error, error) { return m.SetReminder(now, r) })
}

// DeleteReminder implements queue.Store.
func (f *FileJournal) DeleteReminder(ctx context.Context, actor, name string) error {
	return f.write(ctx, actor, func(m *queuesm.Machine, now int64) (error, error) { return m.DeleteReminder(now, actor, name) })
}

// Reminders implements queue.Store.
func (f *FileJournal) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	var out []queue.Reminder
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Reminders(actor)
		return err
	})
	return out, err
}

// Stats implements queue.Store.
func (f *FileJournal) Stats(ctx context.Context) ([]queue.Stats, error) {
	var out []queue.Stats
	err := f.read(ctx, func(m *queuesm.Machine) (err error) {
		out, err = m.Stats()
		return err
	})
	return out, err
}

// Notify implements queue.Notifier: fn is called on the committer
// goroutine after each commit, for every actor it gave something to
// deliver; it must not block.
func (f *FileJournal) Notify(fn func(actor string, at time.Time)) { f.notify.Store(&fn) }

// boltBucket is a *bolt.Bucket as the queue machine sees it (kv.Bucket).
type boltBucket struct{ b *bolt.Bucket }

var _ kv.Bucket = boltBucket{}

func (b boltBucket) Get(key []byte) []byte {
	k, v := b.b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil
	}
	if v == nil {
		return []byte{}
	}
	return v
}

func (b boltBucket) Put(key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	return b.b.Put(key, val)
}

func (b boltBucket) Delete(key []byte) error { return b.b.Delete(key) }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	return b.b.ForEach(func(k, v []byte) error {
		if v == nil {
			v = []byte{}
		}
		return fn(k, v)
	})
}

func (b boltBucket) Cursor() kv.Cursor { return b.PrefixCursor(nil) }

func (b boltBucket) PrefixCursor(prefix []byte) kv.Cursor {
	return &boltCursor{c: b.b.Cursor(), prefix: prefix}
}

// boltCursor is a bbolt cursor limited to the keys under prefix.
type boltCursor struct {
	c      *bolt.Cursor
	prefix []byte
}

func (c *boltCursor) out(k, v []byte) ([]byte, []byte) {
	if k == nil || !bytes.HasPrefix(k, c.prefix) {
		return nil, nil
	}
	if v == nil {
		v = []byte{}
	}
	return k, v
}

func (c *boltCursor) First() ([]byte, []byte) { return c.out(c.c.Seek(c.prefix)) }

func (c *boltCursor) Seek(key []byte) ([]byte, []byte) {
	if bytes.Compare(key, c.prefix) < 0 {
		key = c.prefix
	}
	return c.out(c.c.Seek(key))
}

func (c *boltCursor) Next() ([]byte, []byte) { return c.out(c.c.Next()) }
