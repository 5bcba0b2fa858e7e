package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestKillAndRestartKeepsCommittedRows: a transaction the server
// acknowledged is in its write-ahead log (fsync on), so it survives a
// SIGKILL of every server process and a restart on the same data
// directory; a password is required when set.
func TestKillAndRestartKeepsCommittedRows(t *testing.T) {
	start := time.Now()
	s := pgtest.Start(t, pgtest.Options{Password: "s3cr'et"})
	t.Logf("started in %v", time.Since(start))
	ctx := t.Context()
	db := s.CreateDatabase(t)
	c, err := pgx.Connect(ctx, s.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE TABLE l (n int)"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.Exec(ctx, "INSERT INTO l VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	s.Kill()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a killed server answered")
	}
	start = time.Now()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(start))
	c2, err := pgx.Connect(ctx, s.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	var n int
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM l").Scan(&n); err != nil || n != 100 {
		t.Fatalf("after kill -9 and restart: %d rows, %v; want 100", n, err)
	}
	var fsync string
	if err := c2.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Fatalf("fsync = %q, %v; want on", fsync, err)
	}
	cfg, err := pgx.ParseConfig(s.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "wrong"
	if c3, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c3.Close(ctx)
		t.Fatal("a wrong password was accepted")
	}
}

// TestShared: the shared server is one server, and each database made on
// it is separate.
func TestShared(t *testing.T) {
	start := time.Now()
	a := pgtest.Shared(t)
	t.Logf("shared server ready in %v", time.Since(start))
	if b := pgtest.Shared(t); a != b {
		t.Fatal("Shared returned two servers")
	}
	ctx := t.Context()
	d1, d2 := a.CreateDatabase(t), a.CreateDatabase(t)
	if d1 == d2 {
		t.Fatalf("two databases named %s", d1)
	}
	c := a.Conn(t, d1)
	if _, err := c.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	c2 := a.Conn(t, d2)
	if _, err := c2.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatalf("a table of one database is in another: %v", err)
	}
}

// TestPause: a paused server answers nothing, on connections made before
// or after, until it is resumed.
func TestPause(t *testing.T) {
	s := pgtest.Shared(t)
	ctx := t.Context()
	c, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	s.Pause()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(short, "SELECT 1"); err == nil {
		t.Fatal("a paused server answered")
	}
	if _, err := pgx.Connect(short, s.ConnString("postgres")); err == nil {
		t.Fatal("a paused server accepted a login")
	}
	s.Resume()
	c2, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	defer c2.Close(context.Background())
	if _, err := c2.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

// TestKillFreesSharedMemory: a killed server leaves no System V shared
// memory segment behind.
func TestKillFreesSharedMemory(t *testing.T) {
	s := pgtest.Start(t, pgtest.Options{})
	b, err := os.ReadFile(filepath.Join(s.Dir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 || len(strings.Fields(lines[6])) != 2 {
		t.Fatalf("postmaster.pid without a shared memory line:\n%s", b)
	}
	id, err := strconv.Atoi(strings.Fields(lines[6])[1])
	if err != nil {
		t.Fatal(err)
	}
	const ipcStat = 2
	var buf [256]byte // larger than struct shmid_ds
	stat := func() syscall.Errno {
		_, _, e := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcStat, uintptr(unsafe.Pointer(&buf[0])))
		return e
	}
	if e := stat(); e != 0 {
		t.Fatalf("the running server's segment %d: %v", id, e)
	}
	s.Kill()
	if e := stat(); e != syscall.EINVAL && e != syscall.EIDRM {
		t.Fatalf("after Kill, segment %d: %v; want it gone", id, e)
	}
}
