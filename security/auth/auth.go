package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Scope is one thing a token allows (see the package doc).
type Scope string

// The scopes.
const (
	ActorsCall Scope = "actors:call"
	TasksRun   Scope = "tasks:run"
	Admin      Scope = "admin"
	Metrics    Scope = "metrics"
	// Authenticated is the need of a request any valid token may make
	// (listing the actor types or the task names): no scope, a token.
	Authenticated Scope = ""
)

const callPrefix = string(ActorsCall) + ":"

// CallScope is the scope that allows calls to actors of type actorType
// (ActorsCall allows them too).
func CallScope(actorType string) Scope { return Scope(callPrefix + actorType) }

// MinSecretLen is the shortest secret a token may have: 16 bytes, so that
// a token cannot be guessed online (the `loom-node token create` ones
// have 32 random bytes).
const MinSecretLen = 16

// ParseScope checks s: one of the scopes, or actors:call:<type> with a
// type.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ActorsCall, TasksRun, Admin, Metrics:
		return Scope(s), nil
	}
	if t, ok := strings.CutPrefix(s, callPrefix); ok && t != "" && !strings.ContainsAny(t, "/ \t") {
		return Scope(s), nil
	}
	return "", fmt.Errorf("unknown scope %q (the scopes: %s, %s:<type>, %s, %s, %s)", s, ActorsCall, ActorsCall, TasksRun, Admin, Metrics)
}

// Token is one configured token.
type Token struct {
	// Name identifies the token in logs and errors.
	Name string
	// Secret is what the caller presents (Authorization: Bearer <Secret>).
	Secret string
	// Scopes is what the token allows; at least one.
	Scopes []Scope
}

// Errors of Check. Both mean the request was not served, and nothing
// was applied.
var (
	// ErrUnauthenticated: no token, or one no configured token matches.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrPermissionDenied: the caller is known but may not do this (a
	// token without the scope; a client certificate on a node-internal
	// method).
	ErrPermissionDenied = errors.New("auth: permission denied")
)

// Tokens is a table of tokens checked in constant time. The zero value
// holds no token: every check fails. Safe for concurrent use.
type Tokens struct {
	cur atomic.Pointer[[]entry]
}

type entry struct {
	name   string
	sum    [sha256.Size]byte
	scopes []Scope
}

// New returns a table of tokens (see Set).
func New(tokens []Token) (*Tokens, error) {
	t := &Tokens{}
	if err := t.Set(tokens); err != nil {
		return nil, err
	}
	return t, nil
}

// Set replaces the table with tokens, after checking them: names
// non-empty and unique, secrets at least MinSecretLen bytes and
// distinct, at least one valid scope each. On an error the table is
// unchanged; the error names the token, never its secret.
func (t *Tokens) Set(tokens []Token) error {
	es := make([]entry, 0, len(tokens))
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]string{}
	for _, tk := range tokens {
		switch {
		case tk.Name == "":
			return errors.New("auth: a token has no name")
		case names[tk.Name]:
			return fmt.Errorf("auth: two tokens are named %q", tk.Name)
		case len(tk.Secret) < MinSecretLen:
			return fmt.Errorf("auth: token %q: the secret must be at least %d bytes (got %d; `loom-node token create` makes one)", tk.Name, MinSecretLen, len(tk.Secret))
		case len(tk.Scopes) == 0:
			return fmt.Errorf("auth: token %q has no scope", tk.Name)
		}
		names[tk.Name] = true
		for _, s := range tk.Scopes {
			if _, err := ParseScope(string(s)); err != nil {
				return fmt.Errorf("auth: token %q: %w", tk.Name, err)
			}
		}
		sum := sha256.Sum256([]byte(tk.Secret))
		if other, dup := sums[sum]; dup {
			return fmt.Errorf("auth: tokens %q and %q have the same secret", other, tk.Name)
		}
		sums[sum] = tk.Name
		es = append(es, entry{name: tk.Name, sum: sum, scopes: slices.Clone(tk.Scopes)})
	}
	t.cur.Store(&es)
	return nil
}

// Len is the number of tokens in the table.
func (t *Tokens) Len() int {
	if es := t.cur.Load(); es != nil {
		return len(*es)
	}
	return 0
}

// Check finds the token whose secret is secret and checks that it allows
// need. It returns the token's name, or an error that wraps
// ErrUnauthenticated (no secret, or no token has it) or
// ErrPermissionDenied (the token lacks need), naming the token and the
// scope but never the secret. Every configured token is compared, in
// constant time, whichever matches.
func (t *Tokens) Check(secret string, need Scope) (string, error) {
	if secret == "" {
		return "", fmt.Errorf("%w: no token: send Authorization: Bearer <token>", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(secret))
	found := -1
	var es []entry
	if p := t.cur.Load(); p != nil {
		es = *p
	}
	for i := range es {
		if subtle.ConstantTimeCompare(sum[:], es[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", fmt.Errorf("%w: the token is not valid here", ErrUnauthenticated)
	}
	e := es[found]
	if !allows(e.scopes, need) {
		return e.name, fmt.Errorf("%w: token %q lacks the scope %s (it has %s)", ErrPermissionDenied, e.name, needName(need), joinScopes(e.scopes))
	}
	return e.name, nil
}

// allows reports whether scopes grant need.
func allows(scopes []Scope, need Scope) bool {
	if need == Authenticated {
		return true
	}
	for _, s := range scopes {
		if s == need {
			return true
		}
		if s == ActorsCall && strings.HasPrefix(string(need), callPrefix) {
			return true
		}
	}
	return false
}

func needName(s Scope) string {
	if strings.HasPrefix(string(s), callPrefix) {
		return fmt.Sprintf("%s (or %s)", s, ActorsCall)
	}
	return string(s)
}

func joinScopes(ss []Scope) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ", ")
}

// Bearer returns the token of an Authorization header value
// ("Bearer <token>", the scheme in any case), or "" when it holds none.
func Bearer(header string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// NewSecret returns a new random secret: 32 bytes from crypto/rand in
// unpadded base64url (43 characters, safe in a header, a URL and YAML).
func NewSecret() string {
	return base64.RawURLEncoding.EncodeToString(randBytes(32))
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
