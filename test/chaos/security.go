package chaos

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// security is what a secure cluster (ClusterOptions.Secure) runs with, as
// `loom-node cluster --secure` sets it up: a CA of the run's own, a node
// certificate per node, a client certificate for the suite, a gossip key
// and one bearer token with every scope. The files live in the run's data
// dir, beside the nodes' (tls/), so that a node killed and restarted, or
// wiped and restarted, comes back with the same certificate and key.
//
// It is the one place the suite's clients learn how to reach the nodes:
// the scheme of their URLs, the HTTP clients (TLS with the client
// certificate, the token on every request) and the Go client's options.
// A nil *security is a plaintext cluster, and each method then gives what
// the suite used before (http://, plain transports, zero options).
type security struct {
	dir               string
	caPEM, caKeyPEM   []byte
	ca                string // the CA certificate's file
	cert, key         string // the suite's client certificate and key
	gossipKey         string // base64, cluster.gossipKey
	tokensFile, token string // auth.tokensFile and its one token's secret
	tls               *tlsconf.Source
}

// tokenName is the name of the suite's token in the nodes' tokens file.
const tokenName = "chaos"

// newSecurity creates the CA, the client certificate, the gossip key and
// the tokens file in dir (fresh: anything there is removed).
func newSecurity(dir string) (*security, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &security{dir: dir, ca: filepath.Join(dir, "ca.pem")}
	var err error
	if s.caPEM, s.caKeyPEM, err = tlsconf.CreateCA("Loom chaos CA", 0); err != nil {
		return nil, fmt.Errorf("chaos: creating the CA: %w", err)
	}
	if err := writeSecret(s.ca, s.caPEM); err != nil {
		return nil, err
	}
	if s.cert, s.key, err = s.issue(tlsconf.CertRequest{Role: tlsconf.RoleClient, Name: "chaos"}, "client-chaos"); err != nil {
		return nil, err
	}
	s.gossipKey = cluster.EncodeKey(cluster.NewKey())
	s.token = auth.NewSecret()
	s.tokensFile = filepath.Join(dir, "tokens.yaml")
	tokens := fmt.Sprintf("tokens:\n  %s:\n    secret: %s\n    scopes: [%s, %s, %s, %s]\n",
		tokenName, s.token, auth.ActorsCall, auth.TasksRun, auth.Admin, auth.Metrics)
	if err := writeSecret(s.tokensFile, []byte(tokens)); err != nil {
		return nil, err
	}
	// The suite's side: it presents the client certificate and checks
	// that every node it reaches holds a node certificate of this CA.
	s.tls, err = tlsconf.New(tlsconf.Options{CA: s.ca, Cert: s.cert, Key: s.key, VerifyOutgoing: true})
	if err != nil {
		return nil, fmt.Errorf("chaos: the suite's TLS: %w", err)
	}
	return s, nil
}

// issue creates a certificate for req signed by the CA, as dir/name.pem
// and dir/name-key.pem.
func (s *security) issue(req tlsconf.CertRequest, name string) (cert, key string, err error) {
	c, k, err := tlsconf.CreateCert(s.caPEM, s.caKeyPEM, req)
	if err != nil {
		return "", "", fmt.Errorf("chaos: creating the certificate %s: %w", name, err)
	}
	cert, key = filepath.Join(s.dir, name+".pem"), filepath.Join(s.dir, name+"-key.pem")
	if err := writeSecret(cert, c); err != nil {
		return "", "", err
	}
	return cert, key, writeSecret(key, k)
}

func writeSecret(path string, b []byte) error {
	return os.WriteFile(path, b, 0o600)
}

// nodeConfig creates node id's certificate (its IP in it, though nodes
// check roles, not addresses: no tls.serverName is set) and returns the
// config the node adds to the cluster's: mutual TLS verified both ways,
// the gossip key, the tokens file.
func (s *security) nodeConfig(id, ip string) (string, error) {
	cert, key, err := s.issue(tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: id, IPs: []net.IP{net.ParseIP(ip)}}, "node-"+id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("tls:\n  ca: %q\n  cert: %q\n  key: %q\n  verifyIncoming: true\n  verifyOutgoing: true\n"+
		"auth:\n  tokensFile: %q\n", s.ca, cert, key, s.tokensFile), nil
}

// gossipConfig is the cluster section's gossip key line ("" when plain).
func (s *security) gossipConfig() string {
	if s == nil {
		return ""
	}
	return fmt.Sprintf("  gossipKey: %q\n", s.gossipKey)
}

// scheme is the nodes' HTTP scheme.
func (s *security) scheme() string {
	if s == nil {
		return "http"
	}
	return "https"
}

