package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/loom-mesh/loom/internal/pgtest"
)

var binPath string

// TestMain builds loom-node once; the tests run it as real processes.
// PostgreSQL's data directory is initialised once too (pgtest.Main).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loom-node-test")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "loom-node")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	exited chan struct{}
}

var servingRE = regexp.MustCompile(`serving http://(\S+)`)

// startNode runs `loom-node dev` and waits for its "serving" line.
func startNode(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"dev", "--data-dir", dataDir, "--http-port", "0"}, extra...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=")
	stdout, _ := cmd.StdoutPipe()
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	select {
	case line := <-lines:
		m := servingRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		p.addr = m[1]
	case <-p.exited:
		t.Fatalf("loom-node exited before serving: %s", p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("loom-node did not print its address in 30s")
	}
	return p
}

func (p *proc) call(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestKill9KeepsAcknowledgedIncrements(t *testing.T) {
	data := t.TempDir()
	p := startNode(t, data)
	for i := 1; i <= 3; i++ {
		code, body := p.call(t, "/v1/actors/counter/c1/add", `{"delta":1}`)
		if code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p2 := startNode(t, data)
	code, body := p2.call(t, "/v1/actors/counter/c1/get", `{}`)
	if code != 200 || body != `{"value":3}` {
		t.Fatalf("after kill -9: %d %s, want {\"value\":3}", code, body)
	}
	// Writes continue after recovery (the new fencing token is higher).
	if code, body := p2.call(t, "/v1/actors/counter/c1/add", `{"delta":1}`); code != 200 || body != `{"value":4}` {
		t.Fatalf("add after recovery: %d %s", code, body)
	}
}

// callKeyed posts body with an Idempotency-Key header.
func (p *proc) callKeyed(t *testing.T, path, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+p.addr+path, strings.NewReader(body))
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// A request sent twice with the same Idempotency-Key runs once and gets
// the same answer, also when the node was killed -9 in between.
func TestIdempotencyKeySurvivesKill9(t *testing.T) {
	data := t.TempDir()
	p := startNode(t, data)
	if code, body := p.call(t, "/v1/actors/counter/c1/add", `{"delta":10}`); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	code1, body1 := p.callKeyed(t, "/v1/actors/counter/c1/add", "order-42", `{"delta":1}`)
	if code1 != 200 || body1 != `{"value":11}` {
		t.Fatalf("keyed add: %d %s", code1, body1)
	}
	if code, body := p.callKeyed(t, "/v1/actors/counter/c1/add", "order-42", `{"delta":1}`); code != code1 || body != body1 {
		t.Fatalf("the same key again: %d %s; first %d %s", code, body, code1, body1)
	}
	codeBad, bodyBad := p.callKeyed(t, "/v1/actors/counter/c1/add", "bad-1", `{"delta":"x"}`)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p2 := startNode(t, data)
	if code, body := p2.callKeyed(t, "/v1/actors/counter/c1/add", "order-42", `{"delta":1}`); code != code1 || body != body1 {
		t.Fatalf("the key after kill -9: %d %s; first %d %s", code, body, code1, body1)
	}
	if code, body := p2.call(t, "/v1/actors/counter/c1/get", ``); code != 200 || body != `{"value":11}` {
		t.Fatalf("after kill -9 and the retry: %d %s, want {\"value\":11}", code, body)
	}
	// A payload that did not decode never reached the actor: nothing was
	// recorded, and the same key with a good payload runs.
	if codeBad != 400 {
		t.Fatalf("bad payload: %d %s", codeBad, bodyBad)
	}
	if code, body := p2.callKeyed(t, "/v1/actors/counter/c1/add", "bad-1", `{"delta":1}`); code != 200 || body != `{"value":12}` {
		t.Fatalf("the key of a refused payload, with a good one: %d %s", code, body)
	}
	long := strings.Repeat("k", 257)
	if code, body := p2.callKeyed(t, "/v1/actors/counter/c1/add", long, `{"delta":1}`); code != 400 || !strings.Contains(body, "invalid_idempotency_key") {
		t.Fatalf("a 257-byte key: %d %s", code, body)
	}
}

func TestSIGTERMShutsDownCleanly(t *testing.T) {
	data := t.TempDir()
	p := startNode(t, data)
	if code, body := p.call(t, "/v1/actors/kv/k/put", `{"key":"a","value":1}`); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
	p2 := startNode(t, data)
	if code, body := p2.call(t, "/v1/actors/kv/k/get", `{"key":"a"}`); body != `{"value":1,"found":true}` {
		t.Fatalf("after restart: %d %s", code, body)
	}
}

func TestSecondNodeOnSameDataDirFailsClearly(t *testing.T) {
	data := t.TempDir()
	startNode(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "dev", "--data-dir", data, "--http-port", "0").CombinedOutput()
	if err == nil {
		t.Fatal("second node on the same data dir started")
	}
	if ctx.Err() != nil {
		t.Fatal("second node hung instead of failing")
	}
	if want := filepath.Join(data, "raft", "wal"); !strings.Contains(string(out), want) || !strings.Contains(string(out), "locked") {
		t.Fatalf("error does not name the locked Raft log %s:\n%s", want, out)
	}
}

func TestInvalidConfigListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loom.config.yaml")
	cfg := "node:\n  httpPort: -1\n  bogus: 1\njournal:\n  backend: floppy\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"config", "validate", path}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	for _, want := range []string{":2: node.httpPort", ":3: node.bogus", ":5: journal.backend"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("missing %q in:\n%s", want, stderr.String())
		}
	}
	// And the node refuses to start with it, with a non-zero exit.
	out, err := exec.Command(binPath, "dev", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "journal.backend") {
		t.Fatalf("dev with an invalid config: %v\n%s", err, out)
	}
}

