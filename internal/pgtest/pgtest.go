// Package pgtest starts throwaway PostgreSQL servers for tests: a real
// server (Debian's postgresql package, installed by
// scripts/ensure-postgres), on a free 127.0.0.1 port, in a data directory
// of its own under the system's temp directory, durable (fsync and
// synchronous_commit on, the defaults, stated anyway). A test that needs
// one fails, never skips, when the server cannot start.
//
// # Sharing
//
// initdb takes more than a second; a server started from a copy of an
// initialised data directory is ready in a few hundred milliseconds. A
// test package that calls Main from its TestMain gets both savings:
// initdb runs once per test binary (the first server's data directory is
// copied for every later one), and Shared hands every test the same
// server, started on first use and stopped when the tests end. Each test
// then works in a database of its own (CreateDatabase) or a schema of its
// own. A test that kills or restarts a server starts one of its own with
// Start.
//
// # Root
//
// initdb and postgres refuse to run as root. When the tests run as root,
// the data directory is given to the "postgres" user (the Debian package
// creates it) and initdb and the server run as that user (the process's
// credentials are switched at exec, as runuser would).
//
// # Stopping
//
// A server started with Start stops when its test ends; Shared's stops
// when Main returns. Both stop it as pg_ctl stop -m immediate does
// (SIGQUIT to the postmaster, which ends its children and removes its
// shared memory) and remove the directory. Kill is a crash: SIGKILL to the
// postmaster and every one of its children at once, leaving the data
// directory as a power cut of the processes would; Restart starts the
// server again on it, which recovers from the write-ahead log. The
// postmaster is also sent SIGKILL by the kernel if the test process dies
// first (Pdeathsig), and its children exit when they see it gone.
package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/internal/sharedserver"
)

// User is the superuser of every server pgtest starts.
const User = "loom"

// Options configure a server.
type Options struct {
	// Password, when set, is the superuser's password, and connections
	// over TCP must give it (scram-sha-256). Without it, TCP connections
	// from 127.0.0.1 are trusted.
	Password string
}

// Server is one PostgreSQL server (a postmaster and its children). Kill,
// Restart, Pause, Resume and Stop may be called from one goroutine at a
// time.
type Server struct {
	Host     string // "127.0.0.1"
	Port     int
	User     string // User
	Password string // Options.Password
	Dir      string // the data directory

	root   string // holds Dir, the socket and the log; removed by Stop
	socket string // directory of the Unix socket (the superuser connects there without a password)
	log    string // the server's output
	opts   Options
	cred   *syscall.Credential // the postgres user's, when running as root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been waited for
}

// BinDir is the directory of initdb and postgres: $LOOM_PG_BIN, or the
// directory of an initdb on the PATH, or the newest
// /usr/lib/postgresql/<version>/bin (where Debian puts them).
func BinDir() (string, error) {
	if d := os.Getenv("LOOM_PG_BIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found on the PATH nor in /usr/lib/postgresql/*/bin (run scripts/ensure-postgres, which installs Debian's postgresql package)")
}

// version is the major version in a /usr/lib/postgresql/<version>/bin path.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// The shared server and the initialised data directory, both kept by Main.
var (
	shared  *sharedserver.Server[*Server] // set by init: start refers to it
	templMu sync.Mutex
	templ   string // an initialised data directory, copied for each server
)

func init() {
	shared = sharedserver.New("pgtest", func() (*Server, error) { return start(Options{}) }, (*Server).Stop)
}

// Main runs the tests of m and then stops the shared server and removes
// the initialised data directory kept for copies. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// It returns m.Run's exit code (which the testing package exits with when
// TestMain returns).
func Main(m *testing.M) int {
	code := shared.Around(m.Run)
	templMu.Lock()
	if templ != "" {
		_ = os.RemoveAll(filepath.Dir(templ))
	}
	templMu.Unlock()
	return code
}

// Shared returns the test binary's shared server, starting it on the
// first call. It needs Main in TestMain (which stops it). If it cannot
// start, every test that asks for it fails with the reason.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Get(t)
}

var names atomic.Uint64

// CreateDatabase creates an empty database on s and returns its name,
// unique in the test binary. It is not dropped: the server is thrown away.
func (s *Server) CreateDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), names.Add(1))
	c := s.Conn(t, "postgres")
	if _, err := c.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return name
}

