package postgres_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var schemas atomic.Uint64

// uniqueSchema is a schema name no other test of this binary uses.
func uniqueSchema() string { return fmt.Sprintf("t%d", schemas.Add(1)) }

// options are Options for database db on s.
func options(s *pgtest.Server, db string) postgres.Options {
	return postgres.Options{Host: s.Host, Port: s.Port, User: s.User, Password: s.Password, Database: db}
}

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		o    postgres.Options
		addr string // "" means refused
	}{
		{"host and default port", postgres.Options{Host: "db.example.com", User: "u"}, "db.example.com:5432"},
		{"host and port", postgres.Options{Host: "10.0.0.1", Port: 6543, User: "u", Database: "d"}, "10.0.0.1:6543"},
		{"url", postgres.Options{URL: "postgres://u:p@example.com:5433/d?sslmode=disable"}, "example.com:5433"},
		{"keyword/value", postgres.Options{URL: "host=example.com port=5434 user=u"}, "example.com:5434"},
		{"schema", postgres.Options{Host: "a", User: "u", Schema: "shop_1"}, "a:5432"},
		{"tls", postgres.Options{Host: "a", User: "u", TLS: &tls.Config{}}, "a:5432"},
		{"nothing", postgres.Options{}, ""},
		{"no user", postgres.Options{Host: "a"}, ""},
		{"url and host", postgres.Options{URL: "postgres://a/d", Host: "a"}, ""},
		{"bad url", postgres.Options{URL: "postgres://a:notaport/d"}, ""},
		{"port out of range", postgres.Options{Host: "a", User: "u", Port: 70000}, ""},
		{"schema with capitals", postgres.Options{Host: "a", User: "u", Schema: "Loom"}, ""},
		{"schema with a quote", postgres.Options{Host: "a", User: "u", Schema: `a"b`}, ""},
		{"schema too long", postgres.Options{Host: "a", User: "u", Schema: "a123456789012345678901234567890123456789012345678901234567890123"}, ""},
		{"negative pool", postgres.Options{Host: "a", User: "u", PoolSize: -1}, ""},
		{"negative timeout", postgres.Options{Host: "a", User: "u", QueryTimeout: -time.Second}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := c.o.PoolConfig(nil)
			if c.addr == "" {
				if !errors.Is(err, postgres.ErrOptions) || !errors.Is(c.o.Validate(), postgres.ErrOptions) {
					t.Fatalf("PoolConfig = %v, %v; want ErrOptions", cfg, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PoolConfig: %v", err)
			}
			if got := net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port)); got != c.addr || c.o.Addr() != c.addr {
				t.Fatalf("server %s (Addr %s), want %s", got, c.o.Addr(), c.addr)
			}
			if c.o.URL == "" && (cfg.ConnConfig.TLSConfig != nil) != (c.o.TLS != nil) {
				t.Fatalf("TLS %v, asked %v", cfg.ConnConfig.TLSConfig != nil, c.o.TLS != nil)
			}
			if c.o.TLS != nil && cfg.ConnConfig.TLSConfig.ServerName != "a" {
				t.Fatalf("TLS server name %q", cfg.ConnConfig.TLSConfig.ServerName)
			}
			if cfg.ConnConfig.ConnectTimeout != postgres.DefaultConnectTimeout {
				t.Fatalf("connect timeout %v", cfg.ConnConfig.ConnectTimeout)
			}
		})
	}
	if s := (postgres.Options{}).SchemaName(); s != postgres.DefaultSchema {
		t.Fatalf("default schema %q", s)
	}
	// Validate reports every problem at once.
	err := postgres.Options{Port: -1, Schema: "X"}.Validate()
	for _, want := range []string{"no server", "no user", "port", "schema"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want it to mention %q", err, want)
		}
	}
}

