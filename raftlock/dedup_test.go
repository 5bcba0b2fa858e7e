package raftlock

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
)

// appendCmd encodes an append of one entry with a fixed id, as a retry
// would resend it.
func appendCmd(id cmdID, actor string, token, expected uint64, payload string) []byte {
	e := journal.Entry{Seq: expected + 1, Actor: actor, Token: token, Payload: []byte(payload)}
	return encodeCommand(command{op: opAppend, id: id, key: actor, token: token, seq: expected,
		records: [][]byte{journal.MarshalEntry(e)}})
}

// TestDedupSameCommandTwice: a command applied a second time (a retry after
// an unknown outcome) takes effect once and returns the original result.
func TestDedupSameCommandTwice(t *testing.T) {
	t.Parallel()
	s := openSingle(t, t.TempDir(), "127.0.0.1:0", nil)
	defer s.Close()
	ctx := t.Context()

	// An append: the retry does not conflict with its own first run.
	cmd := appendCmd(cmdID{"retrier/1", 1}, "t/d", 1, 0, "once")
	for i := range 2 {
		res, err := s.execEncoded(ctx, opAppend, cmd)
		if err != nil || res.err() != nil || res.value != 1 {
			t.Fatalf("run %d: result %+v, %v; want tail 1", i+1, res, err)
		}
	}
	if es, err := s.Read(ctx, "t/d", 0); err != nil || len(es) != 1 {
		t.Fatalf("Read = %d entries, %v; want 1", len(es), err)
	}
	// The same bytes under another id are a new command: it conflicts.
	other := appendCmd(cmdID{"retrier/1", 2}, "t/d", 1, 0, "once")
	if res, err := s.execEncoded(ctx, opAppend, other); err != nil || !errors.Is(res.err(), journal.ErrConflict) {
		t.Fatalf("same append under a new id: %+v, %v; want ErrConflict", res, err)
	}

	// An acquire retried after the lock changed hands returns the
	// original grant, not the current state.
	a, _ := s.CreateSession(ctx, "node-a", time.Minute)
	b, _ := s.CreateSession(ctx, "node-b", time.Minute)
	acq := encodeCommand(command{op: opAcquire, id: cmdID{"retrier/1", 3}, session: a, key: "t/k"})
	first, err := s.execEncoded(ctx, opAcquire, acq)
	if err != nil || first.err() != nil {
		t.Fatalf("Acquire: %+v, %v", first, err)
	}
	if err := s.Release(ctx, a, "t/k"); err != nil {
		t.Fatal(err)
	}
	tb, err := s.Acquire(ctx, b, "t/k")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.execEncoded(ctx, opAcquire, acq)
	if err != nil || again != first {
		t.Fatalf("retried Acquire = %+v, %v; want the original %+v", again, err, first)
	}
	if info, ok, _ := s.Holder(ctx, "t/k"); !ok || info.Session != b || info.Token != tb {
		t.Fatalf("Holder after the retried Acquire = %+v, %v; want session %s token %d", info, ok, b, tb)
	}
	// Errors are remembered too.
	held := encodeCommand(command{op: opAcquire, id: cmdID{"retrier/1", 4}, session: a, key: "t/k"})
	r1, _ := s.execEncoded(ctx, opAcquire, held)
	if err := s.Release(ctx, b, "t/k"); err != nil {
		t.Fatal(err)
	}
	r2, _ := s.execEncoded(ctx, opAcquire, held)
	if !errors.Is(r1.err(), lock.ErrHeld) || r1 != r2 {
		t.Fatalf("retried failed Acquire = %+v then %+v; want the same ErrHeld", r1, r2)
	}
}

