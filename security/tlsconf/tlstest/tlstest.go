// Package tlstest makes throwaway CAs and role certificates in a
// directory, for tests of TLS between nodes and clients.
package tlstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loom-mesh/loom/security/tlsconf"
)

// PKI is a CA whose files are in Dir.
type PKI struct {
	t            testing.TB
	Dir          string
	CA           string // the CA certificate's file
	caPEM, caKey []byte
}

// New makes a CA named name in a new temporary directory.
func New(t testing.TB, name string) *PKI {
	t.Helper()
	cert, key, err := tlsconf.CreateCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{t: t, Dir: t.TempDir(), caPEM: cert, caKey: key}
	p.CA = p.write(name+"-ca.pem", cert)
	return p
}

func (p *PKI) write(name string, b []byte) string {
	p.t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// Cert makes a certificate for req and returns its files: file names
// start with file.
func (p *PKI) Cert(file string, req tlsconf.CertRequest) (cert, key string) {
	p.t.Helper()
	c, k, err := tlsconf.CreateCert(p.caPEM, p.caKey, req)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(file+".pem", c), p.write(file+"-key.pem", k)
}

// Node makes node id's certificate.
func (p *PKI) Node(id string) (cert, key string) {
	return p.Cert("node-"+id, tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: id})
}

// Client makes client name's certificate.
func (p *PKI) Client(name string) (cert, key string) {
	return p.Cert("client-"+name, tlsconf.CertRequest{Role: tlsconf.RoleClient, Name: name})
}

// Expired makes a certificate of role for name that expired a minute ago.
func (p *PKI) Expired(role tlsconf.Role, name string) (cert, key string) {
	return p.Cert("expired-"+string(role)+"-"+name, tlsconf.CertRequest{Role: role, Name: name,
		NotBefore: time.Now().Add(-2 * time.Hour), ValidFor: 2*time.Hour - time.Minute})
}

// NodeOptions are tlsconf.Options for node id, verifying both ways.
func (p *PKI) NodeOptions(id string) tlsconf.Options {
	cert, key := p.Node(id)
	return tlsconf.Options{CA: p.CA, Cert: cert, Key: key, VerifyIncoming: true, VerifyOutgoing: true}
}
