package dedup

import (
	"errors"
	"fmt"
	"testing"

	"github.com/loom-mesh/loom/internal/kv"
)

// table returns an empty table over a kv.Mem bucket (which has no Append:
// Remember copies the last chunk).
func table(window uint64, retention int64) *Table {
	st := NewState()
	return &Table{Bucket: kv.NewMem().Bucket("dedup"), State: &st, Index: map[string]uint64{}, Window: window, Retention: retention}
}

func key(i int) []byte { return fmt.Appendf(nil, "k%d", i) }

func check(t *testing.T, tb *Table, k []byte, born int64, retry bool) (Verdict, string) {
	t.Helper()
	v, res, err := tb.Check(k, born, retry)
	if err != nil {
		t.Fatal(err)
	}
	return v, string(res)
}

// TestTableRemembers: a remembered command answers its first result,
// whether or not it is flagged as a retry; one never seen runs.
func TestTableRemembers(t *testing.T) {
	t.Parallel()
	tb := table(1000, 0)
	for i := range 200 { // several chunks
		if v, _ := check(t, tb, key(i), 0, false); v != Run {
			t.Fatalf("command %d, never seen: %v", i, v)
		}
		if err := tb.Remember(key(i), int64(i), fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		for _, retry := range []bool{false, true} {
			if v, res := check(t, tb, key(i), 0, retry); v != Remembered || res != fmt.Sprintf("r%d", i) {
				t.Fatalf("command %d (retry %v): %v %q", i, retry, v, res)
			}
		}
	}
	if tb.State.Count != 200 || tb.State.Next != 200 || tb.State.Oldest != 0 {
		t.Fatalf("state %+v", *tb.State)
	}
}

// TestTableForgets: past both bounds the table sweeps back to the window,
// oldest first; a retry born no later than the newest result forgotten is
// Unknown, a first attempt or a later-born retry runs; Load rebuilds the
// index the applies kept.
func TestTableForgets(t *testing.T) {
	t.Parallel()
	const window, retention = 128, 1000 // slack: 2 results, 15 ns
	tb := table(window, retention)
	for i := range window + 3 {
		if err := tb.Remember(key(i), int64(i)*100, []byte("r")); err != nil {
			t.Fatal(err)
		}
	}
	// 131 results, the oldest applied at 0, the newest at 13000: the sweep
	// forgot the 3 outside both bounds.
	if tb.State.Count != window || tb.State.Forgot != 200 || tb.State.Oldest != 300 {
		t.Fatalf("after the sweep: %+v", *tb.State)
	}
	if v, _ := check(t, tb, key(2), 0, false); v != Run {
		t.Fatalf("forgotten first attempt: %v, want Run", v)
	}
	if v, _ := check(t, tb, key(2), 200, true); v != Unknown {
		t.Fatalf("forgotten retry born at the newest forgotten result: %v, want Unknown", v)
	}
	if v, _ := check(t, tb, key(999), 201, true); v != Run {
		t.Fatalf("retry born after everything forgotten: %v, want Run", v)
	}
	if v, _ := check(t, tb, key(3), 0, true); v != Remembered {
		t.Fatalf("oldest result kept: %v", v)
	}
	index, count, err := Load(tb.Bucket.ForEach)
	if err != nil || count != window || len(index) != len(tb.Index) {
		t.Fatalf("Load: %d results, %d keys, %v; want %d", count, len(index), err, len(tb.Index))
	}
	for k, c := range tb.Index {
		if index[k] != c {
			t.Fatalf("Load puts %q in chunk %d, the applies in %d", k, index[k], c)
		}
	}
}

// TestTableKeepsByAge: within the retention nothing is forgotten, however
// many results pass the window.
func TestTableKeepsByAge(t *testing.T) {
	t.Parallel()
	tb := table(4, 1_000_000)
	for i := range 100 {
		if err := tb.Remember(key(i), int64(i), []byte("r")); err != nil {
			t.Fatal(err)
		}
	}
	if tb.State.Count != 100 {
		t.Fatalf("%d results kept, want 100", tb.State.Count)
	}
}

// TestTableCorrupt: an index that names a chunk without the key, and a
// chunk that does not decode, are ErrCorrupt.
func TestTableCorrupt(t *testing.T) {
	t.Parallel()
	tb := table(10, 0)
	if err := tb.Remember(key(1), 0, []byte("r")); err != nil {
		t.Fatal(err)
	}
	tb.Index[string(key(2))] = 0
	if _, _, err := tb.Check(key(2), 0, false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("index naming the wrong chunk: %v", err)
	}
	if err := tb.Bucket.Put(ChunkKey(0), []byte{9}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(tb.Bucket.ForEach); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load of a chunk that does not decode: %v", err)
	}
}
