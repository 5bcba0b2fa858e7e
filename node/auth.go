package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/security/auth"
)

// Bearer tokens (config auth section, package security/auth): when a
// token is configured, every HTTP request but the probes' and every gRPC
// call of a client needs one with the scope of what it asks. Nodes need
// none on gRPC: their certificates identify them (config requires
// tls.verifyIncoming with tokens in a cluster).

// openAuth loads the tokens, when auth is on.
func (n *Node) openAuth() error {
	if !n.cfg.Auth.Enabled() {
		return nil
	}
	tokens, err := n.cfg.Auth.Load()
	if err != nil {
		return fmt.Errorf("node: auth: %w", err)
	}
	t, err := auth.New(tokens)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.tokens = t
	n.log.Info("bearer tokens required", "tokens", t.Len(), "tokensFile", n.cfg.Auth.TokensFile)
	return nil
}

// reloadTokens reads auth.tokensFile again. On an error the tokens stay
// as they were.
func (n *Node) reloadTokens() error {
	if n.tokens == nil || n.cfg.Auth.TokensFile == "" {
		return nil
	}
	tokens, err := n.cfg.Auth.Load()
	if err == nil {
		err = n.tokens.Set(tokens)
	}
	if err != nil {
		n.log.Error("reloading the tokens failed; the previous tokens stay in use", "err", err)
		return err
	}
	n.log.Info("tokens reloaded", "tokens", n.tokens.Len())
	return nil
}

// Reload reads the node's TLS files and its tokens file again (loom-node
// calls it on SIGHUP). On an error each keeps what it had; the error
// says what failed.
func (n *Node) Reload() error {
	return errors.Join(n.ReloadTLS(), n.reloadTokens())
}

// requireTokens wraps the node's HTTP handler: without tokens it is next
// itself; with them a request needs a token with the scope httpNeed
// gives it, or it is answered 401 (no token, or an unknown one) or 403
// (a token without the scope) with the gateway's JSON error body.
func (n *Node) requireTokens(next http.Handler) http.Handler {
	if n.tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need, open := httpNeed(r)
		if open {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := n.tokens.Check(auth.Bearer(r.Header.Get("Authorization")), need); err != nil {
			if errors.Is(err, auth.ErrUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="loom"`)
			}
			gateway.WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// httpNeed is the scope an HTTP request needs, or open for the probes
// and the dashboard's static page.
// What it does not know needs admin: a route added without a line here
// is closed, not open.
func httpNeed(r *http.Request) (need auth.Scope, open bool) {
	seg := segments(r.URL.EscapedPath())
	is := func(method string, parts ...string) bool {
		if r.Method != method || len(seg) != len(parts) {
			return false
		}
		for i, p := range parts {
			if p != "*" && seg[i] != p {
				return false
			}
		}
		return true
	}
	switch {
	case is(http.MethodGet, "health", "live"), is(http.MethodGet, "health", "ready"),
		is(http.MethodHead, "health", "live"), is(http.MethodHead, "health", "ready"):
		return "", true
	case uiPage(r):
		// The dashboard's static files carry no data; the APIs it
		// calls keep their scopes.
		return "", true
	case is(http.MethodGet, "health"), is(http.MethodGet, "metrics"), is(http.MethodGet, "v1", "stats", "calls"):
		return auth.Metrics, false
	case is(http.MethodPost, "v1", "actors", "*", "*", "*"), is(http.MethodPost, "v1", "messages", "*", "*", "*"):
		return auth.CallScope(seg[2]), false
	case is(http.MethodPost, "v1", "tasks", "*"):
		return auth.TasksRun, false
	case is(http.MethodGet, "v1", "actors"), is(http.MethodGet, "v1", "tasks"):
		return auth.Authenticated, false
	}
	// Everything else, the dashboard's /v1/admin routes included, is an
	// operator's.
	return auth.Admin, false
}

// uiPage reports whether r is a GET of the dashboard's page or one of
// its files: /ui, /ui/ or /ui/<name> (one clean segment).
func uiPage(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	switch p := r.URL.EscapedPath(); {
	case p == "/ui", p == "/ui/":
		return true
	default:
		seg := segments(p)
		return len(seg) == 2 && seg[0] == "ui" && !strings.Contains(seg[1], "/")
	}
}

// segments splits an escaped path into its unescaped segments, as the
// mux matches them: "/v1/actors/a%2Fb/x/m" is v1, actors, a/b, x, m. A
// path with an empty, "." or ".." segment, or one that does not
// unescape, has none (the mux would redirect it to its clean form, which
// is checked on its own).
func segments(escaped string) []string {
	parts := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil || u == "" || u == "." || u == ".." {
			return nil
		}
		parts[i] = u
	}
	return parts
}
