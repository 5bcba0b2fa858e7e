package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTLSProblems checks the tls section's rules: each problem carries the
// file and line of the key at fault, and names files, never their
// contents.
func TestTLSProblems(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "locked.pem")
	if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	const cert, key, ca = "testdata/tls/node-7.pem", "testdata/tls/node-7-key.pem", "testdata/tls/loom-ca.pem"
	for _, tc := range []struct {
		name string
		yaml string
		want []string // "line: key: message part"
	}{
		{"valid", "tls:\n  ca: " + ca + "\n  cert: " + cert + "\n  key: " + key + "\n  verifyIncoming: true\n", nil},
		{"verifyIncoming without ca", "tls:\n  cert: " + cert + "\n  key: " + key + "\n  verifyIncoming: true\n",
			[]string{"f.yaml:4: tls.verifyIncoming: needs tls.ca"}},
		{"verifyOutgoing without ca", "tls:\n  cert: " + cert + "\n  key: " + key + "\n  verifyOutgoing: true\n",
			[]string{"f.yaml:4: tls.verifyOutgoing: needs tls.ca"}},
		{"cert without key", "tls:\n  cert: " + cert + "\n",
			[]string{"f.yaml:2: tls.cert: needs tls.key"}},
		{"key without cert", "tls:\n  key: " + key + "\n",
			[]string{"f.yaml:2: tls.key: needs tls.cert"}},
		{"verify without a certificate", "tls:\n  ca: " + ca + "\n  verifyIncoming: true\n",
			[]string{"f.yaml:3: tls.verifyIncoming: needs tls.cert and tls.key"}},
		{"missing file", "tls:\n  ca: /nonexistent/ca.pem\n  cert: " + cert + "\n  key: " + key + "\n",
			[]string{"f.yaml:2: tls.ca: cannot read the CA certificate file: no such file or directory"}},
		{"not PEM", "tls:\n  ca: " + notPEM + "\n  cert: " + cert + "\n  key: " + key + "\n",
			[]string{"f.yaml:2: tls.ca: " + notPEM + " holds no PEM certificate"}},
		{"key of another certificate", "tls:\n  cert: " + cert + "\n  key: " + ca + "\n",
			[]string{"f.yaml:3: tls.key: testdata/tls/node-7.pem and testdata/tls/loom-ca.pem are not a certificate and its key"}},
		{"min version", "tls:\n  minVersion: \"1.1\"\n",
			[]string{`f.yaml:2: tls.minVersion: must be one of 1.2, 1.3 (got "1.1")`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "f.yaml")
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
	if os.Geteuid() != 0 { // root reads any file
		_, err := Parse([]byte("tls:\n  cert: "+unreadable+"\n  key: "+key+"\n"), "f.yaml")
		if err == nil || !strings.Contains(err.Error(), "f.yaml:2: tls.cert: cannot read the certificate file: permission denied") {
			t.Errorf("unreadable file: %v", err)
		}
	}
	// The key's contents never appear in a problem.
	b, _ := os.ReadFile(key)
	_, err := Parse([]byte("tls:\n  cert: "+key+"\n  key: "+key+"\n"), "f.yaml")
	if err == nil || strings.Contains(err.Error(), strings.Split(string(b), "\n")[1]) {
		t.Errorf("a problem printed the key: %v", err)
	}
}
