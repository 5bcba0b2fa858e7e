package rabbitmqtest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
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

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/internal/ports"
	"github.com/loom-mesh/loom/internal/sharedserver"
)

// User is the administrator of every broker rabbitmqtest starts.
const User = "loom"

// StartTimeout bounds how long a broker may take to accept an AMQP
// connection after it is started.
const StartTimeout = 60 * time.Second

// Server is one RabbitMQ broker and its epmd. Kill, Restart and Stop may be
// called from one goroutine at a time.
type Server struct {
	Host     string // "127.0.0.1"
	Port     int    // AMQP
	User     string // User
	Password string // random, per server
	Node     string // Erlang node name, loomtest-<port>@localhost
	DistPort int    // Erlang distribution
	EPMDPort int
	Dir      string // holds the data (mnesia), logs and configuration

	log string // the broker's output

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited and been waited for
	epmd     *exec.Cmd
	epmdDone chan struct{}
}

// Binary is the rabbitmq-server script to run: $LOOM_RABBITMQ_SERVER, or
// Debian's /usr/lib/rabbitmq/bin/rabbitmq-server (the one in /usr/sbin is
// a wrapper that switches to the rabbitmq user and redirects the output),
// or rabbitmq-server on the PATH.
func Binary() (string, error) { return find("LOOM_RABBITMQ_SERVER", "rabbitmq-server") }

// Ctl is the rabbitmqctl to run, found as Binary is ($LOOM_RABBITMQCTL).
func Ctl() (string, error) { return find("LOOM_RABBITMQCTL", "rabbitmqctl") }

func find(env, name string) (string, error) {
	if b := os.Getenv(env); b != "" {
		return b, nil
	}
	if p := "/usr/lib/rabbitmq/bin/" + name; isExec(p) {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in /usr/lib/rabbitmq/bin nor on the PATH (run scripts/ensure-rabbitmq, which installs Debian's rabbitmq-server)", name)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// epmdBinary is the epmd of the Erlang installation.
func epmdBinary() (string, error) {
	if p, err := exec.LookPath("epmd"); err == nil {
		return p, nil
	}
	if m, _ := filepath.Glob("/usr/lib/erlang/erts-*/bin/epmd"); len(m) > 0 {
		return m[len(m)-1], nil
	}
	return "", errors.New("epmd not found (it comes with Erlang: run scripts/ensure-rabbitmq)")
}

// Start starts a broker for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("rabbitmqtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// shared is the test binary's shared broker.
var shared = sharedserver.New("rabbitmqtest", start, (*Server).Stop)

// Main runs the tests of m, then stops the shared broker. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(rabbitmqtest.Main(m)) }
func Main(m *testing.M) int { return shared.Around(m.Run) }

// Around is Main for a package whose TestMain has another such wrapper
// (pgtest.Main, say): it runs run (which runs the tests) and then stops
// the shared broker.
//
//	func TestMain(m *testing.M) { os.Exit(rabbitmqtest.Around(func() int { return pgtest.Main(m) })) }
func Around(run func() int) int { return shared.Around(run) }

// Shared returns the test binary's shared broker, starting it on the first
// call. It needs Main in TestMain (which stops it). If it cannot start,
// every test that asks for it fails with the reason.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Get(t)
}

var names atomic.Uint64

// Name returns a name unique in the test binary, to prefix a test's
// exchanges and queues on a shared broker.
func Name() string { return fmt.Sprintf("t%d_%d", os.Getpid(), names.Add(1)) }

// URL is the AMQP URL of the broker's default virtual host, with the
// password in it.
func (s *Server) URL() string { return s.VHostURL("/") }

// VHostURL is the AMQP URL of virtual host vhost.
func (s *Server) VHostURL(vhost string) string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(s.User, s.Password), Host: s.Addr(), Path: "/"}
	if vhost != "/" {
		u.Path += vhost
		u.RawPath = "/" + url.PathEscape(vhost)
	}
	return u.String() // path "/": the default virtual host
}

