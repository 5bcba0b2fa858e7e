package wakes

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOutboxBatchesUnderLimit: every wake added reaches the send function
// once, in payloads under the limit; the outbox's own payloads decode to
// nothing for itself and to the wakes for anyone else.
func TestOutboxBatchesUnderLimit(t *testing.T) {
	const limit = 1000
	got := make(chan []byte, 1024)
	o := NewOutbox(limit, func(p []byte) { got <- p })
	defer o.Close()
	at := time.Unix(0, 42)
	want := map[string]bool{}
	for i := range 200 {
		a := fmt.Sprintf("counter/%03d", i)
		want[a] = true
		o.Add(a, at)
	}
	o.Add(strings.Repeat("x", 2*limit), at) // too large alone: dropped
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case p := <-got:
			if len(p) > limit {
				t.Fatalf("payload of %d bytes, limit %d", len(p), limit)
			}
			if own := Decode(p, o.ID()); own != nil {
				t.Fatalf("Decode of the outbox's own payload = %v, want nil", own)
			}
			for _, it := range Decode(p, "someone else") {
				if !want[it.Actor] || seen[it.Actor] || it.At != 42 {
					t.Fatalf("unexpected wake %+v", it)
				}
				seen[it.Actor] = true
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d wakes sent", len(seen), len(want))
		}
	}
	if Decode([]byte("not json"), "") != nil {
		t.Fatal("a payload that does not decode gave wakes")
	}
}