func TestCallCommand(t *testing.T) {
	p := startNode(t, t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := run([]string{"call", "--addr", p.addr, "counter/c9", "add", `{"delta":5}`}, &stdout, &stderr); code != 0 {
		t.Fatalf("call: exit %d: %s", code, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != `{"value":5}` {
		t.Fatalf("call printed %q", got)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"call", "--addr", p.addr, "counter/c9", "nope"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "unknown_method") {
		t.Fatalf("unknown method: exit %d, %s", code, stderr.String())
	}
}

// `call` pointed at a gRPC port (a real gRPC server on loopback) says so,
// rather than only quoting the HTTP/2 bytes it got back.
func TestCallCommandAtAGRPCPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	var stdout, stderr bytes.Buffer
	code := run([]string{"call", "--addr", ln.Addr().String(), "--timeout", "5s", "counter/c9", "get"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "a gRPC port?") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestConfigPrintRedactsSecretsAndAppliesFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loom.config.yaml")
	cfg := "tracing:\n  otlpHeaders:\n    authorization: Bearer ${LOOM_TEST_TOKEN:-s3cret}\nnode:\n  httpPort: 9000\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"config", "print", "--config", path, "--http-port", "9100"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "[redacted]") {
		t.Fatalf("secret not redacted:\n%s", out)
	}
	if !strings.Contains(out, "httpPort: 9100") {
		t.Fatalf("flag did not override the file:\n%s", out)
	}
}

// A node waiting for its Raft cluster (bootstrapExpect 2, and no second
// node comes) still stops on SIGTERM, closing what it had opened.
func TestSIGTERMWhileWaitingForTheCluster(t *testing.T) {
	data := t.TempDir()
	cmd := exec.Command(binPath, "run", "--node-id", "lonely", "--data-dir", data,
		"--http-port", "0", "--grpc-port", "0", "--raft-port", "0", "--gossip-port", "0",
		"--bootstrap-expect", "2", "--gossip", "local")
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var logs bytes.Buffer
	waiting := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "waiting for a Raft leader") {
				once = true
				close(waiting)
			}
		}
	}()
	select {
	case <-waiting:
	case <-scanned:
		t.Fatalf("loom-node exited before waiting for the cluster:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("loom-node did not log that it waits for a Raft leader in 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30s after SIGTERM while starting:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "while starting: stopping") {
		t.Fatalf("no word of the interrupted start:\n%s", logs.String())
	}
	// It released its data dir: a node can start on it now.
	startNode(t, data)
}