// Addr is the broker's AMQP host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// VHost creates a virtual host of its own for t, gives User every
// permission on it, and returns its AMQP URL. It is not deleted: the broker
// is thrown away.
func (s *Server) VHost(t testing.TB) string {
	t.Helper()
	name := Name()
	if out, err := s.Ctl("add_vhost", name); err != nil {
		t.Fatalf("rabbitmqtest: add_vhost %s: %v\n%s", name, err, out)
	}
	if out, err := s.Ctl("set_permissions", "-p", name, s.User, ".*", ".*", ".*"); err != nil {
		t.Fatalf("rabbitmqtest: set_permissions %s: %v\n%s", name, err, out)
	}
	return s.VHostURL(name)
}

// Ctl runs rabbitmqctl against the broker and returns its output.
func (s *Server) Ctl(args ...string) (string, error) {
	ctl, err := Ctl()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(ctl, append([]string{"-n", s.Node, "-q"}, args...)...)
	cmd.Env = s.env()
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Pids returns the process ids of the broker's VM, its helpers and its
// epmd, those that are running (for tests that check nothing outlives a
// broker).
func (s *Server) Pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, c := range []*exec.Cmd{s.cmd, s.epmd} {
		if c != nil && c.Process != nil {
			out = append(out, c.Process.Pid)
			out = append(out, descendants(c.Process.Pid)...)
		}
	}
	return out
}

// Kill crashes the broker: SIGKILL to the VM and its helpers at once. Its
// epmd keeps running. Killing a stopped broker does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	killTree(cmd, done)
}

// Restart starts the broker again after Kill, on the same node name, ports
// and data directory, waits until it accepts AMQP connections, then
// ElectQuorumLeaders.
func (s *Server) Restart() error {
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// The ports of the killed VM may take a moment to be free.
		if err = s.run(); err == nil {
			return s.ElectQuorumLeaders()
		}
		time.Sleep(100 * time.Millisecond) // retry interval for a condition with a deadline
	}
	return fmt.Errorf("restart: %w", err)
}

// ElectQuorumLeaders asks every quorum queue of the broker to hold an
// election (ra:trigger_election on each registered member).
//
// Why: on this single-node RabbitMQ 3.10.8 (Erlang 25), a quorum queue
// declared less than a few seconds before the VM is killed comes back as a
// follower after the restart and never elects itself (seen: still no
// leader after 65 s; every basic.get and publish to it times out), and,
// once elected, without the messages it had confirmed. A queue declared 5 s
// before the kill keeps them all and recovers on its own. Restart calls
// this so that a crash test is not stuck on that defect; crash tests
// should still let a new queue settle for 5 s before killing the broker.
func (s *Server) ElectQuorumLeaders() error {
	out, err := s.Ctl("eval", "[catch ra:trigger_election({S, node()}) || {S, _} <- ra_directory:list_registered(quorum_queues)].")
	if err != nil {
		return fmt.Errorf("trigger quorum queue elections: %v: %s", err, out)
	}
	return nil
}

// Stop kills the broker and its epmd, waits for them and removes the
// directory. It may be called more than once.
func (s *Server) Stop() {
	s.Kill()
	s.mu.Lock()
	epmd, done := s.epmd, s.epmdDone
	s.epmd = nil
	s.mu.Unlock()
	killTree(epmd, done)
	_ = os.RemoveAll(s.Dir)
}

// killTree sends SIGKILL to cmd's process group and every descendant of
// cmd, and waits for cmd to be waited for.
func killTree(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	kids := descendants(pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	<-done
	// The helpers are reparented when the VM is gone: wait until each is
	// dead (a zombie counts as dead: nothing reaps it but its new parent).
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range kids {
		for Alive(k) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // poll with a deadline
		}
	}
}

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

// descendants lists the live descendants of pid.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				parent[n] = pp
			}
		}
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		p := frontier[0]
		frontier = frontier[1:]
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				frontier = append(frontier, c)
			}
		}
	}
	return out
}

