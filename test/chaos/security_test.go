package chaos

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// A secure cluster's material: each node's config loads as loom-node
// loads it, with TLS verified both ways, the gossip key and a token with
// every scope; the node certificate is a node's, with the node's IP.
func TestSecurityNodeConfig(t *testing.T) {
	dir := t.TempDir()
	s, err := newSecurity(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	own, err := s.nodeConfig("node-1", "127.3.4.11")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node-1.config.yaml")
	base := "coordination:\n  sessionTTL: 3s\n  renewInterval: 1s\ncluster:\n  deadVoterTimeout: 10s\n" + s.gossipConfig()
	if err := os.WriteFile(path, []byte(base+own), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the node's config does not load: %v", err)
	}
	if !cfg.TLS.Enabled() || !cfg.TLS.VerifyIncoming || !cfg.TLS.VerifyOutgoing || cfg.TLS.CA != s.ca {
		t.Errorf("tls section %+v: want TLS on, verified both ways against %s", cfg.TLS, s.ca)
	}
	if cfg.Cluster.GossipKey != s.gossipKey || cfg.Cluster.DeadVoterTimeout != 10*time.Second {
		t.Errorf("cluster section: gossip key set %v, deadVoterTimeout %v", cfg.Cluster.GossipKey == s.gossipKey, cfg.Cluster.DeadVoterTimeout)
	}
	tokens, err := cfg.Auth.Load()
	if err != nil {
		t.Fatal(err)
	}
	checker, err := auth.New(tokens)
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []auth.Scope{auth.CallScope(TypeRegister), auth.TasksRun, auth.Admin, auth.Metrics} {
		if name, err := checker.Check(s.token, need); err != nil || name != tokenName {
			t.Errorf("the suite's token for %s: %q, %v", need, name, err)
		}
	}

	leaf := readCert(t, cfg.TLS.Cert)
	if role, name, err := tlsconf.RoleOf(leaf); err != nil || role != tlsconf.RoleNode || name != "node-1" {
		t.Errorf("node certificate: role %s name %s err %v", role, name, err)
	}
	if !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("127.3.4.11")) }) {
		t.Errorf("node certificate IPs %v lack the node's", leaf.IPAddresses)
	}
	if role, _, err := tlsconf.RoleOf(readCert(t, s.cert)); err != nil || role != tlsconf.RoleClient {
		t.Errorf("the suite's certificate: role %s, %v; want a client certificate", role, err)
	}
}

// The suite's HTTP client reaches a node's HTTPS port that requires a
// client certificate, checks the node's, and sends the token; the caller's
// request is left as it was.
func TestSecurityHTTPClient(t *testing.T) {
	dir := t.TempDir()
	s, err := newSecurity(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := s.issue(tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: "node-1"}, "node-node-1")
	if err != nil {
		t.Fatal(err)
	}
	node, err := tlsconf.New(tlsconf.Options{CA: s.ca, Cert: cert, Key: key, VerifyIncoming: true, VerifyOutgoing: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
	}))
	srv.TLS = node.ServerConfig("http", tlsconf.RoleClient)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()

	hc := s.httpClient(5*time.Second, &http.Transport{MaxIdleConnsPerHost: 2})
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET over mutual TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
		t.Errorf("status %s over %s; want 200 over HTTP/1.1", resp.Status, resp.Proto)
	}
	if h := <-got; h != "Bearer "+s.token {
		t.Errorf("Authorization %q; want the suite's token", h)
	}
	if req.Header.Get("Authorization") != "" {
		t.Error("the caller's request was changed")
	}

	// A node of another CA is refused.
	other, err := newSecurity(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	hc2 := other.httpClient(5*time.Second, nil)
	if resp, err := hc2.Get(srv.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Error("a node whose certificate another CA signed was accepted")
	}
}

