package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/safebuf"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// freeBase finds a --base-port whose 12 ports (3 nodes: HTTP, gRPC, Raft,
// gossip over TCP and UDP) are free on loopback now.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(20000)
		free := true
		for i := range 3 {
			for _, off := range []int{0, 100, 200, 300} {
				addr := fmt.Sprintf("127.0.0.1:%d", base+off+i)
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					free = false
					break
				}
				ln.Close()
				if off == 300 {
					pc, err := net.ListenPacket("udp", addr)
					if err != nil {
						free = false
						break
					}
					pc.Close()
				}
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestSecureCluster runs `loom-node cluster -n 3 --secure` with debug logs
// and tracing on, then the README's commands against it with its token:
// each works, and without the token each is refused. Every output of the
// run (the nodes' logs at debug level, the commands' outputs and errors,
// /health, /metrics, /v1/cluster, /traces, config print) is then searched
// for every secret of the cluster: the token, the gossip key, the private
// keys and a header secret of the config. None may appear.
func TestSecureCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "cluster")
	const otlpSecret = "otlp-header-secret-4242"
	cfgFile := filepath.Join(dir, "loom.config.yaml")
	cfg := "logging:\n  level: debug\ntracing:\n  enabled: true\n  otlpHeaders:\n    authorization: Bearer " + otlpSecret + "\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := freeBase(t)
	var out safebuf.Buffer // every output of the run
	cmd := exec.Command(binPath, "cluster", "-n", "3", "--secure", "--base-port", fmt.Sprint(base), "--data-dir", dataDir, "--config", cfgFile)
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=", envToken+"=", envTLSCA+"=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the cluster's process has exited
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	tlsDir := filepath.Join(dataDir, "tls")
	ca, cert, key := filepath.Join(tlsDir, "loom-ca.pem"), filepath.Join(tlsDir, "client-cli.pem"), filepath.Join(tlsDir, "client-cli-key.pem")
	// The files appear before the nodes start; then every node gets ready.
	var src *tlsconf.Source
	deadline := time.Now().Add(60 * time.Second)
	for src == nil {
		if s, err := tlsconf.New(tlsconf.Options{CA: ca, Cert: cert, Key: key, VerifyOutgoing: true}); err == nil {
			src = s
		} else if time.Now().After(deadline) {
			t.Fatalf("no client certificate: %v\n%s", err, out.String())
		}
		select {
		case <-exited:
			t.Fatalf("loom-node cluster exited: %v\n%s", waitErr, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig()}}
	httpAddr := func(i int) string { return fmt.Sprintf("https://127.0.0.1:%d", base+i) }
	for i := range 3 {
		for {
			resp, err := hc.Get(httpAddr(i) + "/health/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d not ready: %v\n%s", i+1, err, out.String())
			}
			select {
			case <-exited:
				t.Fatalf("loom-node cluster exited: %v\n%s", waitErr, out.String())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	tokenBytes, err := os.ReadFile(filepath.Join(tlsDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))

	// The README's commands, with the token, then without.
	env := append(os.Environ(), "LOOM_CONFIG_PATH=", envTLSCA+"="+ca, envTLSCert+"="+cert, envTLSKey+"="+key)
	runCLI := func(envTok string, args ...string) (string, error) {
		c := exec.Command(binPath, args...)
		c.Env = append(env, envToken+"="+envTok)
		b, err := c.CombinedOutput()
		// The command line is the test's, not the program's: it shows
		// where --token's value went, not the value.
		fmt.Fprintf(&out, "$ loom-node %s\n%s", strings.ReplaceAll(strings.Join(args, " "), token, "$TOKEN"), b)
		return string(b), err
	}
	addr := httpAddr(2)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "--addr", addr, "counter/c1", "add", `{"delta":2}`}, `"value":2`},
		{[]string{"call", "--addr", httpAddr(0), "counter/c1", "get"}, `"value":2`},
		{[]string{"send", "--addr", addr, "--id", "m-1", "counter/c1", "add", `{"delta":1}`}, "m-1"},
		{[]string{"members", "--addr", addr}, "node-3"},
		{[]string{"dlq", "list", "--addr", addr}, ""},
		{[]string{"keyring", "list", "--addr", addr}, "node-1"},
		{[]string{"traces", "--addr", addr, "--limit", "5"}, ""},
	} {
		got, err := runCLI(token, tc.args...)
		if err != nil || !strings.Contains(got, tc.want) {
			t.Errorf("loom-node %s with the token: %v\n%s", strings.Join(tc.args, " "), err, got)
		}
		got, err = runCLI("", tc.args...)
		if err == nil || !strings.Contains(got, "401") {
			t.Errorf("loom-node %s without a token: %v, want a 401\n%s", strings.Join(tc.args, " "), err, got)
		}
	}
	const wrongToken = "wrong-token-but-long-enough-9999"
	if got, err := runCLI(wrongToken, "call", "--addr", addr, "counter/c1", "get"); err == nil || !strings.Contains(got, "401") {
		t.Errorf("a wrong token: %v\n%s", err, got)
	}
	if got, err := runCLI("", "call", "--token", token, "--addr", addr, "counter/c1", "get"); err != nil || !strings.Contains(got, `"value"`) {
		t.Errorf("--token: %v\n%s", err, got)
	}
	// A token never goes to another machine in clear text.
	if got, err := runCLI(token, "call", "--addr", "http://192.0.2.1:7420", "counter/c1", "get"); err == nil || !strings.Contains(got, "over plain HTTP") {
		t.Errorf("a token over plain HTTP to another host: %v\n%s", err, got)
	}
	if got, err := runCLI("", "config", "print", "--config", cfgFile); err != nil || !strings.Contains(got, "[redacted]") {
		t.Errorf("config print: %v\n%s", err, got)
	}
	for _, path := range []string{"/health", "/metrics", "/v1/cluster", "/traces"} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		fmt.Fprintf(&out, "GET %s\n%s\n", path, b)
	}

	// Stop the cluster, so that every log line is in.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("loom-node cluster did not stop in 60s")
	}
	all := out.String()
	secrets := map[string]string{"the token": token, "a wrong token": wrongToken, "the OTLP header": otlpSecret}
	if b, err := os.ReadFile(filepath.Join(tlsDir, "gossip.key")); err == nil {
		secrets["the gossip key"] = strings.TrimSpace(string(b))
	}
	keys, _ := filepath.Glob(filepath.Join(tlsDir, "*-key.pem"))
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // -----BEGIN ... PRIVATE KEY-----
		sc.Scan()
		secrets[filepath.Base(k)] = sc.Text()
	}
	if len(secrets) < 8 {
		t.Fatalf("found %d secrets to look for: %v", len(secrets), keys)
	}
	for what, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("%s is too short to search for: %q", what, s)
		}
		if i := strings.Index(all, s); i >= 0 {
			t.Errorf("%s appears in the run's output: ...%s...", what, all[max(0, i-200):i])
		}
	}
	if !strings.Contains(all, "level=DEBUG") {
		t.Errorf("no debug log line in the output: the leak search missed a level")
	}
	t.Logf("searched %d bytes of output for %d secrets", len(all), len(secrets))
}
