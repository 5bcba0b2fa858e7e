package pgjournal_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
)

// TestUnavailable: with nothing listening, Open fails with ErrUnavailable
// naming the server; once a journal's server is gone, each operation fails
// with ErrUnavailable (a connection could not be had: nothing was sent),
// never a refusal.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	o := pgjournal.DefaultOptions()
	o.Postgres = postgres.Options{Host: "127.0.0.1", Port: addr.Port, User: "u"}
	if _, err := pgjournal.Open(t.Context(), o); !errors.Is(err, pgjournal.ErrUnavailable) || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("Open with nothing listening: %v; want ErrUnavailable naming %s", err, addr)
	}

	s := pgtest.Start(t, pgtest.Options{})
	j := open(t, s, s.CreateDatabase(t), "loom")
	mustAppendAt(t, j, "a", 0)
	s.Stop()
	j.DropConnections()
	ctx := t.Context()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"append to", func() error { _, err := j.Append(ctx, "a", 1, 1, entriesAt("a", 1, 1)); return err }},
		{"snapshot of", func() error { return j.SaveSnapshot(ctx, "a", 1, journal.Snapshot{Seq: 1}) }},
		{"truncate of", func() error { return j.Truncate(ctx, "a", 1, 0) }},
		{"read", func() error { _, err := j.Read(ctx, "a", 0); return err }},
		{"tail of", func() error { _, err := j.Tail(ctx, "a"); return err }},
		{"load snapshot of", func() error { _, _, err := j.LoadSnapshot(ctx, "a"); return err }},
		{"ping", func() error { _, err := j.Ping(ctx); return err }},
	} {
		err := c.call()
		if !errors.Is(err, pgjournal.ErrUnavailable) || !errors.Is(err, journal.ErrUnavailable) {
			t.Errorf("%s: %v; want ErrUnavailable", c.name, err)
			continue
		}
		for _, ref := range []error{journal.ErrConflict, journal.ErrFenced, journal.ErrInvalid, journal.ErrClosed, journal.ErrUnknownOutcome} {
			if errors.Is(err, ref) {
				t.Errorf("%s: %v also matches %v", c.name, err, ref)
			}
		}
		if msg := err.Error(); !strings.Contains(msg, c.name) || !strings.Contains(msg, s.Addr()) || !strings.Contains(msg, "refused") {
			t.Errorf("%s: %q does not say what failed (operation, address, cause)", c.name, msg)
		}
	}
}

// TestNoAnswer: a server that stops answering (every process paused)
// makes an append fail after the query timeout with ErrUnknownOutcome;
// once it answers again, the log holds the append or not, without a gap,
// and the journal goes on.
func TestNoAnswer(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	db := s.CreateDatabase(t)
	j := open(t, s, db, "loom", func(o *pgjournal.Options) { o.Postgres.QueryTimeout = 300 * time.Millisecond })
	mustAppendAt(t, j, "a", 0) // just before: the committer's connection is reused without a ping
	s.Pause()
	_, err := j.Append(t.Context(), "a", 1, 1, entriesAt("a", 1, 1))
	if !errors.Is(err, pgjournal.ErrUnknownOutcome) || errors.Is(err, pgjournal.ErrUnavailable) {
		t.Fatalf("Append with no answer: %v; want ErrUnknownOutcome only", err)
	}
	if _, err := j.Tail(t.Context(), "a"); !errors.Is(err, pgjournal.ErrUnavailable) {
		t.Fatalf("Tail with no answer: %v; want ErrUnavailable", err)
	}
	s.Resume()
	// The abandoned statement may still run once the server resumes:
	// end its session (and wait for it to exit) before looking.
	if _, err := s.Conn(t, db).Exec(t.Context(), `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	// Another journal, without the short timeout (new connections are
	// slow on a loaded machine).
	j2 := open(t, s, db, "loom")
	tail := checkLog(t, j2, "a", 1)
	mustAppendAt(t, j2, "a", tail)
}

// TestWrongPassword: a server that refuses the credentials is unavailable.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{Password: "right"})
	o := options(s, s.CreateDatabase(t), "loom")
	o.Postgres.Password = "wrong"
	_, err := pgjournal.Open(t.Context(), o)
	if !errors.Is(err, pgjournal.ErrUnavailable) || errors.Is(err, journal.ErrUnknownOutcome) || !strings.Contains(err.Error(), "password") {
		t.Fatalf("Open with a wrong password: %v; want ErrUnavailable saying so", err)
	}
}

// TestNewerSchemaRefused: a journal does not open a schema made by a
// newer Loom.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	open(t, s, db, schema)
	if _, err := s.Conn(t, db).Exec(t.Context(), postgres.Expand("INSERT INTO {s}.schema_version (version) VALUES ($1)", schema), postgres.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := pgjournal.Open(t.Context(), options(s, db, schema)); !errors.Is(err, postgres.ErrSchemaTooNew) || errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Open on a newer schema: %v; want ErrSchemaTooNew", err)
	}
}

// TestCorruptRecord: a stored record that fails its checksum is reported
// as journal.ErrCorrupt, naming the actor and the seq.
func TestCorruptRecord(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	j := open(t, s, db, schema)
	for seq := range uint64(3) {
		mustAppendAt(t, j, "a", seq)
	}
	if _, err := s.Conn(t, db).Exec(t.Context(), postgres.Expand("UPDATE {s}.journal_entries SET rec = set_byte(rec, 5, get_byte(rec, 5) # 1) WHERE seq = 2", schema)); err != nil {
		t.Fatal(err)
	}
	_, err := j.Read(t.Context(), "a", 0)
	if !errors.Is(err, journal.ErrCorrupt) || errors.Is(err, journal.ErrUnavailable) || !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("Read of a damaged record: %v; want ErrCorrupt naming seq 2", err)
	}
	if es, err := j.Read(t.Context(), "a", 3); err != nil || len(es) != 1 {
		t.Fatalf("Read past the damage = %d entries, %v", len(es), err)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	good := pgjournal.DefaultOptions()
	good.Postgres = postgres.Options{Host: "127.0.0.1", User: "u"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	bad := pgjournal.Options{Postgres: postgres.Options{Schema: "X"}, Committers: 2}
	bad.Postgres.PoolSize = 2
	err := bad.Validate()
	for _, want := range []string{"no server", "schema", "MaxBatch", "pool of 2"} {
		if !errors.Is(err, journal.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want ErrInvalid mentioning %q", err, want)
		}
	}
	if _, err := pgjournal.Open(context.Background(), bad); !errors.Is(err, journal.ErrInvalid) {
		t.Fatalf("Open with bad options: %v", err)
	}
}
