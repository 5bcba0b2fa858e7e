package pgjournal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestNotifyAcrossJournals: Journals of several nodes on one server and
// schema wake each other through NOTIFY; another schema is another
// cluster.
func TestNotifyAcrossJournals(t *testing.T) {
	srv := pgtest.Shared(t)
	db := srv.CreateDatabase(t)
	queuetest.RunShared(t, open(t, srv, db, "wake"), open(t, srv, db, "wake"), open(t, srv, db, "wake_other"))
}

// TestNotifyAfterServerRestart: the listener connects again after the
// server restarts, and wakes flow again.
func TestNotifyAfterServerRestart(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	db := srv.CreateDatabase(t)
	sender, owner := open(t, srv, db, "wake"), open(t, srv, db, "wake")
	woke := make(chan string, 64)
	owner.Notify(func(actor string, _ time.Time) { woke <- actor })
	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Each try sends a new message until one wakes the owner: the
	// listener reconnects with backoff, and a wake sent before it is
	// listening again is lost, as hints may be.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		_, err := sender.Enqueue(ctx, queue.Message{ID: fmt.Sprintf("after-restart-%d", i), Actor: "counter/r", Method: "add"})
		if err == nil {
			select {
			case <-woke:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wake reached the owner within 20 s of the server's restart (last enqueue: %v)", err)
		}
	}
}
