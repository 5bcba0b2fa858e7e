package redisjournal_test

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/queue"
)

// TestNotifyAcrossJournals: a message enqueued through one Journal (one
// node) wakes the Notify function of another on the same server (the
// node that delivers it), once, and not the other way round for its own
// writes: each Journal hears its own writes directly.
func TestNotifyAcrossJournals(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	sender, owner := open(t, srv.Addr), open(t, srv.Addr)
	woke := make(chan string, 16)
	owner.Notify(func(actor string, _ time.Time) { woke <- actor })
	ctx := context.Background()
	if _, err := sender.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add"}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-woke:
		if a != "counter/a" {
			t.Fatalf("woke %q, want counter/a", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the owner's Journal was not woken by the sender's enqueue")
	}
	// The owner's own enqueue wakes it once: directly, not again
	// through the channel.
	if _, err := owner.Enqueue(ctx, queue.Message{ID: "m2", Actor: "counter/b", Method: "add"}); err != nil {
		t.Fatal(err)
	}
	if a := <-woke; a != "counter/b" {
		t.Fatalf("woke %q, want counter/b", a)
	}
	// A marker through the channel: anything the owner had received of
	// its own publication would come before it.
	if _, err := sender.Enqueue(ctx, queue.Message{ID: "m3", Actor: "counter/c", Method: "add"}); err != nil {
		t.Fatal(err)
	}
	if a := <-woke; a != "counter/c" {
		t.Fatalf("woke %q after the owner's own write, want only counter/c (its own write was delivered twice)", a)
	}
}
