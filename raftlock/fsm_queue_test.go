package raftlock

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// enqueueCmd is the queue command that enqueues msg.
func enqueueCmd(msg queue.Message) command {
	return command{op: opQueue, qop: qEnqueue, records: [][]byte{queue.MarshalMessage(msg)}}
}

// entriesCmd is the append command of entries to actor after tail, stamped
// as Store.Append stamps them.
func entriesCmd(actor string, token, tail uint64, entries ...journal.Entry) command {
	recs := make([][]byte, len(entries))
	for i, e := range entries {
		e.Seq, e.Actor, e.Token = tail+uint64(i)+1, actor, token
		recs[i] = journal.MarshalEntry(e)
	}
	return command{op: opAppend, key: actor, token: token, seq: tail, records: recs}
}

func ackEntry(id string) journal.Entry {
	return journal.Entry{Kind: journal.KindMessageAck, IdempotencyKey: id}
}

func sendEntry(msg queue.Message) journal.Entry {
	return journal.Entry{Kind: journal.KindMessageSend, IdempotencyKey: msg.ID, Payload: queue.MarshalMessage(msg)}
}

// callerErr is the error a caller sees for r, after r went through the
// wire (a forward response, or the dedup table).
func callerErr(t *testing.T, r result) error {
	t.Helper()
	back, err := decodeResult(encodeResult(r))
	if err != nil {
		t.Fatal(err)
	}
	return back.err()
}

// fsmQueueState reads the queue machine of f: actor's due messages at
// now and its journal tail.
func fsmQueueState(t *testing.T, f *fsm, actor string, now time.Time) (due []string, tail uint64) {
	t.Helper()
	err := f.view(func(l *layers) error {
		msgs, err := queuesm.New(l.queueBuckets(), queuesm.Config{}).Due(actor, now.UnixNano(), 100)
		for _, m := range msgs {
			due = append(due, m.ID)
		}
		if err != nil {
			return err
		}
		st, err := journalsm.New(l.journalBuckets(), nil).State(actor)
		tail = st.Tail
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return due, tail
}

// TestFSMAppendQueueRules: an append's message entries are judged after
// the journal's rules and before anything is written; a refusal wraps the
// journal's sentinel and the queue's, also after the wire.
func TestFSMAppendQueueRules(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	d := &fsmDriver{t: t, f: f}
	now := t0
	const a = "c/1"
	for _, m := range []queue.Message{
		{ID: "o1", Actor: a, Method: "m", Ordered: true},
		{ID: "o2", Actor: a, Method: "m", Ordered: true},
	} {
		if r := d.one(now, enqueueCmd(m)); r.code != codeOK {
			t.Fatalf("enqueue %s: %+v", m.ID, r)
		}
	}
	// Token 5 writes the journal: lower tokens are fenced from now on.
	if r := d.one(now, entriesCmd(a, 5, 0, journal.Entry{Kind: journal.KindInvocation})); r.code != codeOK || r.value != 1 {
		t.Fatalf("first append: %+v", r)
	}
	bad := journal.Entry{Kind: journal.KindMessageSend, IdempotencyKey: "x", Payload: []byte("not a message")}
	for _, tc := range []struct {
		name  string
		cmd   command
		wants []error
	}{
		{"fenced, with a bad outbox entry", entriesCmd(a, 1, 1, bad), []error{journal.ErrFenced}},
		{"fenced, with a bad ack", entriesCmd(a, 1, 1, ackEntry("nope")), []error{journal.ErrFenced}},
		{"conflict, with a bad ack", entriesCmd(a, 5, 0, ackEntry("nope")), []error{journal.ErrConflict}},
		{"bad outbox entry", entriesCmd(a, 5, 1, bad), []error{journal.ErrInvalid, queue.ErrInvalid}},
		{"outbox id mismatch", entriesCmd(a, 5, 1, journal.Entry{Kind: journal.KindMessageSend, IdempotencyKey: "y",
			Payload: queue.MarshalMessage(queue.Message{ID: "z", Actor: "c/2", Method: "m"})}), []error{journal.ErrInvalid, queue.ErrInvalid}},
		{"ack of an unknown id", entriesCmd(a, 5, 1, ackEntry("nope")), []error{journal.ErrAck, queue.ErrNotFound}},
		{"ack behind the head", entriesCmd(a, 5, 1, ackEntry("o2")), []error{journal.ErrAck, queue.ErrNotHead}},
		{"a good send with a bad ack", entriesCmd(a, 5, 1, sendEntry(queue.Message{ID: "s", Actor: "c/2", Method: "m"}), ackEntry("o2")),
			[]error{journal.ErrAck, queue.ErrNotHead}},
	} {
		r := d.one(now, tc.cmd)
		err := callerErr(t, r)
		for _, want := range tc.wants {
			if !errors.Is(err, want) {
				t.Errorf("%s: %v (code %d), want it to match %v", tc.name, err, r.code, want)
			}
		}
		if due, tail := fsmQueueState(t, f, a, now); tail != 1 || len(due) != 1 || due[0] != "o1" {
			t.Fatalf("%s changed the state: tail %d, due %v", tc.name, tail, due)
		}
	}
	if due, _ := fsmQueueState(t, f, "c/2", now); len(due) != 0 {
		t.Fatalf("a refused append's send was enqueued: %v", due)
	}

	// Acks in order, with a send: one command, all of it.
	r := d.one(now, entriesCmd(a, 5, 1, journal.Entry{Kind: journal.KindInvocation}, ackEntry("o1"), ackEntry("o2"),
		sendEntry(queue.Message{ID: "s", Actor: "c/2", Method: "m"})))
	if r.code != codeOK || r.value != 5 {
		t.Fatalf("append with acks and a send: %+v", r)
	}
	if due, tail := fsmQueueState(t, f, a, now); tail != 5 || len(due) != 0 {
		t.Fatalf("after the acks: tail %d, due %v", tail, due)
	}
	if due, _ := fsmQueueState(t, f, "c/2", now); len(due) != 1 || due[0] != "s" {
		t.Fatalf("after the send: due %v", due)
	}
	r = d.one(now, entriesCmd(a, 5, 5, ackEntry("o1")))
	if err := callerErr(t, r); !errors.Is(err, journal.ErrAck) || !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("second ack: %v", err)
	}
}

// TestFSMQueueRulesByWireVersion: a batch written before the queues
// (wire version 2) is applied as that release applied it: an append with
// an ack of an unknown message is the journal's alone, and a queue command
// is an unknown op. The same commands in a batch of this release obey the
// queue rules.
func TestFSMQueueRulesByWireVersion(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	v2 := replica.Wire{Version: 2, MinVersion: 1, Malformed: errBadWire}
	index := uint64(0)
	apply := func(w replica.Wire, cs ...command) []result {
		t.Helper()
		raw := make([][]byte, len(cs))
		for i, c := range cs {
			index++
			c.id = cmdID{"driver", index}
			raw[i] = encodeCommand(c)
		}
		resp := f.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: w.EncodeBatch(t0, raw)}})[0].(*applyResponse)
		if resp.err != nil {
			t.Fatal(resp.err)
		}
		return resp.results
	}
	enq := enqueueCmd(queue.Message{ID: "m", Actor: "c/1", Method: "m"})
	rs := apply(v2, entriesCmd("c/1", 1, 0, ackEntry("nope")), enq)
	if rs[0].code != codeOK || rs[0].value != 1 {
		t.Fatalf("version 2 append with an ack: %+v, want the journal's tail 1", rs[0])
	}
	if rs[1].code != codeBadCommand {
		t.Fatalf("version 2 queue command: %+v, want codeBadCommand", rs[1])
	}
	rs = apply(wire, entriesCmd("c/1", 1, 1, ackEntry("nope")), enq)
	if err := callerErr(t, rs[0]); !errors.Is(err, journal.ErrAck) {
		t.Fatalf("version %d append with an ack of an unknown message: %v, want journal.ErrAck", wireVersion, err)
	}
	if rs[1].code != codeOK {
		t.Fatalf("version %d enqueue: %+v", wireVersion, rs[1])
	}
}