// TestPoolReachesTheServer: a pool made from Options talks to a real
// server and gives the password; a wrong password is refused at login,
// which NotApplied counts as not applied.
func TestPoolReachesTheServer(t *testing.T) {
	s := pgtest.Start(t, pgtest.Options{Password: "pw"})
	db := s.CreateDatabase(t)
	p, err := postgres.NewPool(options(s, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var name string
	if err := p.QueryRow(t.Context(), "SELECT current_setting('application_name')").Scan(&name); err != nil || name != "loom" {
		t.Fatalf("application_name = %q, %v", name, err)
	}
	o := options(s, db)
	o.Password = "wrong"
	bad, err := postgres.NewPool(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.Exec(t.Context(), "SELECT 1")
	if err == nil || !postgres.NotApplied(err) {
		t.Fatalf("a wrong password: %v; want an error NotApplied", err)
	}
}

func TestNotApplied(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connect error", &pgconn.ConnectError{}, true},
		{"connect error, wrapped", fmt.Errorf("x: %w", &pgconn.ConnectError{}), true},
		{"pool closed", puddle.ErrClosedPool, true},
		{"statement error", &pgconn.PgError{Severity: "ERROR", Code: "23505"}, true},
		{"localised statement error", &pgconn.PgError{Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "22012"}, true},
		{"serialization failure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, true},
		{"session ended by an administrator", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, false},
		{"panic", &pgconn.PgError{Severity: "PANIC", Code: "XX000"}, false},
		{"connection lost", io.ErrUnexpectedEOF, false},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ETIMEDOUT}, false},
		{"context ended", context.DeadlineExceeded, false},
	} {
		if got := postgres.NotApplied(c.err); got != c.want {
			t.Errorf("%s: NotApplied(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
	if !postgres.IsConflict(&pgconn.PgError{Code: "40P01"}) || postgres.IsConflict(&pgconn.PgError{Code: "23505"}) {
		t.Error("IsConflict")
	}
}

// TestNotAppliedFromTheServer classifies real failures: a statement the
// server refuses rolled back; a session the server ends while its
// statement runs may have committed; a refused connection sent nothing.
func TestNotAppliedFromTheServer(t *testing.T) {
	s := pgtest.Shared(t)
	db := s.CreateDatabase(t)
	ctx := t.Context()
	p, err := postgres.NewPool(options(s, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Exec(ctx, "SELECT 1/0"); !postgres.NotApplied(err) {
		t.Errorf("division by zero: %v; want NotApplied", err)
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Conn().PgConn().PID()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
		errc <- err
	}()
	admin := s.Conn(t, db)
	// Wait until the statement runs, then end its session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%' AND state = 'active'", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the statement did not start")
		}
		time.Sleep(5 * time.Millisecond) // polling interval for a condition with a deadline
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	err = <-errc
	c.Release()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || postgres.NotApplied(err) {
		t.Errorf("terminated session: %v; want a FATAL 57P01 that may have been applied", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	dead, err := postgres.NewPool(postgres.Options{Host: "127.0.0.1", Port: addr.Port, User: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if _, err := dead.Exec(ctx, "SELECT 1"); !postgres.NotApplied(err) {
		t.Errorf("connection refused: %v; want NotApplied", err)
	}
}

// TestMigrate: a new schema is made at SchemaVersion; a second run
// changes nothing; nodes migrating at once all succeed and the migration
// runs once; a schema the operator made beforehand is used; a schema
// newer than the code is refused and left alone.
func TestMigrate(t *testing.T) {
	s := pgtest.Shared(t)
	db := s.CreateDatabase(t)
	ctx := t.Context()
	p, err := postgres.NewPool(options(s, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	admin := s.Conn(t, db)
	version := func(schema string) (max, rows int) {
		t.Helper()
		if err := admin.QueryRow(ctx, postgres.Expand("SELECT coalesce(max(version), 0), count(*) FROM {s}.schema_version", schema)).Scan(&max, &rows); err != nil {
			t.Fatal(err)
		}
		return max, rows
	}

	schema := uniqueSchema()
	if from, err := postgres.Migrate(ctx, p, schema); err != nil || from != 0 {
		t.Fatalf("first Migrate = %d, %v; want from 0", from, err)
	}
	if v, n := version(schema); v != postgres.SchemaVersion || n != postgres.SchemaVersion {
		t.Fatalf("version %d in %d rows; want %d", v, n, postgres.SchemaVersion)
	}
	if from, err := postgres.Migrate(ctx, p, schema); err != nil || from != postgres.SchemaVersion {
		t.Fatalf("second Migrate = %d, %v; want from %d", from, err, postgres.SchemaVersion)
	}
	if v, n := version(schema); v != postgres.SchemaVersion || n != postgres.SchemaVersion {
		t.Fatalf("after a second run: version %d in %d rows", v, n)
	}

	// Concurrent first runs.
	schema = uniqueSchema()
	var wg sync.WaitGroup
	froms := make([]int, 8)
	errs := make([]error, len(froms))
	for i := range froms {
		wg.Go(func() { froms[i], errs[i] = postgres.Migrate(ctx, p, schema) })
	}
	wg.Wait()
	zeros := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate %d: %v", i, err)
		}
		if froms[i] == 0 {
			zeros++
		}
	}
	if v, n := version(schema); zeros != 1 || v != postgres.SchemaVersion || n != postgres.SchemaVersion {
		t.Fatalf("concurrent runs: %d found a new schema, version %d in %d rows; want 1, %d", zeros, v, n, postgres.SchemaVersion)
	}

	// The operator made the schema.
	schema = uniqueSchema()
	if _, err := admin.Exec(ctx, postgres.Expand("CREATE SCHEMA {s}", schema)); err != nil {
		t.Fatal(err)
	}
	if from, err := postgres.Migrate(ctx, p, schema); err != nil || from != 0 {
		t.Fatalf("Migrate of an empty schema = %d, %v", from, err)
	}

	// A newer Loom migrated it.
	if _, err := admin.Exec(ctx, postgres.Expand("INSERT INTO {s}.schema_version (version) VALUES ($1)", schema), postgres.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	from, err := postgres.Migrate(ctx, p, schema)
	if !errors.Is(err, postgres.ErrSchemaTooNew) || from != postgres.SchemaVersion+1 {
		t.Fatalf("Migrate of a newer schema = %d, %v; want ErrSchemaTooNew", from, err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("version %d", postgres.SchemaVersion+1)) {
		t.Errorf("%q does not say which version it found", err)
	}
	if v, n := version(schema); v != postgres.SchemaVersion+1 || n != postgres.SchemaVersion+1 {
		t.Fatalf("a refused Migrate changed the versions: %d in %d rows", v, n)
	}
	if _, err := postgres.Migrate(ctx, p, "Bad"); !errors.Is(err, postgres.ErrOptions) {
		t.Fatalf("Migrate of a bad schema name: %v", err)
	}
}

// TestMigrateRollsBack: a migration that fails part-way leaves nothing
// behind, not even the schema.
func TestMigrateRollsBack(t *testing.T) {
	s := pgtest.Shared(t)
	db := s.CreateDatabase(t)
	ctx := t.Context()
	p, err := postgres.NewPool(options(s, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	schema := uniqueSchema()
	admin := s.Conn(t, db)
	// A type taking the name of one of the migration's tables makes it
	// fail part-way, after it has made others.
	if _, err := admin.Exec(ctx, postgres.Expand("CREATE SCHEMA {s}; CREATE TYPE {s}.journal_heads AS (x int)", schema)); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, p, schema); err == nil || !postgres.NotApplied(err) {
		t.Fatalf("Migrate over a clashing type: %v; want a failure, not applied", err)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d tables left after a failed migration (%v)", n, err)
	}
}
