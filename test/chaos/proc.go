package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/loom-node into dir and returns the binary's path. It
// runs the go command found on PATH (go test puts its own first), so the
// binary is built from the same module and toolchain as the test. race
// builds it with the race detector.
func Build(ctx context.Context, dir string, race bool) (string, error) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("chaos: no go command on PATH: %w", err)
	}
	bin := filepath.Join(dir, "loom-node")
	// The chaos hook and the unsafe modes are built in only with the
	// loomchaos tag; a default loom-node refuses their flags.
	args := []string{"build", "-tags", "loomchaos", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/loom-mesh/loom/cmd/loom-node")
	out, err := exec.CommandContext(ctx, gotool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("chaos: building loom-node: %w\n%s", err, out)
	}
	return bin, nil
}

// NodeState is what the harness did to a node last.
type NodeState int

// Node states.
const (
	Down NodeState = iota
	Running
	Paused
)

func (s NodeState) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	default:
		return "down"
	}
}

// Node is one loom-node process of a cluster. Its ports and data dir stay
// the same across restarts, so a restarted node comes back as the same Raft
// server and gossip member. Its stdout and stderr, across every start, go
// to one log file.
type Node struct {
	ID                           string
	IP                           string // its own loopback address
	HTTPPort, GRPCPort, RaftPort int
	GossipPort                   int
	DataDir                      string
	LogPath                      string
	EventsPath                   string // the activation log

	bin    string
	args   []string
	cfg    string               // its config file
	scheme string               // of its HTTP port: https in a secure cluster, else http (or "")
	clock  func() time.Duration // time since the run started, for log markers

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	state  NodeState
	starts int
	deaths []time.Time // when a process of this node was killed or stopped
}

// HTTPAddr is the node's gateway address (host:port).
func (n *Node) HTTPAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.HTTPPort)) }

// URL is path on the node's HTTP port: https:// in a secure cluster, else
// http://.
func (n *Node) URL(path string) string {
	scheme := n.scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + n.HTTPAddr() + path
}

// GRPCAddr is the node's gRPC address.
func (n *Node) GRPCAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.GRPCPort)) }

// GossipAddr is the node's gossip address.
func (n *Node) GossipAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.GossipPort)) }

// State reports what the harness last did to the node.
func (n *Node) State() NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// PID is the running process's id (0 when down).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.state == Down {
		return 0
	}
	return n.cmd.Process.Pid
}

// Start runs the process (it must be down). It does not wait for health.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != Down {
		return fmt.Errorf("chaos: %s: start while %s", n.ID, n.state)
	}
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy
	n.starts++
	fmt.Fprintf(f, "=== chaos: %s start #%d at +%.3fs: %s %v\n", n.ID, n.starts, n.clock().Seconds(), n.bin, n.args)
	cmd := exec.Command(n.bin, n.args...)
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=")
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: if the test process dies (a go test timeout panics), its
	// nodes die with it instead of running on as orphans.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: starting %s: %w", n.ID, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited, n.state = cmd, exited, Running
	return nil
}

// Exited is closed when the current process exits (nil before the first
// start).
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// signal sends sig to the current process.
func (n *Node) signal(sig syscall.Signal, want NodeState, next NodeState) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != want {
		return fmt.Errorf("chaos: %s: %v while %s", n.ID, sig, n.state)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("chaos: %s: %v: %w", n.ID, sig, err)
	}
	n.state = next
	return nil
}

// Pause stops the process with SIGSTOP.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, Running, Paused) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, Paused, Running) }

// Kill sends SIGKILL (no graceful leave) and waits for the process to be
// gone. A paused process dies too.
func (n *Node) Kill(ctx context.Context) error {
	n.mu.Lock()
	if n.state == Down {
		n.mu.Unlock()
		return nil
	}
	err := n.cmd.Process.Signal(syscall.SIGKILL)
	exited := n.exited
	n.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: %s: kill: %w", n.ID, err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return fmt.Errorf("chaos: %s: not gone after SIGKILL: %w", n.ID, ctx.Err())
	}
	n.mu.Lock()
	n.state = Down
	n.deaths = append(n.deaths, time.Now())
	n.mu.Unlock()
	return nil
}

// Deaths lists when the node's processes ended (killed or stopped).
func (n *Node) Deaths() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.deaths)
}

// Terminate stops the process gracefully (SIGTERM: it leaves the
// cluster) and waits for it to exit, killing it if ctx ends first.
func (n *Node) Terminate(ctx context.Context) error {
	n.mu.Lock()
	if n.state == Down {
		n.mu.Unlock()
		return nil
	}
	if n.state == Paused {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
	}
	err := n.cmd.Process.Signal(syscall.SIGTERM)
	exited := n.exited
	n.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: %s: terminate: %w", n.ID, err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		_ = n.Kill(context.WithoutCancel(ctx))
		return fmt.Errorf("chaos: %s: no exit after SIGTERM: %w", n.ID, ctx.Err())
	}
	n.mu.Lock()
	n.state = Down
	n.deaths = append(n.deaths, time.Now())
	n.mu.Unlock()
	return nil
}

// Wipe removes the node's data dir (it must be down): it restarts as a
// brand-new node under the same id.
func (n *Node) Wipe() error {
	if s := n.State(); s != Down {
		return fmt.Errorf("chaos: %s: wipe while %s", n.ID, s)
	}
	return os.RemoveAll(n.DataDir)
}

// Healthy reports whether GET /health answers 200.
func (n *Node) Healthy(ctx context.Context, hc *http.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL("/health"), nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitHealthy polls /health until it answers 200, the process exits, or
// ctx ends.
func (n *Node) WaitHealthy(ctx context.Context, hc *http.Client) error {
	exited := n.Exited()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.Healthy(ctx, hc) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("chaos: %s exited before it was healthy (log %s)", n.ID, n.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("chaos: %s not healthy: %w (log %s)", n.ID, ctx.Err(), n.LogPath)
		case <-tick.C:
		}
	}
}
