package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthProblems checks the auth section's rules: each problem has the
// file and line of the key at fault and never quotes a secret.
func TestAuthProblems(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodFile := file("good.yaml", "tokens:\n  ops:\n    secret: ops-secret-0123456789\n    scopes: [admin]\n")
	badFile := file("bad.yaml", "tokens:\n  ops:\n    secret: tiny-secret\n    scopes:\n      - admin\n      - root\n")
	dupFile := file("dup.yaml", "tokens:\n  app:\n    secret: other-secret-0123456789\n    scopes: [admin]\n")
	const app = "auth:\n  tokens:\n    app:\n      secret: app-secret-0123456789\n      scopes: [actors:call]\n"
	const cluster = "cluster:\n  join: 10.0.0.5:7946\ncoordination:\n  backend: raft\njournal:\n  backend: raft\n"
	const tlsOn = "tls:\n  ca: testdata/tls/loom-ca.pem\n  cert: testdata/tls/node-7.pem\n  key: testdata/tls/node-7-key.pem\n"
	for _, tc := range []struct {
		name string
		yaml string
		want []string // "file:line: key: message part"
	}{
		{"valid", app, nil},
		{"valid with a file", app + "  tokensFile: " + goodFile + "\n", nil},
		{"short secret", "auth:\n  tokens:\n    app:\n      secret: s3cret\n      scopes: [admin]\n",
			[]string{"f.yaml:4: auth.tokens.app.secret: must be at least 16 bytes (got 6;"}},
		{"no secret", "auth:\n  tokens:\n    app:\n      scopes: [admin]\n",
			[]string{"auth.tokens.app.secret: is required"}},
		{"redacted secret", "auth:\n  tokens:\n    app:\n      secret: '[redacted]'\n      scopes: [admin]\n",
			[]string{"f.yaml:4: auth.tokens.app.secret: is [redacted], as config print shows every secret: put the token's secret back"}},
		{"no scope", "auth:\n  tokens:\n    app:\n      secret: app-secret-0123456789\n",
			[]string{"auth.tokens.app.scopes: needs at least one scope"}},
		{"unknown scope", "auth:\n  tokens:\n    app:\n      secret: app-secret-0123456789\n      scopes:\n        - actors:call\n        - actors:write\n",
			[]string{`f.yaml:7: auth.tokens.app.scopes[1]: unknown scope "actors:write"`}},
		{"scopes not a list", "auth:\n  tokens:\n    app:\n      secret: app-secret-0123456789\n      scopes: admin\n",
			[]string{`f.yaml:5: auth.tokens.app.scopes: must be a list such as [a, b] (got "admin")`}},
		{"same secret twice", app + "    ops:\n      secret: app-secret-0123456789\n      scopes: [admin]\n",
			[]string{`f.yaml:7: auth.tokens.ops.secret: is the secret of token "app" too`}},
		{"problems in the tokens file", "auth:\n  tokensFile: " + badFile + "\n",
			[]string{badFile + ":3: tokens.ops.secret: must be at least 16 bytes (got 11;", badFile + `:6: tokens.ops.scopes[1]: unknown scope "root"`}},
		{"a name in both", app + "  tokensFile: " + dupFile + "\n",
			[]string{"f.yaml:6: auth.tokensFile: " + dupFile + ` names a token "app" that auth.tokens names too`}},
		{"missing tokens file", "auth:\n  tokensFile: /nonexistent/tokens.yaml\n",
			[]string{"f.yaml:2: auth.tokensFile: config: auth.tokensFile: open /nonexistent/tokens.yaml: no such file or directory"}},
		{"cluster without verifyIncoming", app + cluster,
			[]string{"f.yaml:3: auth.tokens: in a cluster, bearer tokens need tls.verifyIncoming"}},
		{"cluster with verifyIncoming", app + cluster + tlsOn + "  verifyIncoming: true\n", nil},
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
			for _, s := range []string{"s3cret", "tiny-secret", "app-secret-0123456789", "other-secret-0123456789"} {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Errorf("a problem repeats a secret: %v", err)
				}
			}
		})
	}
}

func TestAuthLoad(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := c.Auth.Load()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tk := range tokens {
		names = append(names, tk.Name+"="+tk.Secret)
	}
	if got := strings.Join(names, " "); got != "app=app-token-for-the-example ops=ops-token-for-the-example orders=orders-token-for-the-example" {
		t.Errorf("Load() = %s", got)
	}
	if !c.Auth.Enabled() || (AuthConfig{}).Enabled() {
		t.Error("Enabled is wrong")
	}
}
