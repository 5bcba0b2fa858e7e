package cosmosjournal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/adapters/cosmos/cosmosjournal"
	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

func options(s *cosmostest.Server, db string) cosmosjournal.Options {
	return cosmosjournal.Options{Cosmos: cosmos.Options{Endpoint: s.Endpoint, Key: s.Key, Database: db, InsecureSkipVerify: true}}
}

// open returns a journal on database db of the shared server.
func open(t testing.TB, db string) *cosmosjournal.Journal {
	t.Helper()
	j, err := cosmosjournal.Open(t.Context(), options(cosmostest.Shared(t), db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestConformance(t *testing.T) {
	dbs := map[journal.Journal]string{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			db := cosmostest.Database(t)
			j := open(t, db)
			dbs[j] = db
			return j
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			j := open(t, dbs[old])
			dbs[j] = dbs[old]
			return j
		},
	})
}

// TestMessageKindsRefused: the journal keeps no queues, so entries whose
// meaning is a queue's are refused, saying so, and nothing is written.
func TestMessageKindsRefused(t *testing.T) {
	j := open(t, cosmostest.Database(t))
	for _, k := range []journal.Kind{journal.KindMessageAck, journal.KindMessageSend, journal.KindMessageDirect} {
		_, err := j.Append(t.Context(), "a/1", 1, 0, []journal.Entry{{Kind: journal.KindInvocation}, {Kind: k, IdempotencyKey: "m"}})
		if !errors.Is(err, journal.ErrInvalid) || !strings.Contains(err.Error(), "keeps no queues") {
			t.Fatalf("append of a %s entry: %v; want ErrInvalid saying the journal keeps no queues", k, err)
		}
	}
	if tl, err := j.Tail(t.Context(), "a/1"); err != nil || tl != (journal.Tail{}) {
		t.Fatalf("Tail = %+v, %v; want nothing written", tl, err)
	}
}
