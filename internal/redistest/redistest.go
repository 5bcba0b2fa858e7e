// Package redistest starts throwaway redis-server processes for tests: a
// real server (Debian's redis-server, installed by scripts/ensure-redis),
// on a free loopback port, with its own data directory, durable
// (appendonly yes, appendfsync always) unless asked otherwise. A test that
// needs one fails, never skips, when the server cannot start. Each server
// is killed when its test ends.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/internal/ports"
)

// Options configure a server.
type Options struct {
	// FsyncEverySec sets appendfsync everysec instead of always.
	FsyncEverySec bool
	// Password, when set, is required of clients (requirepass).
	Password string
}

// Server is one redis-server process. Kill and Start may be called from
// the test goroutine only.
type Server struct {
	Addr string // host:port on 127.0.0.1
	Dir  string // its data directory (the append-only files)

	opts Options
	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary is the redis-server to run: $LOOM_REDIS_SERVER, or redis-server
// on the PATH.
func Binary() (string, error) {
	if b := os.Getenv("LOOM_REDIS_SERVER"); b != "" {
		return b, nil
	}
	b, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found (run scripts/ensure-redis, which installs Debian's package): %w", err)
	}
	return b, nil
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, t: t, Dir: t.TempDir()}
	var err error
	for range 5 { // a free port can be taken between the probe and the bind
		if s.Addr, err = freePort(); err != nil {
			break
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

// Restart starts the server again after Kill, on the same address and data
// directory: it loads what its append-only file holds.
func (s *Server) Restart() {
	s.t.Helper()
	var err error
	for range 50 { // the killed process's port may linger a moment
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

// Kill kills the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Client returns a go-redis client of the server, closed when the test
// ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.opts.Password})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	fsync := "always"
	if s.opts.FsyncEverySec {
		fsync = "everysec"
	}
	args := []string{
		"--bind", "127.0.0.1", "--port", port, "--dir", s.Dir,
		"--appendonly", "yes", "--appendfsync", fsync, "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitReady(s.Addr, s.opts.Password, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
		return fmt.Errorf("redis-server on %s: %w\n%s", s.Addr, err, log)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// waitReady waits until the server answers PING, it exits, or 10 s pass.
func waitReady(addr, password string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING: %w", err)
		case <-time.After(5 * time.Millisecond): // poll: the server says nothing when it is ready
		}
	}
}

func freePort() (string, error) {
	p, err := ports.FreeLoopback()
	return "127.0.0.1:" + strconv.Itoa(p), err
}
