package kv

import (
	"fmt"
	"testing"
)

// TestMemBucket: Mem keeps the contract of Bucket that the state machines
// rely on: nil for a missing key, an empty value for a nil one, cursors in
// key order bounded by their prefix, and Clone sharing nothing.
func TestMemBucket(t *testing.T) {
	t.Parallel()
	m := NewMem()
	b := m.Bucket("b")
	for _, k := range []string{"b2", "a", "b10", "b1", "c"} {
		if err := b.Put([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Put([]byte("e"), nil); err != nil {
		t.Fatal(err)
	}
	if v := b.Get([]byte("e")); v == nil || len(v) != 0 {
		t.Fatalf("Get of a nil value = %v, want empty and not nil", v)
	}
	if v := b.Get([]byte("zz")); v != nil {
		t.Fatalf("Get of a missing key = %q", v)
	}
	walk := func(c Cursor, k, v []byte) string {
		var out string
		for ; k != nil; k, v = c.Next() {
			out += fmt.Sprintf("%s=%s ", k, v)
		}
		return out
	}
	c := b.Cursor()
	k, v := c.First()
	if got := walk(c, k, v); got != "a=va b1=vb1 b10=vb10 b2=vb2 c=vc e= " {
		t.Fatalf("cursor: %s", got)
	}
	c = b.PrefixCursor([]byte("b1"))
	k, v = c.First()
	if got := walk(c, k, v); got != "b1=vb1 b10=vb10 " {
		t.Fatalf("prefix cursor: %s", got)
	}
	c = b.PrefixCursor([]byte("b"))
	k, v = c.Seek([]byte("b11"))
	if got := walk(c, k, v); got != "b2=vb2 " {
		t.Fatalf("prefix cursor from b11: %s", got)
	}
	if k, _ := b.PrefixCursor([]byte("d")).First(); k != nil {
		t.Fatalf("empty prefix range starts at %q", k)
	}
	snap := m.Clone()
	before := snap.Dump()
	if err := b.Delete([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete([]byte("missing")); err != nil {
		t.Fatal(err)
	}
	if snap.Dump() != before || m.Dump() == before {
		t.Fatal("a change after Clone shows in the clone, or not in the original")
	}
	n := 0
	if err := b.ForEach(func(k, v []byte) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("ForEach saw %d records, %v; want 5", n, err)
	}
}
