package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/queue"
)

func msg(id, actor string) queue.Message {
	return queue.Message{ID: id, Actor: actor, Method: "Do", Payload: []byte(id)}
}

func enqueueOK(t *testing.T, f *FileJournal, m queue.Message) {
	t.Helper()
	if _, err := f.Enqueue(t.Context(), m); err != nil {
		t.Fatalf("Enqueue(%s): %v", m.ID, err)
	}
}

func ack(id string) Entry { return Entry{Kind: KindMessageAck, IdempotencyKey: id} }

func dueIDs(t *testing.T, f *FileJournal, actor string) []string {
	t.Helper()
	msgs, err := f.Due(t.Context(), actor, time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatalf("Due(%s): %v", actor, err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// TestGroupCommitQueueRejects queues appends with acks and sends, and queue
// writes, behind a blocked commit: they are applied in one transaction, in
// queue order, each seeing the queue writes of the earlier ones, and the
// ones the queue rules reject fail alone, writing nothing, while the others
// in the batch commit.
func TestGroupCommitQueueRejects(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	ctx := context.Background()
	// The setup's commits pass the gate: the hook is off while they run.
	// (The committer reads it after taking each request, under mu.)
	hook := g.testHookBatch
	g.testHookBatch = nil
	enqueueOK(t, g.FileJournal, msg("m1", "a"))
	enqueueOK(t, g.FileJournal, msg("m2", "b"))
	g.testHookBatch = hook
	gate := g.block(t)
	commitsBefore := g.commits.Load()

	ackA := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 1, 0, []Entry{{Kind: KindInvocation}, ack("m1")}) })
	ackAgain := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 1, 2, []Entry{ack("m1")}) }) // m1 left with ackA
	ackWrongActor := g.start(t, func() (uint64, error) { return g.Append(ctx, "c", 1, 0, []Entry{ack("m2")}) })
	badSend := g.start(t, func() (uint64, error) {
		return g.Append(ctx, "c", 1, 0, []Entry{{Kind: KindMessageSend, IdempotencyKey: "x", Payload: []byte("not a message")}})
	})
	plain := g.start(t, func() (uint64, error) { return g.Append(ctx, "c", 1, 0, one()) })
	enq := g.start(t, func() (uint64, error) {
		_, err := g.Enqueue(ctx, msg("m3", "b"))
		return 0, err
	})
	ackB := g.start(t, func() (uint64, error) { return g.Append(ctx, "b", 1, 0, []Entry{ack("m2"), ack("m3")}) }) // needs enq
	staleRetry := g.start(t, func() (uint64, error) {
		return 0, g.Retry(ctx, queue.Failure{Actor: "b", ID: "m2", Attempts: 0, Reason: "r"}) // m2 left with ackB
	})
	g.release()

	for _, c := range []struct {
		name     string
		ch       <-chan result
		wantTail uint64
		wantErrs []error
	}{
		{"gate", gate, 1, nil},
		{"ack m1", ackA, 2, nil},
		{"ack m1 again", ackAgain, 0, []error{ErrAck, queue.ErrNotFound}},
		{"ack of another actor's message", ackWrongActor, 0, []error{ErrAck, queue.ErrNotFound}},
		{"send of a bad message", badSend, 0, []error{ErrInvalid, queue.ErrInvalid}},
		{"plain append", plain, 1, nil},
		{"enqueue m3", enq, 0, nil},
		{"ack m2 and m3", ackB, 2, nil},
		{"retry of an acknowledged message", staleRetry, 0, []error{queue.ErrNotFound}},
	} {
		r := <-c.ch
		ok := r.tail == c.wantTail && (r.err == nil) == (len(c.wantErrs) == 0)
		for _, want := range c.wantErrs {
			ok = ok && errors.Is(r.err, want)
		}
		if !ok {
			t.Errorf("%s: tail %d err %v, want tail %d err wrapping %v", c.name, r.tail, r.err, c.wantTail, c.wantErrs)
		}
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 8}) {
		t.Errorf("batch sizes %v, want [1 8]", sizes)
	}
	if n := g.commits.Load() - commitsBefore; n != 2 {
		t.Errorf("the gate and the queued requests took %d commits, want 2", n)
	}
	for actor, want := range map[string]Tail{"a": {Seq: 2, Token: 1}, "b": {Seq: 2, Token: 1}, "c": {Seq: 1, Token: 1}} {
		if tl, err := g.Tail(ctx, actor); err != nil || tl != want {
			t.Errorf("Tail(%s) = %+v, %v; want %+v", actor, tl, err, want)
		}
	}
	for _, actor := range []string{"a", "b", "c"} {
		if ids := dueIDs(t, g.FileJournal, actor); len(ids) != 0 {
			t.Errorf("Due(%s) = %v, want nothing pending", actor, ids)
		}
	}
	if _, err := g.Enqueue(ctx, msg("x", "c")); err != nil {
		t.Fatal(err)
	}
	if ids := dueIDs(t, g.FileJournal, "c"); !slices.Equal(ids, []string{"x"}) {
		t.Errorf("Due(c) = %v: the rejected send must not have enqueued x", ids)
	}
}

