package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// backendTLS is the client TLS configuration for a backend server
// (Redis, PostgreSQL, RabbitMQ) of the config section key: the server's
// certificate is checked against caFile (PEM) when set, else the
// system's roots, for serverName when set, else the dialed host.
func backendTLS(key, caFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("node: %s.tlsCA: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("node: %s.tlsCA: %s holds no PEM certificate", key, caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