// httpClient is an HTTP client for the nodes' HTTP ports with the timeout
// and over t (nil: net/http's default transport, or a clone of its
// settings when secure). When secure, t dials with the suite's client
// certificate, checks the node's, and every request carries the token.
// HTTP/2 stays off, so that the secure run's requests use connections as
// the plain run's do (HTTP/1.1, one request at a time on each).
func (s *security) httpClient(timeout time.Duration, t *http.Transport) *http.Client {
	if s == nil {
		hc := &http.Client{Timeout: timeout}
		if t != nil {
			hc.Transport = t
		}
		return hc
	}
	if t == nil {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	t.ForceAttemptHTTP2 = false
	t.TLSClientConfig = s.tls.ClientConfig()
	return &http.Client{Timeout: timeout, Transport: bearer{next: t, header: "Bearer " + s.token}}
}

// clientOptions are the Go client's options.
func (s *security) clientOptions() client.Options {
	if s == nil {
		return client.Options{}
	}
	return client.Options{TLS: client.TLSOptions{CA: s.ca, Cert: s.cert, Key: s.key}, Token: s.token}
}

// describe says what the cluster runs with, for the report.
func (s *security) describe() string {
	if s == nil {
		return "none (plaintext, no tokens)"
	}
	return "mutual TLS verified both ways (gRPC, Raft, HTTPS), gossip encryption, bearer tokens"
}

// prove checks that the running cluster really is secure, so that a
// secure run cannot pass on nodes that ignored their settings: every
// node's gossip keyring holds the suite's key (gossip is encrypted); a
// request without a token is refused with 401 (tokens are required); and
// on the first running node, plain HTTP gets no API answer (its port
// serves HTTPS only), and the Go client is refused without a client
// certificate and without a token (gRPC is mutual TLS and checks tokens).
func (s *security) prove(ctx context.Context, c *Cluster) error {
	if s == nil {
		return nil
	}
	key, err := cluster.ParseKey(s.gossipKey)
	if err != nil {
		return err
	}
	want := cluster.KeyID(key)
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("chaos: secure cluster: "+format, args...))
	}
	noToken := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tls.ClientConfig()}}
	defer noToken.CloseIdleConnections()
	plain := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	get := func(hc *http.Client, url string, v any) (int, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == http.StatusOK {
			return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode, nil
	}
	var first *Node
	for _, n := range c.Nodes {
		if n.State() != Running {
			continue
		}
		if first == nil {
			first = n
		}
		var kr struct{ Keys []string }
		if code, err := get(c.hc, n.URL("/v1/admin/keyring"), &kr); err != nil || code != http.StatusOK || !slices.Contains(kr.Keys, want) {
			fail("%s: gossip keyring %v (status %d, %v); want key %s", n.ID, kr.Keys, code, err, want)
		}
		if code, err := get(noToken, n.URL("/v1/cluster"), nil); code != http.StatusUnauthorized {
			fail("%s: GET /v1/cluster without a token: status %d (%v); want 401", n.ID, code, err)
		}
	}
	if first == nil {
		return errors.New("chaos: secure cluster: no node running")
	}
	// Go's HTTPS server answers a plain request 400 ("Client sent an
	// HTTP request to an HTTPS server"), never the API.
	if code, err := get(plain, "http://"+first.HTTPAddr()+"/health/live", nil); err == nil && code != http.StatusBadRequest {
		fail("%s: plain HTTP answered %d; want no answer but 400", first.ID, code)
	}
	// gRPC wants a client certificate: a TLS handshake without one is
	// refused (in TLS 1.3 the server's alert comes with the first read).
	// Checked by hand, as the Go client retries a refused handshake until
	// its deadline: 2 s before the load, which the load's figures would
	// count.
	if err := handshakeWithoutCert(ctx, first.GRPCAddr()); err == nil || !strings.Contains(err.Error(), "certificate required") {
		fail("%s: gRPC handshake without a client certificate: %v; want it refused (certificate required)", first.ID, err)
	}
	// With a certificate but no token, the Go client is refused at once.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cl, err := client.Dial(dctx, []string{first.GRPCAddr()}, client.Options{TLS: client.TLSOptions{CA: s.ca, Cert: s.cert, Key: s.key}})
	cancel()
	switch {
	case err == nil:
		_ = cl.Close()
		fail("%s: the Go client was let in without a token", first.ID)
	case !strings.Contains(err.Error(), "unauthenticated"):
		fail("%s: the Go client without a token: %v; want it refused (unauthenticated)", first.ID, err)
	}
	return errors.Join(errs...)
}

// handshakeWithoutCert opens a TLS connection to a gRPC address (ALPN
// h2, as gRPC requires) without a client certificate and reads from it:
// the alert of a server that requires a certificate; a server that lets
// the connection in gives its first bytes (nil) or nothing until the
// read times out.
func handshakeWithoutCert(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		InsecureSkipVerify: true, //nolint:gosec // the server's certificate is not what is checked here
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetReadDeadline(dl)
	_, err = conn.Read(make([]byte, 1))
	return err
}

// bearer adds the Authorization header to every request it sends.
type bearer struct {
	next   *http.Transport
	header string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request. Clone keeps
	// GetBody as it is: nil, where the suite turned net/http's resend of
	// a written POST off.
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.header)
	return b.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (b bearer) CloseIdleConnections() { b.next.CloseIdleConnections() }