// Without Secure every method gives the plaintext suite's settings.
func TestSecurityPlain(t *testing.T) {
	var s *security
	if s.scheme() != "http" || s.gossipConfig() != "" {
		t.Errorf("scheme %q, gossip %q", s.scheme(), s.gossipConfig())
	}
	if o := s.clientOptions(); o.Token != "" || o.TLS.CA != "" || o.TLS.Cert != "" {
		t.Errorf("client options %+v", o)
	}
	if hc := s.httpClient(time.Second, nil); hc.Transport != nil || hc.Timeout != time.Second {
		t.Errorf("client %+v: want net/http's default transport", hc)
	}
	n := &Node{IP: "127.0.0.11", HTTPPort: 7420, scheme: s.scheme()}
	if u := n.URL("/health"); u != "http://127.0.0.11:7420/health" {
		t.Errorf("URL %s", u)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Through the secure client (TLS, the token added by a wrapper) a gateway
// call still carries its key and is still not resent behind the suite's
// back when the connection dies after the request was written (see
// TestGatewayCallCarriesItsKeyAndIsNotResent): the wrapper's clone of the
// request keeps GetBody nil.
func TestSecureGatewayCallIsNotResent(t *testing.T) {
	dir := t.TempDir()
	s, err := newSecurity(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := s.issue(tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: "node-1"}, "node-node-1")
	if err != nil {
		t.Fatal(err)
	}
	node, err := tlsconf.New(tlsconf.Options{CA: s.ca, Cert: cert, Key: key, VerifyIncoming: true, VerifyOutgoing: true})
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	var mu sync.Mutex
	var auths, keys []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths, keys = append(auths, r.Header.Get("Authorization")), append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		if requests.Add(1) == 1 {
			_, _ = w.Write([]byte(`{"value":1}`))
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // read the request, then die without answering
		}
	}))
	srv.TLS = node.ServerConfig("http", tlsconf.RoleClient)
	srv.StartTLS()
	defer srv.Close()
	port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	hc := s.httpClient(3*time.Second, &http.Transport{MaxIdleConnsPerHost: 2})
	defer hc.CloseIdleConnections()
	g := gatewayCaller{hc: hc, node: &Node{ID: "node-1", IP: "127.0.0.1", HTTPPort: port, scheme: s.scheme()}, timeout: time.Second}
	ctx := runtime.WithIdempotencyKey(runtime.WithCorrelationID(context.Background(), "chaos-w1-1"), "chaos-w1-1")
	if _, _, outcome, err := g.call(ctx, "counter", "c", "add", []byte(`{"delta":1}`)); outcome != OK {
		t.Fatalf("first call: %s %v", outcome, err)
	}
	_, _, outcome, err := g.call(ctx, "counter", "c", "add", []byte(`{"delta":1}`))
	if outcome != Unknown || requests.Load() != 2 {
		t.Fatalf("second call: %s (%v) after %d requests; want unknown after 2", outcome, err, requests.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range auths {
		if auths[i] != "Bearer "+s.token || keys[i] != "chaos-w1-1" {
			t.Errorf("request %d: token sent %v, Idempotency-Key %q", i+1, auths[i] == "Bearer "+s.token, keys[i])
		}
	}
}

// handshakeWithoutCert tells a listener that requires a client
// certificate from one that does not.
func TestHandshakeWithoutCert(t *testing.T) {
	dir := t.TempDir()
	s, err := newSecurity(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := s.issue(tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: "node-1"}, "node-node-1")
	if err != nil {
		t.Fatal(err)
	}
	node, err := tlsconf.New(tlsconf.Options{CA: s.ca, Cert: cert, Key: key, VerifyIncoming: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		cfg     *tls.Config
		refused bool
	}{
		{"requires", node.ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient), true},
		{"asks", node.AskingConfig("https"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg.Clone()
			cfg.NextProtos = []string{"h2"}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer conn.Close()
						if conn.(*tls.Conn).Handshake() == nil {
							_, _ = conn.Write([]byte("x")) // as a gRPC server's settings
						}
					}()
				}
			}()
			err = handshakeWithoutCert(context.Background(), ln.Addr().String())
			if got := err != nil && strings.Contains(err.Error(), "certificate required"); got != c.refused {
				t.Errorf("refused %v (%v), want %v", got, err, c.refused)
			}
		})
	}
}