// TestFSMNotifyOncePerActor: a batch announces each actor it gave
// something to deliver once, with its wake after the batch, after the
// batch is applied; a refused command and an ack that leaves nothing due
// announce nothing.
func TestFSMNotifyOncePerActor(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	type note struct {
		actor string
		at    time.Time
	}
	var notes []note
	fn := func(actor string, at time.Time) {
		if !f.mu.TryLock() {
			t.Errorf("notified %s while the state machine's lock is held", actor)
		} else {
			f.mu.Unlock()
		}
		notes = append(notes, note{actor, at})
	}
	Queues{&Store{fsm: f}}.Notify(fn)
	d := &fsmDriver{t: t, f: f}
	soon := t0.Add(time.Minute)
	d.apply(t0,
		enqueueCmd(queue.Message{ID: "b1", Actor: "c/b", Method: "m", DeliverAt: soon}),
		enqueueCmd(queue.Message{ID: "a1", Actor: "c/a", Method: "m"}),
		enqueueCmd(queue.Message{ID: "a2", Actor: "c/a", Method: "m"}),
		enqueueCmd(queue.Message{ID: "b2", Actor: "c/b", Method: "m"}),
		enqueueCmd(queue.Message{ID: "a2", Actor: "c/a", Method: "m"}), // a duplicate
		entriesCmd("c/c", 1, 0, ackEntry("nope")),                      // refused
	)
	want := []note{{"c/b", t0}, {"c/a", t0}}
	if fmt.Sprint(notes) != fmt.Sprint(want) {
		t.Fatalf("notified %v, want %v", notes, want)
	}
	notes = nil
	d.apply(t0, entriesCmd("c/a", 1, 0, ackEntry("a1"), ackEntry("a2")))
	if len(notes) != 0 {
		t.Fatalf("an ack that leaves nothing due notified %v", notes)
	}
}
