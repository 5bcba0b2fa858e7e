package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	neturl "net/url"
	"regexp"
	"time"
)

// CertRequest describes a certificate for CreateCert.
type CertRequest struct {
	// Role and Name give the role URI (spiffe://loom/<role>/<name>) and
	// the subject's common name.
	Role Role
	Name string
	// IPs and DNSNames are added to 127.0.0.1, ::1 and localhost.
	IPs      []net.IP
	DNSNames []string
	// NotBefore defaults to one minute ago (clock skew); ValidFor (after
	// NotBefore) to a year.
	NotBefore time.Time
	ValidFor  time.Duration
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CreateCA returns a new self-signed CA certificate and its key, in PEM,
// valid for validFor (0: ten years).
func CreateCA(commonName string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		validFor = 10 * 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Loom"}},
		NotBefore:             now,
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

// CreateCert returns a certificate for req signed by the CA (PEM) and its
// new key. A node certificate may serve and dial; a client certificate
// may only dial.
func CreateCert(caCertPEM, caKeyPEM []byte, req CertRequest) (certPEM, keyPEM []byte, err error) {
	if req.Role != RoleNode && req.Role != RoleClient {
		return nil, nil, fmt.Errorf("tlsconf: role must be %q or %q (got %q)", RoleNode, RoleClient, req.Role)
	}
	if !namePattern.MatchString(req.Name) {
		return nil, nil, fmt.Errorf("tlsconf: name must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (got %q)", req.Name)
	}
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: CA certificate and key: %w", err)
	}
	if !ca.Leaf.IsCA {
		return nil, nil, errors.New("tlsconf: the CA certificate is not a CA")
	}
	if req.NotBefore.IsZero() {
		req.NotBefore = time.Now().Add(-time.Minute)
	}
	if req.ValidFor <= 0 {
		req.ValidFor = 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if req.Role == RoleNode {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: string(req.Role) + "." + req.Name, Organization: []string{"Loom"}},
		NotBefore:    req.NotBefore,
		NotAfter:     req.NotBefore.Add(req.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		URIs:         []*neturl.URL{roleURI(req.Role, req.Name)},
		IPAddresses:  append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, req.IPs...),
		DNSNames:     append([]string{"localhost"}, req.DNSNames...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, key.Public(), ca.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func encode(der []byte, key crypto.Signer) ([]byte, []byte, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}
