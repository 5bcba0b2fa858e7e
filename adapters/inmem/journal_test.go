package inmem_test

import (
	"testing"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

func TestJournalConformance(t *testing.T) {
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal { return inmem.NewJournal() },
		// Reopen is nil: nothing survives the process.
	})
}