// TestFileRejectedBatchNotCommitted: a batch whose every request is
// rejected writes nothing, so it is not committed (no fsync); Release with
// nothing due does not even queue a request.
func TestFileRejectedBatchNotCommitted(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "j.db"), DefaultFileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := t.Context()
	enqueueOK(t, f, msg("m1", "a"))
	before := f.commits.Load()
	if _, err := f.Append(ctx, "a", 1, 0, []Entry{ack("nope")}); !errors.Is(err, ErrAck) {
		t.Fatalf("ack of an unknown message: %v, want ErrAck", err)
	}
	if err := f.Retry(ctx, queue.Failure{Actor: "a", ID: "m1", Attempts: 3}); !errors.Is(err, queue.ErrStale) {
		t.Fatalf("stale retry: %v, want ErrStale", err)
	}
	if n, err := f.Release(ctx, "a", time.Now().Add(time.Hour)); n != 0 || err != nil {
		t.Fatalf("Release with nothing scheduled = %d, %v", n, err)
	}
	if _, err := f.Release(ctx, "", time.Now()); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("Release of an empty actor key: %v, want ErrInvalid", err)
	}
	if n := f.commits.Load() - before; n != 0 {
		t.Fatalf("rejected writes and an empty Release made %d commits, want 0", n)
	}
}

