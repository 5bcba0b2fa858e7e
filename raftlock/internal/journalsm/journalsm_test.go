package journalsm_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
)

// locks is the lock fence as a table: the token of the lock held on a key,
// and the clock each question was asked at.
type locks struct {
	held  map[string]uint64
	asked []int64
}

func (l *locks) HeldToken(now int64, key string) (uint64, bool, error) {
	l.asked = append(l.asked, now)
	token, ok := l.held[key]
	return token, ok, nil
}

type world struct {
	t     *testing.T
	mem   *kv.Mem
	locks *locks
	m     *journalsm.Machine
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, mem: kv.NewMem(), locks: &locks{held: map[string]uint64{}}}
	w.m = journalsm.New(journalsm.Buckets{Actors: w.mem.Bucket("actors"), Log: w.mem.Bucket("log"),
		Snapshots: w.mem.Bucket("snapshots")}, w.locks)
	return w
}

const now = 1_000

// records returns n entry records for actor after seq, written with token.
func records(actor string, token, after uint64, n int) [][]byte {
	var recs [][]byte
	for i := range n {
		seq := after + uint64(i) + 1
		recs = append(recs, journal.MarshalEntry(journal.Entry{Seq: seq, Actor: actor, Token: token, Payload: []byte(fmt.Sprint(seq))}))
	}
	return recs
}

func (w *world) append(actor string, token, after uint64, n int) (uint64, error) {
	w.t.Helper()
	tail, rule, err := w.m.Append(now, actor, token, after, records(actor, token, after, n))
	if err != nil {
		w.t.Fatal(err)
	}
	return tail, rule
}

func (w *world) mustAppend(actor string, token, after uint64, n int) {
	w.t.Helper()
	if _, rule := w.append(actor, token, after, n); rule != nil {
		w.t.Fatalf("Append: %v", rule)
	}
}

func (w *world) snapshot(actor string, token, seq uint64) error {
	w.t.Helper()
	rule, err := w.m.SaveSnapshot(now, actor, token, seq, journal.MarshalSnapshot(journal.Snapshot{Seq: seq, Token: token, Data: []byte("s")}))
	if err != nil {
		w.t.Fatal(err)
	}
	return rule
}

func (w *world) truncate(actor string, token, through uint64) error {
	w.t.Helper()
	rule, err := w.m.Truncate(now, actor, token, through)
	if err != nil {
		w.t.Fatal(err)
	}
	return rule
}

// TestRules: each case runs commands and checks the value and the rule
// violation of the last one; a violation must leave the records as they
// were.
func TestRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(w *world) (uint64, error)
		want uint64
		rule error
	}{
		{"first append", func(w *world) (uint64, error) { return w.append("a", 1, 0, 3) }, 3, nil},
		{"append at the tail", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 3)
			return w.append("a", 1, 3, 2)
		}, 5, nil},
		{"append behind the tail", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 3)
			return w.append("a", 1, 2, 1)
		}, 0, journal.ErrConflict},
		{"append past the tail", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 3)
			return w.append("a", 1, 4, 1)
		}, 0, journal.ErrConflict},
		{"a lower token than the journal's is fenced", func(w *world) (uint64, error) {
			w.mustAppend("a", 5, 0, 1)
			return w.append("a", 4, 1, 1)
		}, 0, journal.ErrFenced},
		{"fenced before conflict", func(w *world) (uint64, error) {
			w.mustAppend("a", 5, 0, 1)
			return w.append("a", 4, 7, 1)
		}, 0, journal.ErrFenced},
		{"a higher token takes over", func(w *world) (uint64, error) {
			w.mustAppend("a", 5, 0, 1)
			return w.append("a", 6, 1, 1)
		}, 2, nil},
		{"a lower token than the held lock's is fenced before it writes", func(w *world) (uint64, error) {
			w.locks.held["a"] = 7
			return w.append("a", 6, 0, 1)
		}, 0, journal.ErrFenced},
		{"the held lock's token writes", func(w *world) (uint64, error) {
			w.locks.held["a"] = 7
			return w.append("a", 7, 0, 1)
		}, 1, nil},
		{"another key's lock does not fence", func(w *world) (uint64, error) {
			w.locks.held["b"] = 7
			return w.append("a", 6, 0, 1)
		}, 1, nil},
		{"no lock held: any token not below the journal's", func(w *world) (uint64, error) {
			w.mustAppend("a", 3, 0, 1)
			return w.append("a", 3, 1, 1)
		}, 2, nil},
		{"snapshot fenced by the lock", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 2)
			w.locks.held["a"] = 2
			return 0, w.snapshot("a", 1, 2)
		}, 0, journal.ErrFenced},
		{"truncate fenced by the lock", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 2)
			if rule := w.snapshot("a", 1, 2); rule != nil {
				return 0, rule
			}
			w.locks.held["a"] = 2
			return 0, w.truncate("a", 1, 2)
		}, 0, journal.ErrFenced},
		{"empty actor", func(w *world) (uint64, error) { return w.append("", 1, 0, 1) }, 0, journal.ErrInvalid},
		{"no entries", func(w *world) (uint64, error) { return w.append("a", 1, 0, 0) }, 0, journal.ErrInvalid},
		{"a tail past the last seq", func(w *world) (uint64, error) {
			tail, rule, err := w.m.Append(now, "a", 1, math.MaxUint64, records("a", 1, 0, 1))
			return tail, errors.Join(rule, err)
		}, 0, journal.ErrInvalid},
		{"snapshot beyond the tail", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 2)
			return 0, w.snapshot("a", 1, 3)
		}, 0, journal.ErrInvalid},
		{"snapshot older than the stored one", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 2)
			if rule := w.snapshot("a", 1, 2); rule != nil {
				return 0, rule
			}
			return 0, w.snapshot("a", 1, 1)
		}, 0, journal.ErrInvalid},
		{"truncate with no snapshot", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 2)
			return 0, w.truncate("a", 1, 1)
		}, 0, journal.ErrInvalid},
		{"truncate beyond the snapshot", func(w *world) (uint64, error) {
			w.mustAppend("a", 1, 0, 3)
			if rule := w.snapshot("a", 1, 2); rule != nil {
				return 0, rule
			}
			return 0, w.truncate("a", 1, 3)
		}, 0, journal.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			got, rule := tc.run(w)
			switch {
			case tc.rule == nil && rule != nil:
				t.Fatalf("rule violation %v", rule)
			case tc.rule != nil && !errors.Is(rule, tc.rule):
				t.Fatalf("rule violation %v, want %v", rule, tc.rule)
			case got != tc.want:
				t.Fatalf("value %d, want %d", got, tc.want)
			}
			// Every command asked the lock fence at the stamped clock.
			for _, asked := range w.locks.asked {
				if asked != now {
					t.Fatalf("the lock fence was asked at %d, the command's clock is %d", asked, now)
				}
			}
		})
	}
}