// start makes a directory, starts an epmd and a broker.
func start() (*Server, error) {
	if _, err := Binary(); err != nil {
		return nil, err
	}
	if _, err := epmdBinary(); err != nil {
		return nil, err
	}
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	s := &Server{Host: "127.0.0.1", User: User, Password: hex.EncodeToString(pw)}
	var err error
	if s.Dir, err = os.MkdirTemp("", "loom-rabbitmq-"); err != nil {
		return nil, err
	}
	s.log = filepath.Join(s.Dir, "broker.log")
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	for attempt := 0; ; attempt++ { // a free port can be taken between the probe and the bind
		free, err := ports.Free("127.0.0.1", 3)
		if err != nil {
			return nil, err
		}
		s.Port, s.DistPort, s.EPMDPort = free[0], free[1], free[2]
		s.Node = fmt.Sprintf("loomtest-%d@localhost", s.Port)
		if err = s.writeConfig(); err != nil {
			return nil, err
		}
		if err = s.startEPMD(); err == nil {
			if err = s.run(); err == nil {
				break
			}
		}
		s.mu.Lock()
		epmd, done := s.epmd, s.epmdDone
		s.epmd = nil
		s.mu.Unlock()
		killTree(epmd, done)
		if attempt == 2 {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// writeConfig writes the broker's configuration, environment file and
// (empty) plugin list.
func (s *Server) writeConfig() error {
	conf := strings.Join([]string{
		"listeners.tcp.1 = " + s.Addr(),
		"default_user = " + s.User,
		"default_pass = " + s.Password,
		"default_vhost = /",
		"default_permissions.configure = .*",
		"default_permissions.read = .*",
		"default_permissions.write = .*",
		"loopback_users = none",
		"log.console = true",
		"log.console.level = info",
		"log.file = false",
		"disk_free_limit.absolute = 1MB",
		"",
	}, "\n")
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"advanced.config":   "[].\n",
		"enabled_plugins":   "[].\n",
		"rabbitmq-env.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// env is the environment of the broker and of rabbitmqctl.
func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+s.Dir, // the Erlang cookie is kept there
		"LC_ALL=C.UTF-8", "LANG=C.UTF-8",
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT="+strconv.Itoa(s.EPMDPort),
		"RABBITMQ_NODENAME="+s.Node,
		"RABBITMQ_NODE_IP_ADDRESS="+s.Host,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(s.Port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(s.DistPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(s.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(s.Dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(s.Dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(s.Dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(s.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(s.Dir, "enabled_plugins"),
		"RABBITMQ_PLUGINS_EXPAND_DIR="+filepath.Join(s.Dir, "plugins-expand"),
		"RABBITMQ_PID_FILE="+filepath.Join(s.Dir, "broker.pid"),
		// The distribution listens on loopback only.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		// Makes the script exec the VM instead of running it as a child
		// of a shell that traps signals: the started process is the VM.
		// Its shell reads a standard input that never sends anything.
		"RABBITMQ_ALLOW_INPUT=1",
	)
}

// startEPMD starts the broker's own epmd on s.EPMDPort and waits until it
// accepts connections.
func (s *Server) startEPMD() error {
	bin, err := epmdBinary()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-address", "127.0.0.1", "-port", strconv.Itoa(s.EPMDPort))
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.epmd, s.epmdDone = cmd, done
	s.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.EPMDPort))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("epmd on %s exited: %w", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("epmd on %s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // poll with a deadline
	}
}

// run starts the broker on s.Dir and waits until it accepts an AMQP
// connection, or exits, or StartTimeout passes.
func (s *Server) run() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Env = s.env()
	cmd.Dir = s.Dir
	// Out of the test's process group (a Ctrl-C of the test is for the
	// test; cleanup stops the broker); SIGKILL from the kernel if this
	// process dies (kept across the execs down to beam.smp).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	stdin, err := cmd.StdinPipe() // never written: the VM's shell waits on it
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rabbitmq-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = stdin.Close()
		close(done)
	}()
	deadline := time.Now().Add(StartTimeout)
	for {
		c, err := amqp.DialConfig(s.URL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err == nil {
			_ = c.Close()
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("rabbitmq-server (node %s, port %d) exited:\n%s", s.Node, s.Port, s.tail())
		default:
		}
		if time.Now().After(deadline) {
			killTree(cmd, done)
			return fmt.Errorf("rabbitmq-server (node %s, port %d) accepted no AMQP connection in %v (%v):\n%s", s.Node, s.Port, StartTimeout, err, s.tail())
		}
		time.Sleep(50 * time.Millisecond) // poll with a deadline
	}
}

// tail is the end of the broker's output, with the password masked.
func (s *Server) tail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	out := strings.ReplaceAll(string(b), s.Password, "****")
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines, "\n")
}
