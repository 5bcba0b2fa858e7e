package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loom-mesh/loom/security/tlsconf"
)

// The files `loom-node tls ca create` writes.
const (
	caCertFile = "loom-ca.pem"
	caKeyFile  = "loom-ca-key.pem"
)

// cmdTLS makes a cluster's CA and its certificates:
//
//	loom-node tls ca create [--dir DIR] [--name NAME] [--days N]
//	loom-node tls cert create (--node ID | --client NAME) [--dir DIR] [--ca FILE] [--ca-key FILE] [--ip IP,...] [--dns NAME,...] [--days N]
//
// Keys are written 0600 and never overwritten.
func cmdTLS(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		fmt.Fprintln(stderr, "usage: loom-node tls ca create [flags] | loom-node tls cert create (--node ID | --client NAME) [flags]")
		return 2
	}
	if args[0] == "ca" {
		return cmdTLSCA(args[2:], stdout, stderr)
	}
	return cmdTLSCert(args[2:], stdout, stderr)
}

func cmdTLSCA(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-node tls ca create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory to write "+caCertFile+" and "+caKeyFile+" to")
	name := fs.String("name", "Loom CA", "the CA's common name")
	days := fs.Int("days", 3650, "days the CA is valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	paths, err := createCA(*dir, *name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node tls ca create: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s and %s (key 0600: keep it off the nodes)\n", paths[0], paths[1])
	return 0
}

func createCA(dir, name string, validFor time.Duration) ([2]string, error) {
	cert, key, err := tlsconf.CreateCA(name, validFor)
	if err != nil {
		return [2]string{}, err
	}
	paths := [2]string{filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)}
	return paths, writePair(paths, cert, key)
}

// writePair writes a certificate (0644) and its key (0600), refusing to
// overwrite either.
func writePair(paths [2]string, cert, key []byte) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: not overwriting it (remove it first)", p)
		}
	}
	if err := os.MkdirAll(filepath.Dir(paths[0]), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(paths[1], key, 0o600); err != nil {
		return err
	}
	return os.WriteFile(paths[0], cert, 0o644)
}

func cmdTLSCert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-node tls cert create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodeID := fs.String("node", "", "make a node certificate for this node id")
	client := fs.String("client", "", "make a client certificate for this client name")
	dir := fs.String("dir", ".", "directory to write the certificate and key to")
	ca := fs.String("ca", caCertFile, "the CA certificate")
	caKey := fs.String("ca-key", caKeyFile, "the CA's key")
	ips := fs.String("ip", "", "comma-separated IP addresses to add to 127.0.0.1 and ::1")
	dns := fs.String("dns", "", "comma-separated DNS names to add to localhost")
	days := fs.Int("days", 365, "days the certificate is valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*nodeID == "") == (*client == "") {
		fmt.Fprintln(stderr, "loom-node tls cert create: give one of --node ID or --client NAME")
		return 2
	}
	req := tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: *nodeID, ValidFor: time.Duration(*days) * 24 * time.Hour}
	if *client != "" {
		req.Role, req.Name = tlsconf.RoleClient, *client
	}
	for s := range strings.SplitSeq(*ips, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			fmt.Fprintf(stderr, "loom-node tls cert create: --ip: %q is not an IP address\n", s)
			return 2
		}
		req.IPs = append(req.IPs, ip)
	}
	for s := range strings.SplitSeq(*dns, ",") {
		if s = strings.TrimSpace(s); s != "" {
			req.DNSNames = append(req.DNSNames, s)
		}
	}
	paths, err := createCert(*ca, *caKey, *dir, req)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node tls cert create: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s and %s (%s certificate %s, key 0600)\n", paths[0], paths[1], req.Role, roleURI(req))
	return 0
}

func roleURI(req tlsconf.CertRequest) string {
	if req.Role == tlsconf.RoleClient {
		return tlsconf.ClientURI(req.Name).String()
	}
	return tlsconf.NodeURI(req.Name).String()
}

// createCert makes req's certificate, signed by the CA in caFile and
// caKeyFile, as <role>-<name>.pem and <role>-<name>-key.pem in dir.
func createCert(caFile, caKeyFile, dir string, req tlsconf.CertRequest) ([2]string, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return [2]string{}, fmt.Errorf("the CA certificate: %w (create one with `loom-node tls ca create`)", err)
	}
	caKey, err := os.ReadFile(caKeyFile)
	if err != nil {
		return [2]string{}, fmt.Errorf("the CA key: %w", err)
	}
	cert, key, err := tlsconf.CreateCert(caPEM, caKey, req)
	if err != nil {
		return [2]string{}, err
	}
	base := filepath.Join(dir, string(req.Role)+"-"+req.Name)
	paths := [2]string{base + ".pem", base + "-key.pem"}
	return paths, writePair(paths, cert, key)
}

// Environment variables the HTTP commands (call, members, send, dlq,
// traces) read to reach a node over HTTPS: the CA to check the node
// against, and a client certificate and key to present.
const (
	envTLSCA   = "LOOM_TLS_CA"
	envTLSCert = "LOOM_TLS_CERT"
	envTLSKey  = "LOOM_TLS_KEY"
)

// httpClient is the HTTP client of the commands that talk to a node: with
// $LOOM_TLS_CA set, https:// addresses are checked against that CA (and
// $LOOM_TLS_CERT and $LOOM_TLS_KEY are presented); $LOOM_TOKEN is sent
// as a bearer token (token.go); timeout 0 is none.
func httpClient(timeout time.Duration) *http.Client {
	c := &http.Client{Timeout: timeout, Transport: bearer{httpsHint{http.DefaultTransport}}}
	ca := os.Getenv(envTLSCA)
	if ca == "" {
		return c
	}
	src, err := tlsconf.New(tlsconf.Options{CA: ca, Cert: os.Getenv(envTLSCert), Key: os.Getenv(envTLSKey), VerifyOutgoing: true,
		MinVersion: tls.VersionTLS12})
	if err != nil {
		c.Transport = errTransport{err}
		return c
	}
	c.Transport = bearer{httpsHint{src.HTTPTransport()}}
	return c
}

// httpsHint turns the answer of an HTTPS port to a plain HTTP request
// into an error that says what to do.
type httpsHint struct{ next http.RoundTripper }

func (h httpsHint) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusBadRequest || req.URL.Scheme != "http" {
		if err != nil && strings.Contains(err.Error(), "certificate") && os.Getenv(envTLSCA) == "" {
			err = fmt.Errorf("%w (set %s to the cluster's CA file)", err, envTLSCA)
		}
		return resp, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if strings.Contains(string(body), "HTTPS server") {
		return nil, fmt.Errorf("%s serves HTTPS: use --addr https://%s, with %s set to the cluster's CA file", req.URL.Host, req.URL.Host, envTLSCA)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp, nil
}

// errTransport fails every request with err (a TLS file that cannot be
// read), so each command reports it as it reports other errors.
type errTransport struct{ err error }

func (t errTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%s, %s, %s: %w", envTLSCA, envTLSCert, envTLSKey, t.err)
}
