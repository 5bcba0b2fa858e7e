package runtime

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// TestNewMessageIDIsTimeOrdered: an id is 32 lowercase hex digits that
// begin with the millisecond it was made in, so ids from later
// milliseconds sort after earlier ones whatever their random part, and
// ids made in one millisecond still differ.
func TestNewMessageIDIsTimeOrdered(t *testing.T) {
	base := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	prev := ""
	for i := range 2000 {
		at := base.Add(time.Duration(i) * time.Millisecond)
		id := newMessageID(at)
		if len(id) != 32 || strings.ToLower(id) != id {
			t.Fatalf("id %q: want 32 lowercase hex digits", id)
		}
		b, err := hex.DecodeString(id)
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		var ms uint64
		for _, c := range b[:6] {
			ms = ms<<8 | uint64(c)
		}
		if int64(ms) != at.UnixMilli() {
			t.Fatalf("id %q carries millisecond %d, made at %d", id, ms, at.UnixMilli())
		}
		if id <= prev {
			t.Fatalf("id %q made at %v sorts before or as %q, made a millisecond earlier", id, at, prev)
		}
		prev = id
	}
	seen := map[string]bool{}
	for range 10000 {
		id := newMessageID(base)
		if seen[id] {
			t.Fatalf("id %q made twice in one millisecond", id)
		}
		seen[id] = true
	}
	if id := NewMessageID(); id[:12] < newMessageID(base)[:12] {
		t.Fatalf("NewMessageID %q does not carry the current time", id)
	}
}
