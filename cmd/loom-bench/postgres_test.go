package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/internal/pgtest"
)

// TestPGInsertRunsAndCleansUp runs the pg-insert baseline briefly against
// a throwaway PostgreSQL server that wants a password, given through
// $PGPASSWORD: it makes calls without errors (each an INSERT the server
// answered with one row added), and it leaves no table behind. A wrong --postgres-password,
// which overrides the environment, is refused before anything is
// measured.
func TestPGInsertRunsAndCleansUp(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Password: "s3cret"})
	c := srv.Conn(t, "postgres")
	t.Setenv("PGPASSWORD", "s3cret")
	args := []string{"--postgres", srv.Addr(), "--postgres-user", srv.User, "--postgres-database", "postgres", "--only", "pg-insert", "--callers", "4", "--duration", "300ms"}
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var row []string
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "pg-insert" {
			row = f
		}
	}
	// scenario calls/s p50 p99 p999 errors x unary x stream x raft x postgres
	if len(row) != 10 {
		t.Fatalf("no pg-insert row of 10 fields in:\n%s", out.String())
	}
	if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
		t.Errorf("calls/s %q", row[1])
	}
	if row[5] != "0" || row[9] != "1.00" {
		t.Errorf("errors %s, ratio to itself %s:\n%s", row[5], row[9], out.String())
	}
	if !strings.Contains(out.String(), "x postgres") {
		t.Errorf("no postgres column:\n%s", out.String())
	}
	// Every call's INSERT added its row (a call that added none is an
	// error), and the table is gone.
	var left int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'loom_bench_insert_%'").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d tables left behind", left)
	}

	out.Reset()
	errOut.Reset()
	args = []string{"--postgres", srv.Addr(), "--postgres-user", srv.User, "--postgres-password", "wrong", "--only", "pg-insert", "--duration", "300ms"}
	if code := run(args, &out, &errOut); code != 1 {
		t.Errorf("wrong password: exit %d, want 1\nstdout:\n%s", code, out.String())
	}
	if !strings.Contains(errOut.String(), "postgres baseline") {
		t.Errorf("wrong password: stderr %q", errOut.String())
	}
}

func TestPGInsertNeedsAServer(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--only", "pg-insert"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "needs --postgres") {
		t.Errorf("stderr %q", errOut.String())
	}
}