// TestDedupForwardedTwice: the leader answers a repeated forward request
// (a follower retrying after losing the answer) with the original results.
func TestDedupForwardedTwice(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	l := c.nodes[c.leader()]
	f := c.nodes[c.follower()]
	req := encodeForward([][]byte{
		appendCmd(cmdID{"follower/x", 1}, "t/fw", 1, 0, "a"),
		appendCmd(cmdID{"follower/x", 2}, "t/fw", 1, 1, "b"),
	})
	first, err := l.HandleForward(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.HandleForward(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, r1, err1 := decodeForwardResponse(first)
	i2, r2, err2 := decodeForwardResponse(second)
	if err1 != nil || err2 != nil || len(r1) != 2 || r1[0] != r2[0] || r1[1] != r2[1] || r1[1].value != 2 {
		t.Fatalf("responses %+v (%v) and %+v (%v); want equal, tails 1 and 2", r1, err1, r2, err2)
	}
	if err := f.fsm.WaitApplied(ctx, i2, nil); err != nil {
		t.Fatal(err)
	}
	wantReplica(t, f, "t/fw", []string{"a", "b"})
	// A follower is not the leader.
	if _, err := f.HandleForward(ctx, req); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("HandleForward on a follower: %v; want ErrNotLeader", err)
	}
	if _, err := l.HandleForward(ctx, []byte{9, 9}); err == nil {
		t.Fatal("HandleForward of garbage succeeded")
	}
}

// TestDedupWindow: with no retention, the state machine remembers the last
// dedup-window commands and forgets older ones, the same way on every
// replica.
func TestDedupWindow(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	f.dedupWindow, f.dedupRetention = 3, 0 // the count alone
	var idx uint64
	apply := func(cmds ...[]byte) []result {
		idx++
		resp := f.ApplyBatch(testLogs(idx, time.Unix(100, 0), cmds...))[0].(*applyResponse)
		if resp.err != nil {
			t.Fatal(resp.err)
		}
		return resp.results
	}
	cmds := make([][]byte, 5)
	for i := range cmds {
		cmds[i] = appendCmd(cmdID{"o", uint64(i + 1)}, "t/w", 1, uint64(i), "p")
	}
	for i, c := range cmds {
		if r := apply(c); r[0].code != codeOK || r[0].value != uint64(i+1) {
			t.Fatalf("command %d: %+v", i+1, r[0])
		}
	}
	// Commands 3..5 are remembered, 1 and 2 forgotten (so they run again
	// and conflict). Newest first: a replay that runs is remembered in
	// turn and pushes the oldest out.
	for i := len(cmds) - 1; i >= 0; i-- {
		r := apply(cmds[i])[0]
		remembered := i >= 2
		if remembered != (r.code == codeOK && r.value == uint64(i+1)) {
			t.Errorf("replay of command %d: %+v (remembered: %v)", i+1, r, remembered)
		}
	}
	if count := dedupResults(t, f); count != 3 {
		t.Fatalf("dedup table holds %d entries, want 3", count)
	}
	// Within one batch too: a command repeated in the same entry runs once.
	dup := appendCmd(cmdID{"o", 99}, "t/w", 1, 5, "q")
	rs := apply(dup, dup)
	if rs[0] != rs[1] || rs[0].value != 6 {
		t.Fatalf("same command twice in a batch: %+v", rs)
	}
	if !bytes.Equal(dup, appendCmd(cmdID{"o", 99}, "t/w", 1, 5, "q")) {
		t.Fatal("encoding is not deterministic")
	}
}

// TestDedupSweep: past the window the table grows by the slack, then is
// swept back to the window in one go.
func TestDedupSweep(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	f.dedupWindow, f.dedupRetention = 128, 0 // slack 2; the count alone
	d := &fsmDriver{t: t, f: f}
	count := func() int { return dedupResults(t, f) }
	for i := range 130 {
		d.one(t0, command{op: opCreateSession, owner: "o", ttl: time.Second})
		if got := count(); got != i+1 {
			t.Fatalf("after %d commands the table holds %d", i+1, got)
		}
	}
	d.one(t0, command{op: opCreateSession, owner: "o", ttl: time.Second})
	if got := count(); got != 128 {
		t.Fatalf("after the sweep the table holds %d, want 128", got)
	}
	// The oldest three (driver/1..3) are forgotten, driver/4 is not.
	for seq, remembered := range map[uint64]bool{3: false, 4: true} {
		raw := encodeCommand(command{op: opCreateSession, id: cmdID{"driver", seq}, owner: "o", ttl: time.Second})
		d.index++
		r := f.ApplyBatch(testLogs(d.index, t0, raw))[0].(*applyResponse).results[0]
		if want := fmt.Sprintf("s%d.", seq); remembered != strings.HasPrefix(r.text, want) {
			t.Errorf("retry of driver/%d created %q (remembered: %v)", seq, r.text, remembered)
		}
	}
}

// dedupResults counts the results in f's dedup table, checking that the
// in-memory index and the meta record agree with the chunks.
func dedupResults(t *testing.T, f *fsm) int {
	t.Helper()
	var n int
	if err := f.view(func(l *layers) error {
		m, err := unmarshalMeta(l.bucket(bMeta).Get(keyState))
		if err != nil {
			return err
		}
		err = l.bucket(bDedup).ForEach(func(k, v []byte) error {
			return dedup.ForEachRecord(v, func(dk []byte, _ int64, _ []byte, _ int) bool {
				if chunk, ok := f.dedupIndex[string(dk)]; !ok || !bytes.Equal(u64Key(chunk), k) {
					t.Errorf("dedup key %q of chunk %x is indexed under %d, %v", dk, k, chunk, ok)
				}
				n++
				return true
			})
		})
		if err == nil && (uint64(n) != m.dedup.Count || len(f.dedupIndex) != n) {
			t.Errorf("dedup table holds %d results, the meta counts %d, the index %d", n, m.dedup.Count, len(f.dedupIndex))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDedupRetention: a result is kept while it is among the last
// dedup-window commands OR younger than the retention (by the state
// machine's clock), so a retry within the retention is deduplicated
// however many commands came between; a retry that comes after its result
// was forgotten is answered "outcome unknown" and not applied, never run
// again (which would answer this append "conflict": not applied, about an
// append that was). A retry born after everything forgotten runs. The
// same with a state machine that flushes after every entry.
func TestDedupRetention(t *testing.T) {
	t.Parallel()
	const window, retention = 4, 10 * time.Second
	for _, tc := range []struct {
		name    string
		applied bool          // the first copy of the append was applied at t0
		others  int           // commands applied after t0, spread until the retry
		after   time.Duration // the retry comes at t0+after
		born    time.Duration // the append was created at t0+born
		want    string        // remembered, unknown or runs
	}{
		{"within both bounds", true, 2, time.Second, 0, "remembered"},
		{"past the count, within the retention", true, 50, 5 * time.Second, 0, "remembered"},
		{"past the retention, within the count", true, 2, time.Minute, 0, "remembered"},
		{"past both bounds", true, 50, time.Minute, 0, "unknown"},
		{"past both bounds, never applied", false, 50, time.Minute, 0, "unknown"},
		{"never applied, born after all that was forgotten", false, 50, time.Minute, time.Minute - time.Second, "runs"},
	} {
		for _, flushKeys := range []int{defaultFlushKeys, 1} {
			t.Run(fmt.Sprintf("%s/flushKeys=%d", tc.name, flushKeys), func(t *testing.T) {
				t.Parallel()
				f := newTestFSM(t)
				f.dedupWindow, f.dedupRetention, f.flushKeys = window, int64(retention), flushKeys
				d := &fsmDriver{t: t, f: f}
				x := encodeCommand(command{op: opAppend, id: cmdID{"caller", 1}, born: t0.Add(tc.born).UnixNano(), key: "t/x", token: 1,
					records: [][]byte{journal.MarshalEntry(journal.Entry{Seq: 1, Actor: "t/x", Token: 1, Payload: []byte("x")})}})
				if tc.applied {
					d.index++
					if r := f.ApplyBatch(testLogs(d.index, t0, x))[0].(*applyResponse).results[0]; r.err() != nil || r.value != 1 {
						t.Fatalf("first copy: %+v", r)
					}
				}
				for i := range tc.others {
					d.one(t0.Add(tc.after*time.Duration(i+1)/time.Duration(tc.others+1)), command{op: opCreateSession, owner: "o", ttl: time.Hour})
				}
				retry := bytes.Clone(x)
				markRetry(retry)
				d.index++
				r := f.ApplyBatch(testLogs(d.index, t0.Add(tc.after), retry))[0].(*applyResponse).results[0]
				var entries []string
				es, err := f.readEntries("t/x", 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					entries = append(entries, string(e.Payload))
				}
				switch tc.want {
				case "remembered", "runs":
					if r.err() != nil || r.value != 1 || len(entries) != 1 {
						t.Fatalf("retry = %+v (%v), entries %q; want tail 1, one entry", r, r.err(), entries)
					}
				case "unknown":
					if !errors.Is(r.err(), ErrUnknownOutcome) || errors.Is(r.err(), journal.ErrConflict) {
						t.Fatalf("retry = %+v (%v); want ErrUnknownOutcome", r, r.err())
					}
					if want := map[bool]int{true: 1, false: 0}[tc.applied]; len(entries) != want {
						t.Fatalf("entries after the refused retry: %q; want %d", entries, want)
					}
				}
				dedupResults(t, f)
			})
		}
	}
}
