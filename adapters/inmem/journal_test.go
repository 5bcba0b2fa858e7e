package inmem_test

import (
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

func TestJournalConformance(t *testing.T) {
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal { return inmem.NewJournal() },
		// Reopen is nil: nothing survives the process.
	})
}

func TestQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, opts queuetest.Options) queuetest.Backend {
		return inmem.NewJournalWith(inmem.Options{Retention: opts.Retention})
	})
}

// TestQueueClock: the Journal stamps acceptances and acknowledgements with
// its Clock, and Close stops the notification goroutine.
func TestQueueClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	j := inmem.NewJournalWith(inmem.Options{Retention: time.Minute, Clock: func() time.Time { return at }})
	j.Notify(func(string, time.Time) {})
	ctx := t.Context()
	acc, err := j.Enqueue(ctx, queue.Message{ID: "m", Actor: "a/1", Method: "M"})
	if err != nil || !acc.AcceptedAt.Equal(at) {
		t.Fatalf("Enqueue = %+v, %v; want AcceptedAt %v", acc, err, at)
	}
	if _, err := j.Append(ctx, "a/1", 1, 0, []journal.Entry{{Kind: journal.KindMessageAck, IdempotencyKey: "m"}}); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Minute - 1)
	if acc, _ := j.Enqueue(ctx, queue.Message{ID: "m", Actor: "a/1", Method: "M"}); !acc.Duplicate {
		t.Fatal("forgotten before the retention on the Clock")
	}
	at = at.Add(1)
	if acc, _ := j.Enqueue(ctx, queue.Message{ID: "m", Actor: "a/1", Method: "M"}); acc.Duplicate {
		t.Fatal("remembered past the retention on the Clock")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j.Notify(func(string, time.Time) { t.Error("notified after Close") })
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}
