package journal_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestFileQueueConformance runs queuetest on the bbolt file journal.
func TestFileQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		opts := journal.DefaultFileOptions()
		if o.Retention != 0 {
			opts.MessageIDRetention = o.Retention
		}
		f, err := journal.OpenFile(filepath.Join(t.TempDir(), "j.db"), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	})
}

// TestFileQueueSurvivesReopen: an accepted message is still pending after
// the file is closed and opened again; once acknowledged by an append, it
// is gone and its id still remembered.
func TestFileQueueSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	ctx := context.Background()
	open := func() *journal.FileJournal {
		f, err := journal.OpenFile(path, journal.DefaultFileOptions())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := open()
	if _, err := f.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add", Ordered: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open()
	due, err := f.Due(ctx, "counter/a", time.Now().Add(time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].ID != "m1" {
		t.Fatalf("after reopen: %+v, %v", due, err)
	}
	if _, err := f.Append(ctx, "counter/a", 1, 0, []journal.Entry{{Kind: journal.KindInvocation}, {Kind: journal.KindMessageAck, IdempotencyKey: "m1"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open()
	defer f.Close()
	if due, err := f.Due(ctx, "counter/a", time.Now().Add(time.Minute), 10); err != nil || len(due) != 0 {
		t.Fatalf("after the ack and a reopen: %+v, %v", due, err)
	}
	acc, err := f.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add"})
	if err != nil || !acc.Duplicate {
		t.Fatalf("resend of an acknowledged id: %+v, %v", acc, err)
	}
}
