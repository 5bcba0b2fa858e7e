package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/queue"
)

// Notifier is a Store whose writes notify: what RunShared tests.
type Notifier interface {
	queue.Store
	queue.Notifier
}

// RunShared checks the wakes between stores of different nodes on one
// shared server: a message enqueued through sender wakes owner's Notify
// function (its deliverer is often another node); owner hears its own
// writes once, directly, not again through the server; and other, a store
// on the same server but of another cluster (another prefix or schema),
// hears nothing of theirs. The three stores are open and empty; the
// caller closes them.
func RunShared(t *testing.T, sender, owner, other Notifier) {
	t.Helper()
	woke := make(chan string, 16)
	owner.Notify(func(actor string, _ time.Time) { woke <- actor })
	stray := make(chan string, 16)
	other.Notify(func(actor string, _ time.Time) { stray <- actor })
	ctx := context.Background()
	enqueue := func(s queue.Store, id, actor string) {
		t.Helper()
		if _, err := s.Enqueue(ctx, queue.Message{ID: id, Actor: actor, Method: "add"}); err != nil {
			t.Fatal(err)
		}
	}
	next := func(ch chan string, want, why string) {
		t.Helper()
		select {
		case a := <-ch:
			if a != want {
				t.Fatalf("woke %q, want %s (%s)", a, want, why)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no wake for %s within 5 s (%s)", want, why)
		}
	}
	enqueue(sender, "m1", "counter/a")
	next(woke, "counter/a", "the sender's enqueue wakes the owner's store")
	enqueue(owner, "m2", "counter/b")
	next(woke, "counter/b", "the owner's own enqueue wakes it directly")
	// A marker through the server: anything the owner had received of
	// its own write would come before it.
	enqueue(sender, "m3", "counter/c")
	next(woke, "counter/c", "the owner's own write must reach it once")
	// The other cluster's store heard none of these; its own write
	// reaches it first.
	enqueue(other, "m4", "counter/d")
	next(stray, "counter/d", "a store of another cluster must not hear this one's writes")
}
