package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"

	"github.com/loom-mesh/loom/security/auth"
)

// tokensFile is the shape of an auth.tokensFile.
type tokensFile struct {
	Tokens map[string]TokenConfig `yaml:"tokens"`
}

// LoadTokens reads an auth.tokensFile: environment variables are
// expanded as in a config file, and every problem (an unknown key, a
// short secret, an unknown scope) is reported with the file and line, in
// a *ValidationError, never quoting a secret.
func LoadTokens(path string) (map[string]TokenConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: auth.tokensFile: %w", err)
	}
	expanded, envProblems := expandEnv(data, path, os.LookupEnv)
	d := decoder{src: &source{file: path, keys: map[string]origin{}}, failed: map[string]bool{}}
	var f tokensFile
	d.document(expanded, reflect.ValueOf(&f).Elem())
	v := validator{src: d.src}
	v.tokens("tokens", f.Tokens)
	problems := append(envProblems, d.problems...)
	for _, p := range v.problems {
		if !d.failed[p.Key] {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return f.Tokens, nil
	}
	sortProblems(problems)
	return nil, &ValidationError{Problems: problems}
}

// auth checks the auth section: each token, the tokens file (read here,
// so that a node refuses to start on a broken one), and that a cluster's
// nodes can tell one another from clients.
func (v *validator) auth(c *Config) {
	a := c.Auth
	v.tokens("auth.tokens", a.Tokens)
	if a.TokensFile != "" {
		fileTokens, err := LoadTokens(a.TokensFile)
		switch e := err.(type) {
		case nil:
			for _, name := range sortedKeys(fileTokens) {
				if _, dup := a.Tokens[name]; dup {
					v.add("auth.tokensFile", a.TokensFile, fmt.Sprintf("%s names a token %q that auth.tokens names too", a.TokensFile, name))
				}
			}
		case *ValidationError:
			v.problems = append(v.problems, e.Problems...)
		default:
			v.add("auth.tokensFile", a.TokensFile, err.Error())
		}
	}
	if a.Enabled() && c.Cluster.Clustered() && !c.TLS.VerifyIncoming {
		key, val := "auth.tokens", any("")
		if a.TokensFile != "" {
			key, val = "auth.tokensFile", a.TokensFile
		}
		v.add(key, val, "in a cluster, bearer tokens need tls.verifyIncoming (and so tls.ca, tls.cert, tls.key): nodes forward calls to one another over the same gRPC services, and tell one another from clients by their node certificates")
	}
}

// tokens checks a map of tokens under prefix. Problems name the token
// and never quote a secret.
func (v *validator) tokens(prefix string, tokens map[string]TokenConfig) {
	secrets := map[string]string{}
	for _, name := range sortedKeys(tokens) {
		t := tokens[name]
		key := prefix + "." + name
		switch {
		case t.Secret == RedactedValue:
			v.add(key+".secret", t.Secret, "is "+RedactedValue+", as config print shows every secret: put the token's secret back")
		case t.Secret == "":
			v.add(key+".secret", t.Secret, "is required: the token's secret (`loom-node token create` makes one)")
		case len(t.Secret) < auth.MinSecretLen:
			v.add(key+".secret", t.Secret, fmt.Sprintf("must be at least %d bytes (got %d; `loom-node token create` makes one)", auth.MinSecretLen, len(t.Secret)))
		default:
			if other, dup := secrets[t.Secret]; dup {
				v.add(key+".secret", t.Secret, fmt.Sprintf("is the secret of token %q too: give each token its own", other))
			}
			secrets[t.Secret] = name
		}
		if len(t.Scopes) == 0 {
			v.add(key+".scopes", "", fmt.Sprintf("needs at least one scope: %s, %s:<type>, %s, %s, %s", auth.ActorsCall, auth.ActorsCall, auth.TasksRun, auth.Admin, auth.Metrics))
		}
		for i, s := range t.Scopes {
			if _, err := auth.ParseScope(s); err != nil {
				v.add(fmt.Sprintf("%s.scopes[%d]", key, i), s, err.Error())
			}
		}
	}
}

// Load returns the tokens of the auth section, those of TokensFile
// (read now) included, for security/auth.
func (a AuthConfig) Load() ([]auth.Token, error) {
	all := cloneTokens(a.Tokens)
	if a.TokensFile != "" {
		ft, err := LoadTokens(a.TokensFile)
		if err != nil {
			return nil, err
		}
		for name, t := range ft {
			if _, dup := all[name]; dup {
				return nil, fmt.Errorf("config: %s names a token %q that auth.tokens names too", a.TokensFile, name)
			}
			all[name] = t
		}
	}
	out := make([]auth.Token, 0, len(all))
	for _, name := range sortedKeys(all) {
		t := all[name]
		scopes := make([]auth.Scope, len(t.Scopes))
		for i, s := range t.Scopes {
			scopes[i] = auth.Scope(s)
		}
		out = append(out, auth.Token{Name: name, Secret: t.Secret, Scopes: scopes})
	}
	return out, nil
}

func cloneTokens(m map[string]TokenConfig) map[string]TokenConfig {
	out := make(map[string]TokenConfig, len(m))
	for k, t := range m {
		out[k] = TokenConfig{Secret: t.Secret, Scopes: slices.Clone(t.Scopes)}
	}
	return out
}
