package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/security/tlsconf"
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
