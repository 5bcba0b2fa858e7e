// Package cosmostest starts throwaway Cosmos DB test servers for tests: the
// npm package @vercel/cosmosdb-server (installed by scripts/ensure-cosmos),
// run with node on a free 127.0.0.1 port. It speaks Cosmos DB's REST API
// over HTTPS with a self-signed certificate (clients must be told to accept
// it) and keeps everything in memory. A test that needs one fails, never
// skips, when the server cannot start.
//
// What the test server is not: it checks no key (any well-formed one is
// accepted), expires no TTL, runs a transactional batch as separate
// operations, keeps nothing across a restart, and reports a request charge
// that is not Cosmos DB's. It does enforce If-Match (412), create-only
// (409) and partition keys, and runs parameterised queries. Loom's
// adapters rely on nothing more.
//
// # Sharing
//
// Starting node takes a few hundred milliseconds. A test package that
// calls Main from its TestMain can use Shared: one server per test
// binary, started on first use and stopped when the tests end. Each test
// then works in a database of its own (Database). A test that stops a
// server starts its own with Start.
//
// # Stopping
//
// A server started with Start stops when its test ends; Shared's when Main
// returns. The node process is also sent SIGKILL by the kernel if the test
// process dies first (Pdeathsig).
package cosmostest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/internal/sharedserver"
)

// Key is the account key every test server is given to clients: the
// Cosmos DB emulator's published key. The test server checks none.
const Key = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJzIZxpIgRaBXd1O2uyCMSaf4y+WfvlsVzxhKkxxt/Q6w=="

// Server is one running test server.
type Server struct {
	Endpoint string // https://127.0.0.1:<port>/
	Key      string // Key
	Port     int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  strings.Builder
}

// CLI is the path of the server's command-line entry point:
// $LOOM_COSMOS_SERVER, or lib/cli.js of the package in the folder
// scripts/ensure-cosmos installs into ($LOOM_COSMOS_DIR, or
// ${XDG_CACHE_HOME:-$HOME/.cache}/loom/cosmosdb-server).
func CLI() (string, error) {
	if p := os.Getenv("LOOM_COSMOS_SERVER"); p != "" {
		return p, nil
	}
	dir := os.Getenv("LOOM_COSMOS_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no cache folder: %w", err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "loom", "cosmosdb-server")
	}
	p := filepath.Join(dir, "node_modules", "@vercel", "cosmosdb-server", "lib", "cli.js")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the Cosmos DB test server is not installed at %s (run scripts/ensure-cosmos): %w", p, err)
	}
	return p, nil
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("cosmostest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// shared is the test binary's shared server.
var shared = sharedserver.New("cosmostest", start, (*Server).Stop)

// Main runs the tests of m and then stops the shared server. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }
func Main(m *testing.M) int { return shared.Around(m.Run) }

// Around is Main for a package whose TestMain has another such wrapper
// (pgtest.Main, say): it runs run (which runs the tests) and then stops
// the shared server.
//
//	func TestMain(m *testing.M) { os.Exit(cosmostest.Around(func() int { return pgtest.Main(m) })) }
func Around(run func() int) int { return shared.Around(run) }

// Shared returns the test binary's shared server, starting it on the
// first call. It needs Main in TestMain. If it cannot start, every test
// that asks for it fails with the reason.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Get(t)
}

var names atomic.Uint64

// Database returns a database name unique in the test binary (and across
// binaries running at once). The database is not created: the adapters
// create what they need.
func Database(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("t%d-%d", os.Getpid(), names.Add(1))
}

// Stop stops the server. It may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// readyLine is what the server prints once it listens.
const readyLine = "Ready to accept HTTPS connections"

func start() (*Server, error) {
	cli, err := CLI()
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found on the PATH (install Debian's nodejs package): %w", err)
	}
	for range 5 { // a free port can be taken between the probe and the bind
		port, err := ports.FreeLoopback()
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, Key: Key, Endpoint: fmt.Sprintf("https://127.0.0.1:%d/", port)}
		if err = s.run(node, cli); err == nil {
			return s, nil
		}
		if !errors.Is(err, errExited) {
			return nil, err
		}
	}
	return nil, err
}

var errExited = errors.New("exited")

func (s *Server) run(node, cli string) error {
	cmd := exec.Command(node, cli, "--port", strconv.Itoa(s.Port), "--host", "127.0.0.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s %s: %w", node, cli, err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			if s.log.Len() < 64<<10 {
				s.log.WriteString(line + "\n")
			}
			s.mu.Unlock()
			if !seen && strings.Contains(line, readyLine) {
				seen = true
				close(ready)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		s.mu.Lock()
		s.cmd, s.done = cmd, done
		s.mu.Unlock()
		return nil
	case <-done:
		return fmt.Errorf("cosmosdb-server on port %d %w:\n%s", s.Port, errExited, s.Log())
	case <-time.After(30 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("cosmosdb-server on port %d did not become ready in 30 s:\n%s", s.Port, s.Log())
}

// Log is what the server has printed (its first 64 KiB).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}