// TestFileNotifyAfterCommit: the notifications of a batch go out after its
// commit and before its writers are answered (an answered writer's next
// request may reach the committer), one per actor the batch gave
// something, at the earliest instant it gave; a rejected request notifies
// nothing.
func TestFileNotifyAfterCommit(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	ctx := t.Context()
	type note struct {
		actor   string
		at      time.Time
		commits uint64 // f.commits when it was announced
		seen    int64  // how many writers had been answered then
	}
	var mu sync.Mutex
	var notes []note
	var answered atomic.Int64
	g.Notify(func(actor string, at time.Time) {
		mu.Lock()
		notes = append(notes, note{actor, at, g.commits.Load(), answered.Load()})
		mu.Unlock()
	})
	gate := g.block(t)
	later := time.Now().Add(2 * time.Hour)
	enq := func(id, actor string, at time.Time) <-chan result {
		return g.start(t, func() (uint64, error) {
			m := msg(id, actor)
			m.DeliverAt = at
			acc, err := g.Enqueue(ctx, m)
			answered.Add(1)
			return uint64(acc.AcceptedAt.UnixNano()), err
		})
	}
	b1 := enq("b1", "b", later)
	b2 := enq("b2", "b", time.Time{})
	b3 := enq("b3", "b", time.Time{})
	c1 := enq("c1", "c", later)
	missing := g.start(t, func() (uint64, error) {
		return 0, g.Retry(ctx, queue.Failure{Actor: "d", ID: "nope", Reason: "r", RetryAt: later})
	})
	before := g.commits.Load() + 1 // after the gate's own batch, committed alone
	g.release()
	<-gate
	accepted := map[string]time.Time{}
	for id, ch := range map[string]<-chan result{"b1": b1, "b2": b2, "b3": b3, "c1": c1} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("Enqueue(%s): %v", id, r.err)
		}
		accepted[id] = time.Unix(0, int64(r.tail)).UTC()
	}
	if r := <-missing; !errors.Is(r.err, queue.ErrNotFound) {
		t.Fatalf("Retry of an unknown message: %v, want ErrNotFound", r.err)
	}
	// The writers are answered: their batch's notifications went out first.
	mu.Lock()
	defer mu.Unlock()
	want := []note{{"b", accepted["b2"], before + 1, 0}, {"c", later.UTC(), before + 1, 0}}
	if len(notes) != 2 || notes[0].actor != want[0].actor || !notes[0].at.Equal(want[0].at) ||
		notes[1].actor != want[1].actor || !notes[1].at.Equal(want[1].at) {
		t.Fatalf("notifications %v, want %v", notes, want)
	}
	for _, n := range notes {
		if n.commits != before+1 || n.seen != 0 {
			t.Fatalf("%s announced at commit count %d with %d writers answered, want %d and 0 (after its batch's commit, before its answers)", n.actor, n.commits, n.seen, before+1)
		}
	}
}

// TestFileOpensFileWithoutQueues: a file written by the release before the
// message queues (testdata/prequeue.db, made by that release's OpenFile,
// Append and SaveSnapshot: 12 entries and a snapshot at 10 for counter/a,
// one entry for counter/b) opens without a repair, keeps its entries, and
// gets the queues' buckets; opening it again, clean, writes nothing.
func TestFileOpensFileWithoutQueues(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "prequeue.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "j.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range queuesm.BucketNames {
			if tx.Bucket([]byte(name)) != nil {
				return fmt.Errorf("the fixture has bucket %s already", name)
			}
		}
		return nil
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}

	f, err := OpenFile(path, DefaultFileOptions())
	if err != nil {
		t.Fatalf("open a file without the queues' buckets: %v", err)
	}
	if rec := f.Recovered(); len(rec) != 0 {
		t.Errorf("Recovered = %v, want nothing", rec)
	}
	for actor, want := range map[string]Tail{"counter/a": {Seq: 12, Token: 3}, "counter/b": {Seq: 1, Token: 1}} {
		if tl, err := f.Tail(ctx, actor); err != nil || tl != want {
			t.Errorf("Tail(%s) = %+v, %v; want %+v", actor, tl, err, want)
		}
	}
	if es, err := f.Read(ctx, "counter/a", 0); err != nil || len(es) != 12 || string(es[11].Payload) != "12" {
		t.Errorf("Read(counter/a) = %d entries, %v; want the 12 written", len(es), err)
	}
	if snap, ok, err := f.LoadSnapshot(ctx, "counter/a"); err != nil || !ok || snap.Seq != 10 || string(snap.Data) != "sum=55" {
		t.Errorf("LoadSnapshot(counter/a) = %+v, %v, %v", snap, ok, err)
	}
	if st, err := f.Stats(ctx); err != nil || len(st) != 0 {
		t.Errorf("Stats = %v, %v; want empty queues", st, err)
	}
	enqueueOK(t, f, msg("m1", "counter/b"))
	if _, err := f.Append(ctx, "counter/b", 1, 1, []Entry{ack("m1")}); err != nil {
		t.Errorf("ack after the upgrade: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// A clean open, with the queues' buckets there, commits nothing.
	txid := func() int {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		return tx.ID()
	}
	before := txid()
	if f, err = OpenFile(path, DefaultFileOptions()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if after := txid(); after != before {
		t.Errorf("opening a clean file committed %d transactions", after-before)
	}
}
