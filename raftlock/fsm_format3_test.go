package raftlock

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// TestFSMRestoreFormat3File: a snapshot of the release before the message
// queues (format 3, testdata/fsm-format3.db) restores as format 4, with
// its journals and locks and with empty queues, and takes queue commands;
// a snapshot taken after them restores with the queues.
//
// The file was made with the state machine of commit 3218319: a session
// of "n1" (TTL 1h, at t0) holding counter/a with token 1, two invocations
// and an ack entry (IdempotencyKey "old-1", a plain entry then) appended
// to counter/a, one state op to counter/b, then the snapshot.
func TestFSMRestoreFormat3File(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/fsm-format3.db")
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if err := f.view(func(l *layers) error {
		_, err := unmarshalMeta(l.bucket(bMeta).Get(keyState))
		return err
	}); err != nil {
		t.Fatalf("meta after the migration: %v", err)
	}
	now := t0.Add(time.Minute)
	if due, tail := fsmQueueState(t, f, "counter/a", now); tail != 3 || len(due) != 0 {
		t.Fatalf("counter/a after the restore: tail %d, due %v; want 3 and none", tail, due)
	}
	if _, tail := fsmQueueState(t, f, "counter/b", now); tail != 1 {
		t.Fatalf("counter/b after the restore: tail %d, want 1", tail)
	}

	applied, _, _ := f.Progress()
	d := &fsmDriver{t: t, f: f, index: applied, seq: 1000} // ids the file's dedup table does not hold
	if r := d.one(now, enqueueCmd(queue.Message{ID: "m1", Actor: "counter/a", Method: "add", Ordered: true})); r.code != codeOK || r.value != 1 {
		t.Fatalf("enqueue after the restore: %+v", r)
	}
	if r := d.one(now, enqueueCmd(queue.Message{ID: "m2", Actor: "counter/b", Method: "add"})); r.code != codeOK {
		t.Fatalf("enqueue after the restore: %+v", r)
	}
	// The lock of the file still fences: token 1 holds counter/a.
	if r := d.one(now, entriesCmd("counter/a", 1, 3, journal.Entry{Kind: journal.KindInvocation}, ackEntry("m1"))); r.code != codeOK || r.value != 5 {
		t.Fatalf("append acknowledging m1: %+v", r)
	}
	// The ack entry of the file acknowledged no message.
	if err := callerErr(t, d.one(now, entriesCmd("counter/a", 1, 5, ackEntry("old-1")))); !errors.Is(err, journal.ErrAck) {
		t.Fatalf("ack of old-1: %v, want journal.ErrAck", err)
	}

	// A snapshot now carries the queues.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	for _, fs := range []*fsm{f, g} {
		if due, tail := fsmQueueState(t, fs, "counter/a", now); tail != 5 || len(due) != 0 {
			t.Fatalf("counter/a: tail %d, due %v; want 5 and none", tail, due)
		}
		if due, _ := fsmQueueState(t, fs, "counter/b", now); len(due) != 1 || due[0] != "m2" {
			t.Fatalf("counter/b: due %v, want m2", due)
		}
	}
}
