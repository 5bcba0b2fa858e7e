package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/slowloris"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/task"
)

// The HTTP timeouts the tests run with, instead of limits.go's.
const (
	testHeaderTimeout = 300 * time.Millisecond
	testIdleTimeout   = 400 * time.Millisecond
	testReadTimeout   = 500 * time.Millisecond
)

// slowTask runs for three read timeouts, or until its context ends.
var slowTask = task.New("slow", func(ctx context.Context, s string) (string, error) {
	select {
	case <-time.After(3 * testReadTimeout):
		return s, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
})

// startLimitedNode starts a single node whose HTTP timeouts are the test
// ones and whose payloads are at most 1 KiB, with configure applied.
func startLimitedNode(t *testing.T, configure func(*config.Config)) *node.Node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.ID = "n1"
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Node.MaxPayloadBytes = 1 << 10
	if configure != nil {
		configure(&cfg)
	}
	opts := node.Options{Config: cfg, Builtins: true, Tasks: []task.Definition{slowTask}, Logger: slog.New(slog.DiscardHandler)}
	node.SetHTTPTimeouts(&opts, testHeaderTimeout, testIdleTimeout, testReadTimeout)
	n, err := node.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n
}

// TestHTTPTimeouts: the HTTP port closes a connection that sends nothing,
// half a request's headers, half its body, or nothing after a request,
// once the matching timeout has passed; a call that runs longer than the
// read timeout, its body read, is not cut (net/http lifts ReadTimeout's
// deadline once the body is read).
func TestHTTPTimeouts(t *testing.T) {
	n := startLimitedNode(t, nil)
	addr := n.HTTPAddr()
	const call = "POST /v1/tasks/slow HTTP/1.1\r\nHost: loom\r\nContent-Type: application/json\r\n"

	for _, tc := range []struct {
		name    string
		prefix  string
		timeout time.Duration
		answer  string // the start of what the node answers before it closes
	}{
		{"silent", "", testHeaderTimeout, ""},
		{"half the headers", call, testHeaderTimeout, ""},
		{"half the body", call + "Content-Length: 100\r\n\r\n\"0123", testReadTimeout, "HTTP/1.1 400 "},
		{"idle after a request", "GET /health HTTP/1.1\r\nHost: loom\r\n\r\n", testIdleTimeout, "HTTP/1.1 200 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, got := slowloris.Dial(t, addr, []byte(tc.prefix)).AwaitClose(t, 10*time.Second)
			if took < tc.timeout {
				t.Errorf("closed after %v, before the %v timeout", took, tc.timeout)
			}
			if !strings.HasPrefix(string(got), tc.answer) {
				t.Errorf("answered %q, want %q first", got, tc.answer)
			}
			if tc.name == "half the body" && (!strings.Contains(string(got), "bad_payload") || !strings.Contains(string(got), "timeout")) {
				t.Errorf("answered %q: want a bad_payload error that says timeout", got)
			}
			t.Logf("closed after %v", took.Round(time.Millisecond))
		})
	}

	t.Run("a call running past the read timeout", func(t *testing.T) {
		status, body := httpPost(t, "http://"+addr+"/v1/tasks/slow", `"done"`, nil)
		if status != 200 || !strings.Contains(body, "done") {
			t.Fatalf("a call that ran %v: %d %s", 3*testReadTimeout, status, body)
		}
	})
}

// TestHTTPSHandshakeTimeout: the HTTPS port closes a connection that
// sends half a TLS handshake once the header timeout has passed.
func TestHTTPSHandshakeTimeout(t *testing.T) {
	pki := tlstest.New(t, "loom")
	n := startLimitedNode(t, secure(pki))
	// A TLS record header announcing a 512-byte ClientHello that never comes.
	c := slowloris.Dial(t, n.HTTPAddr(), []byte{0x16, 0x03, 0x01, 0x02, 0x00})
	if took, _ := c.AwaitClose(t, 10*time.Second); took < testHeaderTimeout {
		t.Errorf("closed after %v, before the %v timeout", took, testHeaderTimeout)
	}
}

// TestHTTPSizeLimits: headers over the limit get 431; a body over
// node.maxPayloadBytes gets 413 with the gateway's JSON error.
func TestHTTPSizeLimits(t *testing.T) {
	n := startLimitedNode(t, nil)
	addr := n.HTTPAddr()

	t.Run("headers", func(t *testing.T) {
		// 40 KiB of headers: over the 32 KiB limit and net/http's 4 KiB
		// of slack. A request under the limit passes.
		for _, tc := range []struct {
			headers int
			want    string
		}{{8, "HTTP/1.1 200 "}, {40, "HTTP/1.1 431 "}} {
			var req strings.Builder
			req.WriteString("GET /health HTTP/1.1\r\nHost: loom\r\nConnection: close\r\n")
			for i := range tc.headers {
				fmt.Fprintf(&req, "X-Filler-%d: %s\r\n", i, strings.Repeat("a", 1000))
			}
			req.WriteString("\r\n")
			_, got := slowloris.Dial(t, addr, []byte(req.String())).AwaitClose(t, 10*time.Second)
			if !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("%d KiB of headers: answered %.60q, want %q", tc.headers, got, tc.want)
			}
		}
	})

	t.Run("body", func(t *testing.T) {
		status, body := httpPost(t, "http://"+addr+"/v1/actors/counter/c/add", `{"delta":1,"pad":"`+strings.Repeat("a", 2<<10)+`"}`, nil)
		if status != 413 || !strings.Contains(body, `"code":"payload_too_large"`) || !strings.Contains(body, "1024") {
			t.Fatalf("a 2 KiB body: %d %s; want 413 payload_too_large naming 1024", status, body)
		}
		t.Logf("refused: %d %s", status, body)
	})
}

// TestLargePayloadCrossesNodes: a call as large as node.maxPayloadBytes
// allows reaches an actor on another node. The gRPC messages between
// nodes are sized from it (over transport's 16 MiB default, of which a
// call may use 12).
func TestLargePayloadCrossesNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 2-node cluster")
	}
	const size = 14 << 20
	c := nodetest.StartConfigured(t, 2, func(cfg *config.Config) { cfg.Node.MaxPayloadBytes = 16 << 20 })
	// counter.add ignores the padding; the turn journals only the sum.
	payload := []byte(fmt.Sprintf(`{"delta":1,"pad":"%s"}`, strings.Repeat("x", size)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Through both nodes: one of the two calls is forwarded to the other.
	for _, nd := range c.Nodes {
		if _, err := nd.Invoke(ctx, "counter", "big", "add", payload); err != nil {
			t.Fatalf("a %d MiB call through %s: %v", size>>20, nd.ID(), err)
		}
	}
	v, err := builtin.CounterGet.Call(ctx, c.Nodes[0], "big")
	if err != nil || v.Value != 2 {
		t.Fatalf("counter = %+v, %v; want 2", v, err)
	}
}
