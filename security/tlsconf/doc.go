// Package tlsconf builds the crypto/tls configurations of a Loom node and
// of a cluster client from PEM files (the tls section of the config), and
// keeps them current while the process runs. It uses the standard library
// only.
//
// # Roles
//
// Every Loom certificate names its role in a URI SAN:
//
//	spiffe://loom/node/<node id>      a node (NodeURI)
//	spiffe://loom/client/<name>       a cluster client (ClientURI)
//
// and its extended key usage agrees: a node certificate may serve and dial
// (ServerAuth and ClientAuth), a client certificate may only dial
// (ClientAuth). RoleOf reads the role. The CA is the trust boundary: a
// certificate is a node's only if the cluster's CA signed it with the node
// role, so a client certificate cannot stand in for a node, on Raft or on
// the node-internal gRPC methods.
//
// # What a Source guarantees
//
//   - Verification. A configuration from ServerConfig or ClientConfig
//     checks the peer's chain against the CA as it is now (not as it was
//     when the config was built), with the current time, on every
//     handshake, resumed ones included, and then the peer's role. Its
//     errors say what is wrong in words an operator acts on: the
//     certificate's subject, its role, its expiry date ("expired at ..."),
//     or that it was signed by another CA. Hostnames are not checked
//     unless Options.ServerName is set: nodes are dialed by IP, and a
//     node is identified by its role from the cluster's CA.
//   - Reload. Reload (on SIGHUP, or Watch's polling of the files'
//     modification times and sizes) reads the CA, certificate and key
//     again; if they parse, are a pair and the certificate is not expired,
//     new handshakes use them at once (GetCertificate,
//     GetClientCertificate, GetConfigForClient); if not, the old ones stay
//     in use and the error is returned (and logged by Watch). Connections
//     already open are not touched.
//   - Resumption. Client configurations (and HTTPTransport's) share one
//     ClientSessionCache, so a reconnect resumes its TLS session instead
//     of a full handshake. The cache is keyed by server name, which gRPC
//     and net/http set to the host dialed without its port: nodes that
//     share a host (a local cluster) would share one entry. Package
//     transport's pool keys it by the address it dials, so each node's
//     session is its own; an HTTPTransport's clients share the entry.
//   - Secrets. Nothing here prints a private key; errors name files.
//
// A Source is safe for concurrent use: the current material is one
// atomic pointer, replaced whole by Reload (which is serialised by a
// mutex); handshakes only read it.
//
// CreateCA and CreateCert make a CA and role certificates (ECDSA P-256),
// for `loom-node tls` and tests.
package tlsconf
