package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/loom-mesh/loom/security/auth"
)

// envToken is the bearer token the HTTP commands present (as --token
// does for call and send), for nodes whose auth section requires tokens.
const envToken = "LOOM_TOKEN"

// cmdToken prints a new token secret, for the auth section.
func cmdToken(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: loom-node token create\n  prints a new random secret for auth.tokens.<name>.secret")
		return 2
	}
	fmt.Fprintln(stdout, auth.NewSecret())
	return 0
}

// bearer adds "Authorization: Bearer <token>" to the requests that carry
// none, the token being $LOOM_TOKEN, and refuses to send one in clear
// text beyond this machine.
type bearer struct{ next http.RoundTripper }

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") == "" {
		if tok := os.Getenv(envToken); tok != "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	if req.Header.Get("Authorization") != "" && req.URL.Scheme == "http" && !loopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("not sending a token to %s over plain HTTP: it would travel in the clear (use https://)", req.URL.Host)
	}
	return b.next.RoundTrip(req)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setToken puts token (a --token flag's value) on req, if it is not
// empty; else $LOOM_TOKEN applies (bearer).
func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