// TestRuleViolationChangesNothing: a rejected write leaves the records as
// they were, whichever rule rejected it.
func TestRuleViolationChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mustAppend("a", 5, 0, 3)
	if rule := w.snapshot("a", 5, 2); rule != nil {
		t.Fatal(rule)
	}
	w.locks.held["a"] = 6
	before := w.mem.Dump()
	for i, rule := range []error{
		func() error { _, r := w.append("a", 5, 3, 1); return r }(), // below the lock
		func() error { _, r := w.append("a", 6, 2, 1); return r }(), // conflict
		w.snapshot("a", 6, 4),  // beyond the tail
		w.truncate("a", 6, 3),  // beyond the snapshot
		w.truncate("a", 4, 1),  // below the journal's token
		w.snapshot("a", 5, 3),  // below the lock
		w.truncate("", 6, 0),   // no actor
		w.snapshot("a", 6, 1),  // older than the stored snapshot
		w.truncate("a", 5, 2),  // below the lock
		w.snapshot("b", 9, 1),  // beyond b's tail (0)
		w.truncate("b", 9, 1),  // b has no snapshot
		w.snapshot("", 9, 0),   // no actor
		w.truncate("a", 0, 0),  // below both
		w.snapshot("a", 0, 2),  // below both
		w.truncate("a", 5, 0),  // below the lock, even through 0
		w.snapshot("a", 6, 99), // beyond the tail
	} {
		if rule == nil {
			t.Fatalf("violation %d was accepted", i)
		}
	}
	if after := w.mem.Dump(); after != before {
		t.Fatalf("rejected writes changed the records:\n%s\nwas\n%s", after, before)
	}
}

// TestTruncateAndRead: truncate deletes the entries through its seq and
// keeps the tail, the snapshot and the later entries; the actor's state
// and its written token follow every write.
func TestTruncateAndRead(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mustAppend("a", 1, 0, 5)
	w.mustAppend("ab", 1, 0, 2) // a key that has a's as its prefix
	if rule := w.snapshot("a", 2, 3); rule != nil {
		t.Fatal(rule)
	}
	if rule := w.truncate("a", 3, 3); rule != nil {
		t.Fatal(rule)
	}
	recs := w.m.Entries("a", 0)
	var seqs []uint64
	for _, rec := range recs {
		e, err := journal.UnmarshalEntry(rec)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
	}
	if fmt.Sprint(seqs) != "[4 5]" {
		t.Fatalf("entries after truncate through 3: %v", seqs)
	}
	if n := len(w.m.Entries("a", 5)); n != 1 {
		t.Fatalf("entries from 5: %d", n)
	}
	if n := len(w.m.Entries("ab", 0)); n != 2 {
		t.Fatalf("the other actor's entries: %d, want 2", n)
	}
	st, err := w.m.State("a")
	if err != nil || st != (journal.ActorState{Tail: 5, Token: 3, HasSnapshot: true, SnapshotSeq: 3}) {
		t.Fatalf("state %+v, %v", st, err)
	}
	if tok, err := w.m.WrittenToken("a"); tok != 3 || err != nil {
		t.Fatalf("WrittenToken = %d, %v", tok, err)
	}
	if snap, ok, err := w.m.Snapshot("a"); !ok || err != nil || snap.Seq != 3 || snap.Token != 2 {
		t.Fatalf("Snapshot = %+v, %v, %v", snap, ok, err)
	}
	if _, ok, err := w.m.Snapshot("ab"); ok || err != nil {
		t.Fatalf("Snapshot of an actor without one: %v, %v", ok, err)
	}
}