// ConnString is a keyword/value connection string for database db on s,
// over TCP, TLS off.
func (s *Server) ConnString(db string) string {
	cs := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.Host, s.Port, s.User, db)
	if s.Password != "" {
		cs += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s.Password) + "'"
	}
	return cs
}

// Conn returns a connection to database db on s, as the superuser, over
// the server's Unix socket (no password needed), closed when t ends.
func (s *Server) Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	c, err := s.socketConn(t.Context(), db)
	if err != nil {
		t.Fatalf("pgtest: connect to %s on %s: %v", db, s.Addr(), err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func (s *Server) socketConn(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s", s.socket, s.Port, s.User, db))
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Kill crashes the server: SIGKILL to the postmaster and all its children
// at once. It waits for the postmaster to exit. Killing a stopped server
// does nothing.
func (s *Server) Kill() {
	if s.signal(syscall.SIGKILL) {
		s.freeSharedMemory()
	}
}

// freeSharedMemory removes the System V shared memory segment a killed
// server leaves behind (postmaster.pid names it). A restart would reclaim
// it, but a server killed for good would leave it to the machine until
// it reboots. Removing it while a dying child still has it attached is
// safe: it goes when the last one detaches.
func (s *Server) freeSharedMemory() {
	b, err := os.ReadFile(filepath.Join(s.Dir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	f := strings.Fields(lines[6]) // "<key> <id>"
	if len(f) != 2 {
		return
	}
	if id, err := strconv.Atoi(f[1]); err == nil && id >= 0 {
		const ipcRmid = 0
		_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRmid, 0)
	}
}

// Pause stops every process of the server (SIGSTOP to each):
// connections stay open and nothing answers, as with a server that hangs
// or a network that drops everything. Resume continues it.
func (s *Server) Pause() { s.signalRunning(syscall.SIGSTOP) }

// Resume continues a server after Pause.
func (s *Server) Resume() { s.signalRunning(syscall.SIGCONT) }

func (s *Server) signalRunning(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		signalAll(s.cmd.Process.Pid, sig)
	}
}

// signalAll sends sig to the postmaster pid and to every child of its.
// Each backend calls setsid, so they are not in the postmaster's process
// group; the postmaster is stopped first so that it forks no new one
// meanwhile (and, for SIGCONT, continued last).
func signalAll(pid int, sig syscall.Signal) {
	if sig != syscall.SIGCONT {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	for _, c := range children(pid) {
		_ = syscall.Kill(c, sig)
	}
	_ = syscall.Kill(pid, sig)
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// Restart starts the server again after Kill, on the same port and data
// directory: PostgreSQL recovers from its write-ahead log, so it holds
// every transaction it acknowledged.
func (s *Server) Restart() error {
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// A killed server's children may hold its shared memory a moment
		// after the postmaster is gone; postgres refuses to start until
		// they have let go, and says so.
		if err = s.run(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // retry interval for a condition with a deadline
	}
	return fmt.Errorf("restart: %w", err)
}

// Stop shuts the server down as pg_ctl stop -m immediate does and removes
// its directory. Stop may be called more than once.
func (s *Server) Stop() {
	s.signal(syscall.SIGQUIT)
	_ = os.RemoveAll(s.root)
}

// signal stops the server with sig and waits for the postmaster to exit;
// it reports whether the server was running.
func (s *Server) signal(sig syscall.Signal) bool {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return false
	}
	if sig == syscall.SIGKILL {
		signalAll(cmd.Process.Pid, sig)
	} else {
		signalAll(cmd.Process.Pid, syscall.SIGCONT) // if paused
		_ = cmd.Process.Signal(sig)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		signalAll(cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return true
}

// start makes a data directory and starts a server on it.
func start(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: User, Password: opts.Password, opts: opts}
	if os.Geteuid() == 0 {
		if s.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if s.root, err = s.mkdir(""); err != nil {
		return nil, err
	}
	s.Dir = filepath.Join(s.root, "data")
	s.socket = s.root
	s.log = filepath.Join(s.root, "server.log")
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(s.root)
		}
	}()
	if err := s.initData(bin); err != nil {
		return nil, err
	}
	if err := s.writeHBA(); err != nil {
		return nil, err
	}
	for range 5 { // a free port can be taken between the probe and the bind
		if s.Port, err = ports.FreeLoopback(); err != nil {
			return nil, err
		}
		if err = s.run(); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if opts.Password != "" {
		if err := s.setPassword(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// postgresUser is the credential of the "postgres" user.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses root: no postgres user to run it as (scripts/ensure-postgres installs the package that creates it): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user: uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// mkdir makes a temp directory the server's user owns (under parent, or
// the temp directory when parent is "").
func (s *Server) mkdir(parent string) (string, error) {
	d, err := os.MkdirTemp(parent, "loom-pg-")
	if err != nil {
		return "", err
	}
	if s.cred != nil {
		if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			_ = os.RemoveAll(d)
			return "", err
		}
	}
	return d, nil
}

// command is an exec.Cmd of one of the server's programs, as the server's
// user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	bin, _ := BinDir() // checked by start
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if s.cred != nil {
		cmd.Dir = s.root // a directory the user may enter
	}
	return cmd
}

// initData fills s.Dir: a copy of the binary's initialised data directory
// (made on first use) when Main runs, else a fresh initdb.
func (s *Server) initData(bin string) error {
	if !shared.Running() {
		return s.initdb(s.Dir)
	}
	templMu.Lock()
	defer templMu.Unlock()
	if templ == "" {
		d, err := s.mkdir("")
		if err != nil {
			return err
		}
		if err := s.initdb(filepath.Join(d, "data")); err != nil {
			_ = os.RemoveAll(d)
			return err
		}
		templ = filepath.Join(d, "data")
	}
	// cp -a keeps the owner (the postgres user) and modes initdb gave.
	if out, err := exec.Command("cp", "-a", templ, s.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the initialised data directory: %v: %s", err, out)
	}
	return nil
}

// initdb initialises a data directory. It does not fsync what it writes
// (--no-sync): the cluster is thrown away with the machine's page cache
// intact; the server itself runs with fsync on.
func (s *Server) initdb(dir string) error {
	cmd := s.command("initdb", "-D", dir, "-U", User, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// writeHBA writes the server's pg_hba.conf: the superuser is trusted on
// the Unix socket; TCP from 127.0.0.1 is trusted, or needs the password.
func (s *Server) writeHBA() error {
	method := "trust"
	if s.opts.Password != "" {
		method = "scram-sha-256"
	}
	hba := "local all all trust\nhost all all 127.0.0.1/32 " + method + "\n"
	path := filepath.Join(s.Dir, "pg_hba.conf")
	if err := os.WriteFile(path, []byte(hba), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

func (s *Server) setPassword() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.socketConn(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	defer c.Close(ctx)
	pw := strings.ReplaceAll(s.opts.Password, "'", "''")
	if _, err := c.Exec(ctx, "ALTER ROLE "+User+" PASSWORD '"+pw+"'"); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

// readyLine is what the postmaster logs once it accepts connections.
const readyLine = "database system is ready to accept connections"

// run starts the postmaster on s.Dir and s.Port and waits until it logs
// that it is ready, or exits, or 30 s pass.
func (s *Server) run() error {
	cmd := s.command("postgres", "-D", s.Dir, "-p", strconv.Itoa(s.Port), "-k", s.socket,
		"-c", "listen_addresses="+s.Host,
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
		"-c", "logging_collector=off", "-c", "log_destination=stderr",
		"-c", "shared_buffers=32MB", "-c", "max_connections=200",
	)
	// Out of the test's process group (a Ctrl-C of the test is for the
	// test; cleanup stops the server); SIGKILL from the kernel if this
	// process dies.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		logf.Close()
		pr.Close()
		pw.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	pw.Close()
	ready := make(chan struct{})
	copied := make(chan struct{})
	go func() { // copies the output to the log, and sees the ready line
		defer close(copied)
		defer logf.Close()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !seen && strings.Contains(line, readyLine) {
				seen = true
				close(ready)
			}
		}
		_, _ = io.Copy(logf, pr)
	}()
	exited := make(chan struct{}) // the postmaster is gone
	done := make(chan struct{})   // and its output is copied
	go func() {
		_ = cmd.Wait() // output goes to a pipe (an *os.File): this waits for the postmaster alone
		close(exited)
		<-copied // its children may hold the pipe a moment longer
		close(done)
	}()
	select {
	case <-ready:
		s.mu.Lock()
		s.cmd, s.done = cmd, done
		s.mu.Unlock()
		return nil
	case <-exited:
	case <-time.After(30 * time.Second):
	}
	signalAll(cmd.Process.Pid, syscall.SIGKILL)
	<-done
	log, _ := os.ReadFile(s.log)
	return fmt.Errorf("postgres on %s did not become ready:\n%s", s.Addr(), tailOf(log, 2000))
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
