package tlsconf

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate lets its holder be in a cluster.
type Role string

const (
	// RoleNode is a node: it serves gRPC and Raft, votes, forwards Raft
	// commands, and may call every method.
	RoleNode Role = "node"
	// RoleClient is a cluster client: it calls actors, runs tasks, sends
	// messages and watches the topology, and nothing node-internal.
	RoleClient Role = "client"
)

// TrustDomain is the host of the role URIs.
const TrustDomain = "loom"

// NodeURI is the URI SAN of node id's certificate.
func NodeURI(id string) *url.URL { return roleURI(RoleNode, id) }

// ClientURI is the URI SAN of client name's certificate.
func ClientURI(name string) *url.URL { return roleURI(RoleClient, name) }

func roleURI(r Role, name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + string(r) + "/" + name}
}

// RoleOf returns the role and name a certificate's URI SAN gives it. A
// certificate without exactly one Loom role URI is an error.
func RoleOf(c *x509.Certificate) (Role, string, error) {
	var found []string
	var role Role
	var name string
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		r, n, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if !ok || n == "" || (Role(r) != RoleNode && Role(r) != RoleClient) {
			continue
		}
		found = append(found, u.String())
		role, name = Role(r), n
	}
	switch len(found) {
	case 1:
		return role, name, nil
	case 0:
		return "", "", fmt.Errorf("certificate %q has no Loom role (a URI SAN spiffe://%s/node/<id> or spiffe://%s/client/<name>; create certificates with `loom-node tls cert create`)", subject(c), TrustDomain, TrustDomain)
	}
	return "", "", fmt.Errorf("certificate %q has several Loom roles (%s): it must have one", subject(c), strings.Join(found, ", "))
}

// subject names a certificate in messages: its role URI's name if it has
// one, else its subject's common name, else its serial number.
func subject(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" && u.Host == TrustDomain {
			return u.String()
		}
	}
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return "serial " + c.SerialNumber.String()
}
