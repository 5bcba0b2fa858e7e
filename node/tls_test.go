package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/safebuf"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
)

// secure turns on mutual TLS with certificates from pki.
func secure(pki *tlstest.PKI) func(*config.Config) {
	return func(cfg *config.Config) {
		cert, key := pki.Node(cfg.Node.ID)
		cfg.TLS = config.TLSConfig{CA: pki.CA, Cert: cert, Key: key, VerifyIncoming: true, VerifyOutgoing: true, MinVersion: config.TLSVersion13}
	}
}

// TestMutualTLSCluster: three nodes with mutual TLS elect a Raft leader,
// forward calls to each other's actors, and serve HTTPS; a client
// certificate calls actors but cannot forward Raft commands, nor connect
// to Raft; a plaintext client gets told the node serves TLS.
func TestMutualTLSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	pki := tlstest.New(t, "loom")
	c := nodetest.StartConfigured(t, 3, secure(pki))
	ctx := context.Background()
	for i := range 30 {
		via := c.Nodes[i%3]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := builtin.CounterAdd.Call(cctx, via, fmt.Sprintf("c%d", i%10), builtin.CounterDelta{Delta: 1}); err != nil {
			t.Fatalf("call %d via %s: %v", i, via.ID(), err)
		}
		cancel()
	}
	info := c.Nodes[0].Info()
	if info.Raft == nil || len(info.Raft.Voters) != 3 || info.Leader == "" {
		t.Fatalf("raft over TLS: %+v", info.Raft)
	}
	spread := 0
	for _, nd := range c.Nodes {
		if nd.Runtime().Active("counter") > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Fatalf("actors on %d node(s): calls were not forwarded between nodes", spread)
	}

	// The cluster client, with a client certificate.
	cert, key := pki.Client("app")
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, []string{c.Nodes[1].GRPCAddr()}, client.Options{TLS: client.TLSOptions{CA: pki.CA, Cert: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if v, err := builtin.CounterGet.Call(ctx, cl, "c1"); err != nil || v.Value != 3 {
		t.Fatalf("client call over TLS = %+v, %v; want 3", v, err)
	}

	// A client certificate cannot forward Raft commands...
	src, err := tlsconf.New(tlsconf.Options{CA: pki.CA, Cert: cert, Key: key, VerifyOutgoing: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := transport.NewPool(transport.PoolOptions{TLS: src.ClientConfig()})
	defer pool.Close()
	for _, nd := range c.Nodes {
		_, err := pool.Forward(ctx, nd.GRPCAddr(), 0, []byte("x"))
		if !errors.Is(err, transport.ErrPermissionDenied) || !strings.Contains(err.Error(), "node-internal") {
			t.Fatalf("forward with a client certificate to %s: %v; want permission denied", nd.ID(), err)
		}
	}
	// ... nor speak Raft: the node refuses the handshake.
	conn, err := tls.Dial("tcp", c.Nodes[0].RaftAddr(), src.ClientConfig())
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte{0})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("raft with a client certificate: %v; want the handshake refused", err)
	}

	// HTTPS, with the CA; a plain HTTP request is refused.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig()}}
	resp, err := hc.Get("https://" + c.Nodes[2].HTTPAddr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health over HTTPS: %d %s", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + c.Nodes[2].HTTPAddr() + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 on a TLS node")
		}
	}

	// A plaintext cluster client, and one without a client certificate,
	// are told what is wrong at once, not when their context ends: every
	// node would answer the same.
	for _, tc := range []struct {
		name string
		opts client.Options
		want string
	}{
		{"plaintext", client.Options{}, "is the node serving TLS?"},
		{"no client certificate", client.Options{TLS: client.TLSOptions{CA: pki.CA}}, "the node requires a client certificate"},
	} {
		pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
		_, err = client.Dial(pctx, []string{c.Nodes[0].GRPCAddr()}, tc.opts)
		waited := pctx.Err()
		pcancel()
		if err == nil || !errors.Is(err, transport.ErrTLSMismatch) || !strings.Contains(err.Error(), tc.want) || waited != nil {
			t.Fatalf("%s client: %v (context: %v); want ErrTLSMismatch saying %q before the context ends", tc.name, err, waited, tc.want)
		}
	}
}

