package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
)

// TestTLSCommands creates a CA, a node and a client certificate, and
// checks the files, their modes and the roles in the certificates.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	runOK := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("loom-node %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	runOK("tls", "ca", "create", "--dir", dir)
	runOK("tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", caKey, "--node", "node-1", "--ip", "10.0.0.5", "--dns", "n1.example.com")
	runOK("tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", caKey, "--client", "app")
	for _, tc := range []struct {
		cert, key string
		role      tlsconf.Role
		name      string
	}{
		{"node-node-1.pem", "node-node-1-key.pem", tlsconf.RoleNode, "node-1"},
		{"client-app.pem", "client-app-key.pem", tlsconf.RoleClient, "app"},
	} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tc.cert), filepath.Join(dir, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		if r, n, err := tlsconf.RoleOf(pair.Leaf); err != nil || r != tc.role || n != tc.name {
			t.Errorf("%s: role %q %q %v", tc.cert, r, n, err)
		}
		if st, _ := os.Stat(filepath.Join(dir, tc.key)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", tc.key, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(caKey); st.Mode().Perm() != 0o600 {
		t.Errorf("the CA key has mode %v, want 0600", st.Mode().Perm())
	}
	pair, _ := tls.LoadX509KeyPair(filepath.Join(dir, "node-node-1.pem"), filepath.Join(dir, "node-node-1-key.pem"))
	if !strings.Contains(strings.Join(pair.Leaf.DNSNames, ","), "n1.example.com") || len(pair.Leaf.IPAddresses) != 3 {
		t.Errorf("SANs: %v %v", pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	// Nothing is overwritten.
	var errOut bytes.Buffer
	if code := run([]string{"tls", "ca", "create", "--dir", dir}, &bytes.Buffer{}, &errOut); code == 0 || !strings.Contains(errOut.String(), "not overwriting") {
		t.Fatalf("a second ca create: exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"tls", "cert", "create", "--dir", dir}, &bytes.Buffer{}, &errOut); code != 2 {
		t.Fatalf("cert create without --node or --client: exit %d", code)
	}
}

// TestHTTPClientOverHTTPS: with $LOOM_TLS_CA (and a client certificate)
// the commands' client reaches an HTTPS node and presents the
// certificate; a plain http:// address at that port is told to use
// https://.
func TestHTTPClientOverHTTPS(t *testing.T) {
	pki := tlstest.New(t, "loom")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, name, _ := tlsconf.RoleOf(r.TLS.PeerCertificates[0])
		io.WriteString(w, name)
	}))
	src, err := tlsconf.New(pki.NodeOptions("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = src.ServerConfig("https", tlsconf.RoleClient)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	cert, key := pki.Client("cli")
	t.Setenv(envTLSCA, pki.CA)
	t.Setenv(envTLSCert, cert)
	t.Setenv(envTLSKey, key)
	hc := httpClient(5 * time.Second)
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "cli" {
		t.Fatalf("the node saw %q, want the client certificate cli", b)
	}
	if _, err := hc.Get("http://" + srv.Listener.Addr().String()); err == nil || !strings.Contains(err.Error(), "serves HTTPS: use --addr https://") {
		t.Fatalf("http:// at an HTTPS port: %v", err)
	}
}
