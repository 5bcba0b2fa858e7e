package raftlock

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// newTestFSM opens a bare state machine, without Raft.
func newTestFSM(t *testing.T) *fsm {
	t.Helper()
	f, err := openFSM(filepath.Join(t.TempDir(), "fsm.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// testLogs returns one Raft command entry at index carrying cmds stamped
// with stamp.
func testLogs(index uint64, stamp time.Time, cmds ...[]byte) []*raft.Log {
	return []*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeBatch(stamp, cmds)}}
}

// fsmDriver applies commands to a bare fsm, one entry per call.
type fsmDriver struct {
	t     *testing.T
	f     *fsm
	index uint64
	seq   uint64
}

func (d *fsmDriver) apply(stamp time.Time, cs ...command) []result {
	d.t.Helper()
	raw := make([][]byte, len(cs))
	for i, c := range cs {
		d.seq++
		c.id = cmdID{"driver", d.seq}
		raw[i] = encodeCommand(c)
	}
	d.index++
	resp := d.f.ApplyBatch(testLogs(d.index, stamp, raw...))[0].(*applyResponse)
	if resp.err != nil {
		d.t.Fatal(resp.err)
	}
	return resp.results
}

func (d *fsmDriver) one(stamp time.Time, c command) result { return d.apply(stamp, c)[0] }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFSMSessionsAndLocks(t *testing.T) {
	t.Parallel()
	d := &fsmDriver{t: t, f: newTestFSM(t)}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	a := lock.SessionID(d.one(at(0), command{op: opCreateSession, owner: "a", ttl: 10 * time.Second}).text)
	b := lock.SessionID(d.one(at(0), command{op: opCreateSession, owner: "b", ttl: 10 * time.Second}).text)
	if a == "" || a == b {
		t.Fatalf("session ids %q, %q", a, b)
	}
	// Two grants in one batch (one Raft index) still get distinct,
	// increasing tokens.
	rs := d.apply(at(1), command{op: opAcquire, session: a, key: "k1"}, command{op: opAcquire, session: a, key: "k2"})
	if rs[0].value == 0 || rs[1].value <= rs[0].value {
		t.Fatalf("tokens in one batch: %+v", rs)
	}
	if r := d.one(at(2), command{op: opAcquire, session: b, key: "k1"}); !errors.Is(r.err(), lock.ErrHeld) || r.owner != "a" || r.value != rs[0].value {
		t.Fatalf("Acquire of a held lock: %+v", r)
	}
	// The deadline is exclusive: at exactly the deadline the session is
	// still alive, a nanosecond later it has lapsed.
	if r := d.one(at(10), command{op: opRenew, session: a}); r.err() != nil {
		t.Fatalf("Renew at the deadline: %v", r.err())
	}
	if r := d.one(at(20).Add(time.Nanosecond), command{op: opAcquire, session: b, key: "k1"}); r.err() == nil {
		t.Fatalf("b acquired k1, but b's session lapsed at 10s")
	}
	if r := d.one(at(20).Add(time.Nanosecond), command{op: opRenew, session: a}); !errors.Is(r.err(), lock.ErrSessionExpired) {
		t.Fatalf("Renew after the deadline: %v", r.err())
	}
	// The clock never goes back: a stamp behind the state machine's clock
	// does not revive anything.
	c := lock.SessionID(d.one(at(5), command{op: opCreateSession, owner: "c", ttl: time.Second}).text)
	if r := d.one(at(5), command{op: opAcquire, session: c, key: "k1"}); r.err() != nil {
		t.Fatalf("Acquire by a session created with a stale stamp: %v", r.err())
	}
	if _, clock, _ := d.f.Progress(); clock != at(20).Add(time.Nanosecond).UnixNano() {
		t.Fatalf("clock = %v", time.Unix(0, clock))
	}
}

func TestFSMLeaderStart(t *testing.T) {
	t.Parallel()
	d := &fsmDriver{t: t, f: newTestFSM(t)}
	alive := lock.SessionID(d.one(t0, command{op: opCreateSession, owner: "a", ttl: 10 * time.Second}).text)
	lapsed := lock.SessionID(d.one(t0, command{op: opCreateSession, owner: "b", ttl: time.Second}).text)
	d.one(t0.Add(2*time.Second), command{op: opNoop}) // the old leader's last stamp
	// The new leader's clock is a minute ahead.
	d.one(t0.Add(time.Minute), command{op: opLeaderStart})
	if r := d.one(t0.Add(time.Minute+5*time.Second), command{op: opRenew, session: alive}); r.err() != nil {
		t.Fatalf("Renew 5s after the new leader started: %v", r.err())
	}
	if r := d.one(t0.Add(time.Minute+5*time.Second), command{op: opRenew, session: lapsed}); !errors.Is(r.err(), lock.ErrSessionExpired) {
		t.Fatalf("Renew of a session lapsed before the leader change: %v", r.err())
	}
}

func TestFSMReap(t *testing.T) {
	t.Parallel()
	d := &fsmDriver{t: t, f: newTestFSM(t)}
	var ids []lock.SessionID
	for i := range 3 {
		id := lock.SessionID(d.one(t0, command{op: opCreateSession, owner: "o", ttl: time.Duration(i+1) * time.Second}).text)
		d.one(t0, command{op: opAcquire, session: id, key: string(id) + "/k"})
		ids = append(ids, id)
	}
	if lapsed, _ := d.f.hasLapsed(t0.Add(1500 * time.Millisecond).UnixNano()); !lapsed {
		t.Fatal("hasLapsed = false at 1.5s")
	}
	d.one(t0.Add(2500*time.Millisecond), command{op: opReap})
	for i, id := range ids {
		_, ok, err := d.f.holder(string(id)+"/k", t0.UnixNano())
		if err != nil || ok != (i == 2) {
			t.Errorf("after reap at 2.5s, lock of session %d (ttl %ds) held = %v, %v", i, i+1, ok, err)
		}
	}
	if lapsed, _ := d.f.hasLapsed(t0.Add(2500 * time.Millisecond).UnixNano()); lapsed {
		t.Fatal("hasLapsed = true after reap")
	}
}

// TestFSMSnapshotRestore: a snapshot is the whole state; restoring it into
// another state machine reproduces every answer.
func TestFSMSnapshotRestore(t *testing.T) {
	t.Parallel()
	d := &fsmDriver{t: t, f: newTestFSM(t)}
	s := lock.SessionID(d.one(t0, command{op: opCreateSession, owner: "a", ttl: time.Minute}).text)
	tok := d.one(t0, command{op: opAcquire, session: s, key: "t/a"}).value
	for i := range 3 {
		e := journal.Entry{Seq: uint64(i + 1), Actor: "t/a", Token: tok, Payload: []byte{byte(i)}}
		d.one(t0, command{op: opAppend, key: "t/a", token: tok, seq: uint64(i), records: [][]byte{journal.MarshalEntry(e)}})
	}
	d.one(t0, command{op: opSaveSnapshot, key: "t/a", token: tok, seq: 2,
		records: [][]byte{journal.MarshalSnapshot(journal.Snapshot{Seq: 2, Token: tok, Data: []byte("s")})}})

	snap, err := d.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot are not in it.
	d.one(t0, command{op: opTruncate, key: "t/a", token: tok, seq: 2})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	applied, clock, _ := g.Progress()
	if applied != 6 || clock != t0.UnixNano() {
		t.Fatalf("restored progress: applied %d clock %v; want 6, %v", applied, time.Unix(0, clock), t0)
	}
	es, err := g.readEntries("t/a", 0)
	if err != nil || len(es) != 3 {
		t.Fatalf("restored entries: %d, %v; want 3 (the truncate came after the snapshot)", len(es), err)
	}
	if st, _ := g.actorState("t/a"); st.Tail != 3 || st.Token != tok || st.SnapshotSeq != 2 {
		t.Fatalf("restored actor state %+v", st)
	}
	if info, ok, _ := g.holder("t/a", t0.UnixNano()); !ok || info.Session != s || info.Token != tok || info.Owner != "a" {
		t.Fatalf("restored holder %+v, %v", info, ok)
	}
	// The dedup table came along: a retry of the first command (driver/1)
	// returns its original result.
	d0 := &fsmDriver{t: t, f: g, index: applied}
	if r := d0.one(t0, command{op: opCreateSession, owner: "a", ttl: time.Minute}); lock.SessionID(r.text) != s {
		t.Fatalf("retry of CreateSession after restore created %q; want the original %s", r.text, s)
	}
	// It continues from the restored counters: the next token is higher.
	d2 := &fsmDriver{t: t, f: g, index: d0.index, seq: d.seq}
	s2 := lock.SessionID(d2.one(t0, command{op: opCreateSession, owner: "b", ttl: time.Minute}).text)
	if s2 == s {
		t.Fatalf("restored state machine reused session id %s", s)
	}
	if tok2 := d2.one(t0, command{op: opAcquire, session: s2, key: "t/b"}).value; tok2 <= tok {
		t.Fatalf("token after restore %d, want > %d", tok2, tok)
	}
	// Garbage is refused and leaves the state as it was.
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("not a bbolt file")))); err == nil {
		t.Fatal("Restore of garbage succeeded")
	}
	if es, err := g.readEntries("t/a", 0); err != nil || len(es) != 3 {
		t.Fatalf("after a failed restore: %d entries, %v", len(es), err)
	}
}

// TestFSMBadBatch: an entry that does not decode is answered the same way
// on every replica and changes nothing but the applied index.
func TestFSMBadBatch(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	resps := f.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: []byte{0xff}},
		{Index: 2, Type: raft.LogConfiguration},
		{Index: 3, Type: raft.LogCommand, Data: encodeBatch(t0, [][]byte{{0xee}})},
	})
	if r := resps[0].(*applyResponse); r.err == nil {
		t.Fatal("undecodable batch: no error")
	}
	if resps[1] != nil {
		t.Fatalf("configuration entry response %v", resps[1])
	}
	if r := resps[2].(*applyResponse); r.err != nil || r.results[0].code != codeBadCommand {
		t.Fatalf("undecodable command: %+v", r)
	}
	if applied, _, _ := f.Progress(); applied != 3 {
		t.Fatalf("applied = %d, want 3", applied)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }
