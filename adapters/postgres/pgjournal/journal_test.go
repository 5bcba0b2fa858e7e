package pgjournal_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var schemas atomic.Uint64

// uniqueSchema is a schema name no other journal of this test binary uses.
func uniqueSchema() string { return fmt.Sprintf("t%d", schemas.Add(1)) }

var (
	dbMu   sync.Mutex
	dbName string
)

// sharedDB is the shared server and the database the tests of this
// binary share, each in a schema of its own.
func sharedDB(t testing.TB) (*pgtest.Server, string) {
	t.Helper()
	s := pgtest.Shared(t)
	dbMu.Lock()
	defer dbMu.Unlock()
	if dbName == "" {
		dbName = s.CreateDatabase(t)
	}
	return s, dbName
}

func options(s *pgtest.Server, db, schema string) pgjournal.Options {
	o := pgjournal.DefaultOptions()
	o.Postgres = postgres.Options{Host: s.Host, Port: s.Port, User: s.User, Password: s.Password, Database: db, Schema: schema}
	return o
}

// open opens a journal on database db of s in schema, closed when t ends.
func open(t testing.TB, s *pgtest.Server, db, schema string, mod ...func(*pgjournal.Options)) *pgjournal.Journal {
	t.Helper()
	o := options(s, db, schema)
	for _, m := range mod {
		m(&o)
	}
	j, err := pgjournal.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestConformance runs journaltest against a real server, each subtest in
// a schema of its own. Reopen is a new journal (a new pool) over the same
// schema: what a restarted node process sees.
func TestConformance(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	var mu sync.Mutex
	schemaOf := map[journal.Journal]string{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			schema := uniqueSchema()
			j := open(t, s, db, schema)
			mu.Lock()
			schemaOf[j] = schema
			mu.Unlock()
			return j
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			mu.Lock()
			schema := schemaOf[old]
			mu.Unlock()
			j := open(t, s, db, schema)
			mu.Lock()
			schemaOf[j] = schema
			mu.Unlock()
			return j
		},
	})
}