// TestForeignCANodeCannotJoin: a node whose certificate another CA signed
// gets no Raft membership that works: it cannot start (no session), says
// why in its log, and is never in the Raft configuration, not even as a
// non-voter.
func TestForeignCANodeCannotJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	pki := tlstest.New(t, "loom")
	other := tlstest.New(t, "other")
	c := nodetest.StartConfigured(t, 3, secure(pki))

	cfg := nodetest.Config(t.TempDir(), "n4", 0, c.Seed, 1)
	secure(other)(&cfg)
	var log safebuf.Buffer
	nd, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = nd.Shutdown(sctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	// Gossip lets n4 in (this cluster's gossip is not encrypted), so the
	// leader sees it for the whole of its start; it must never add it to
	// Raft, not even as a non-voter (it would replicate to it for ever).
	// Sample the configuration until the start fails.
	started := make(chan struct{})
	inRaft := make(chan string, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, nd := range c.Nodes {
				if ri := nd.Info().Raft; ri != nil && (slices.Contains(ri.Voters, "n4") || slices.Contains(ri.Nonvoters, "n4")) {
					inRaft <- fmt.Sprintf("%s: %+v", nd.ID(), ri)
					return
				}
			}
			select {
			case <-started:
				close(inRaft)
				return
			case <-tick.C:
			}
		}
	}()
	err = nd.Start(ctx)
	close(started)
	if ri, ok := <-inRaft; ok {
		t.Fatalf("n4 was in the Raft configuration during its start, on %s", ri)
	}
	if err == nil {
		t.Fatal("a node with a certificate from another CA started in the cluster")
	}
	const why = `the peer refused this node's certificate (node.n4, issued by \"other\")`
	nodetest.WaitFor(t, 5*time.Second, "n4's log to say why", func() bool {
		return strings.Contains(log.String()+err.Error(), why)
	})
	// The cluster still serves.
	if _, err := builtin.CounterAdd.Call(context.Background(), c.Nodes[0], "after", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
	t.Logf("n4's start failed with: %v", err)
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, why) {
			t.Logf("n4 logged: %s", l)
			break
		}
	}
}

// TestTLSReloadWithoutRestart: a node's certificate files are replaced;
// new connections get the new certificate, without a restart.
func TestTLSReloadWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	pki := tlstest.New(t, "loom")
	var certFile, keyFile string
	c := nodetest.StartConfigured(t, 1, func(cfg *config.Config) {
		secure(pki)(cfg)
		certFile, keyFile = cfg.TLS.Cert, cfg.TLS.Key
	})
	nd := c.Nodes[0]
	cert, key := pki.Client("probe")
	src, err := tlsconf.New(tlsconf.Options{CA: pki.CA, Cert: cert, Key: key, VerifyOutgoing: true})
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		cfg := src.ClientConfig()
		cfg.ClientSessionCache = nil // a full handshake each time
		conn, err := tls.Dial("tcp", nd.HTTPAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	newCert, newKey := pki.Cert("rotated", tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: nd.ID()})
	for _, f := range [][2]string{{newKey, keyFile}, {newCert, certFile}} {
		b, err := readFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFile(f[1], b); err != nil {
			t.Fatal(err)
		}
	}
	if err := nd.ReloadTLS(); err != nil { // as SIGHUP does; the poll would too
		t.Fatal(err)
	}
	if after := serial(); after == before {
		t.Fatalf("the node still presents certificate %s after the reload", before)
	}
	// And calls go on.
	if _, err := builtin.CounterAdd.Call(context.Background(), nd, "r", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
}

func readFile(p string) ([]byte, error)  { return os.ReadFile(p) }
func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o600) }

// TestExpiredNodeCertificateRefused: a node does not start with an
// expired certificate, and says when it expired.
func TestExpiredNodeCertificateRefused(t *testing.T) {
	pki := tlstest.New(t, "loom")
	cert, key := pki.Expired(tlsconf.RoleNode, "n1")
	cfg := nodetest.Config(t.TempDir(), "n1", 0, "", 1)
	cfg.TLS = config.TLSConfig{CA: pki.CA, Cert: cert, Key: key, VerifyIncoming: true, VerifyOutgoing: true, MinVersion: config.TLSVersion13}
	nd, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: nodetest.Logger("n1")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = nd.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("Start with an expired certificate: %v; want its expiry", err)
	}
	t.Log(err)
}
