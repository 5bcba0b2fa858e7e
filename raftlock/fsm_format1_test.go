package raftlock

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
)

// TestFSMRestoreFormat1File: a snapshot written by the earlier release's
// state machine (format 1, testdata/fsm-format1.db) restores, and the
// commands applied after it (format1Continuation) give exactly the results,
// and lead to exactly the state, that the earlier release computed
// (testdata/fsm-format1.golden): the two releases decide alike, so either
// can replay a log after the other's snapshot. Also when the state machine
// flushes after every entry.
//
// Both files were made with the state machine of commit 6c05a41 (format
// 1, dedup window 16): two sessions, locks on t/a and t/b, 20 appends to
// t/a, t/b and t/c in batches (so both "recent" and "log" hold entries), a
// snapshot of t/a at 10 and a truncate through it, two more appends, the
// release of t/b, then the snapshot; the golden file is what this file's
// format1Continuation (the same code there) printed after it.
func TestFSMRestoreFormat1File(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/fsm-format1.db")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/fsm-format1.golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, flushKeys := range []int{defaultFlushKeys, 1} {
		t.Run(fmt.Sprintf("flushKeys=%d", flushKeys), func(t *testing.T) {
			f := newTestFSM(t)
			// The earlier release forgot by count alone.
			f.dedupWindow, f.dedupRetention, f.flushKeys = 16, 0, flushKeys
			if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			if got := format1Continuation(t, f); got != string(golden) {
				t.Fatalf("after restoring the format 1 snapshot:\n%s\nthe earlier release gave:\n%s", got, golden)
			}
			dedupResults(t, f)
		})
	}
}

// format1Continuation applies, after the format 1 snapshot, commands whose
// results depend on what the snapshot holds (the dedup window, the lock
// table, the journals), and returns them with the state they lead to.
func format1Continuation(t *testing.T, f *fsm) string {
	var b strings.Builder
	index := uint64(100)
	apply := func(at time.Time, id uint64, c command) {
		if id != 0 {
			c.id = cmdID{"driver", id}
		} else {
			c.id = cmdID{"next", index}
		}
		index++
		resp := f.ApplyBatch(testLogs(index, at, encodeCommand(c)))[0].(*applyResponse)
		if resp.err != nil {
			t.Fatal(resp.err)
		}
		fmt.Fprintf(&b, "%d %v %+v\n", index, c.op, resp.results[0])
	}
	at := t0.Add(10 * time.Second)
	app := func(actor string, tok, tail uint64) command {
		rec := journal.MarshalEntry(journal.Entry{Seq: tail + 1, Actor: actor, Token: tok, Payload: []byte(fmt.Sprintf("%s-%d", actor, tail+1))})
		return command{op: opAppend, key: actor, token: tok, seq: tail, records: [][]byte{rec}}
	}
	// Retries of commands at the edge of the window: forgotten ones run
	// (and append to t/z), remembered ones answer their result.
	for id := uint64(16); id <= 21; id++ {
		st, _ := f.actorState("t/z")
		apply(at, id, app("t/z", 1, st.Tail))
	}
	info, _, _ := f.holder("t/a", 0)
	apply(at, 0, command{op: opRenew, session: info.Session})
	apply(at, 0, app("t/a", info.Token, 22))
	apply(at, 0, app("t/a", info.Token-1, 23)) // a lower token: fenced
	apply(at, 0, command{op: opCreateSession, owner: "node-c", ttl: time.Minute})
	apply(at, 0, command{op: opAcquire, session: info.Session, key: "t/b"})
	apply(at, 0, app("t/b", 2, 3))
	apply(at, 0, command{op: opTruncate, key: "t/c", token: 1, seq: 5})
	apply(at.Add(2*time.Hour), 0, command{op: opReap})
	apply(at.Add(2*time.Hour), 0, app("t/c", 1, 12))
	for id := uint64(22); id <= 40; id++ {
		st, _ := f.actorState("t/y")
		apply(at.Add(2*time.Hour), id, app("t/y", 1, st.Tail))
	}
	b.WriteString(format1Dump(t, f))
	return b.String()
}

// format1Dump describes the state of f's actors, locks and counters.
func format1Dump(t *testing.T, f *fsm) string {
	var b strings.Builder
	applied, clock, _ := f.Progress()
	fmt.Fprintf(&b, "applied %d clock %d\n", applied, clock)
	for _, actor := range []string{"t/a", "t/b", "t/c", "t/y", "t/z"} {
		st, _ := f.actorState(actor)
		fmt.Fprintf(&b, "%s %+v\n", actor, st)
		es, _ := f.readEntries(actor, 0)
		for _, e := range es {
			fmt.Fprintf(&b, "  %d %d %s\n", e.Seq, e.Token, e.Payload)
		}
		if s, ok, _ := f.loadSnapshot(actor); ok {
			fmt.Fprintf(&b, "  snapshot %d %d %s\n", s.Seq, s.Token, s.Data)
		}
		if info, ok, _ := f.holder(actor, clock); ok {
			fmt.Fprintf(&b, "  held %+v\n", info)
		}
	}
	return b.String()
}
