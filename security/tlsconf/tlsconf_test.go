package tlsconf_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
)

// handshake runs a TLS handshake between a server and a client config
// over a loopback connection and returns each side's error.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error, state tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		err = tc.HandshakeContext(context.Background())
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; read so the client sees it.
			_, _ = tc.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	clientErr = tc.HandshakeContext(context.Background())
	if clientErr == nil {
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, clientErr = io.ReadFull(tc, make([]byte, 1))
		state = tc.ConnectionState()
	}
	return <-done, clientErr, state
}

func mustSource(t *testing.T, o tlsconf.Options) *tlsconf.Source {
	t.Helper()
	s, err := tlsconf.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHandshakes(t *testing.T) {
	pki := tlstest.New(t, "loom")
	other := tlstest.New(t, "other")
	n1 := pki.NodeOptions("n1")
	nodeCert, nodeKey := pki.Node("n2")
	clientCert, clientKey := pki.Client("app")
	expCert, expKey := pki.Expired(tlsconf.RoleNode, "old")
	foreignCert, foreignKey := other.Node("n9")

	// Dialers.
	dialer := func(cert, key string) tlsconf.Options {
		return tlsconf.Options{CA: pki.CA, Cert: cert, Key: key, VerifyOutgoing: true}
	}
	for _, tc := range []struct {
		name      string
		accept    []tlsconf.Role
		server    tlsconf.Options
		client    tlsconf.Options
		serverErr string // in the server's error ("" none)
		clientErr string // in the client's error ("" none)
	}{
		{"node to node", []tlsconf.Role{tlsconf.RoleNode}, n1, dialer(nodeCert, nodeKey), "", ""},
		{"client to grpc", []tlsconf.Role{tlsconf.RoleNode, tlsconf.RoleClient}, n1, dialer(clientCert, clientKey), "", ""},
		{"client to raft", []tlsconf.Role{tlsconf.RoleNode}, n1, dialer(clientCert, clientKey),
			`is a client certificate (app); only node certificates are accepted here`, "bad certificate"},
		{"no client cert", []tlsconf.Role{tlsconf.RoleNode}, n1, tlsconf.Options{CA: pki.CA, VerifyOutgoing: true},
			"didn't provide a certificate", "certificate required"},
		{"other CA dials", []tlsconf.Role{tlsconf.RoleNode}, n1, dialer(foreignCert, foreignKey),
			`signed by "other", not by this cluster's CA`, "bad certificate"},
		{"dial server of other CA", []tlsconf.Role{tlsconf.RoleNode},
			tlsconf.Options{CA: other.CA, Cert: foreignCert, Key: foreignKey}, dialer(nodeCert, nodeKey),
			"bad certificate", `signed by "other", not by this cluster's CA`},
		{"client cert serves", []tlsconf.Role{tlsconf.RoleNode},
			tlsconf.Options{CA: pki.CA, Cert: clientCert, Key: clientKey}, dialer(nodeCert, nodeKey),
			"bad certificate", "is it a client certificate?"},
		{"server name matches", []tlsconf.Role{tlsconf.RoleNode}, n1,
			tlsconf.Options{CA: pki.CA, Cert: nodeCert, Key: nodeKey, VerifyOutgoing: true, ServerName: "localhost"}, "", ""},
		{"server name differs", []tlsconf.Role{tlsconf.RoleNode}, n1,
			tlsconf.Options{CA: pki.CA, Cert: nodeCert, Key: nodeKey, VerifyOutgoing: true, ServerName: "server.dc1.loom"}, "bad certificate", "server.dc1.loom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mustSource(t, tc.server).ServerConfig("test", tc.accept...)
			cli := mustSource(t, tc.client).ClientConfig()
			serr, cerr, _ := handshake(t, srv, cli)
			check := func(side string, err error, want string) {
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", side, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: got %v, want an error containing %q", side, err, want)
				}
			}
			check("server", serr, tc.serverErr)
			check("client", cerr, tc.clientErr)
		})
	}

	// An expired certificate is refused with its expiry, by either side.
	t.Run("expired", func(t *testing.T) {
		_, err := tlsconf.New(tlsconf.Options{CA: pki.CA, Cert: expCert, Key: expKey})
		if err == nil || !strings.Contains(err.Error(), "expired at") {
			t.Fatalf("loading an expired certificate: %v", err)
		}
		// The same certificate, loaded while it was valid, then served.
		at := time.Now().Add(-90 * time.Minute)
		s := mustSource(t, tlsconf.Options{CA: pki.CA, Cert: expCert, Key: expKey, Now: func() time.Time { return at }})
		_, cerr, _ := handshake(t, s.ServerConfig("test", tlsconf.RoleNode), mustSource(t, dialer(nodeCert, nodeKey)).ClientConfig())
		if cerr == nil || !strings.Contains(cerr.Error(), "expired at") {
			t.Fatalf("client: got %v, want the expiry", cerr)
		}
		c := mustSource(t, tlsconf.Options{CA: pki.CA, Cert: expCert, Key: expKey, Now: func() time.Time { return at }})
		serr, _, _ := handshake(t, mustSource(t, n1).ServerConfig("test", tlsconf.RoleNode), c.ClientConfig())
		if serr == nil || !strings.Contains(serr.Error(), "expired at") {
			t.Fatalf("server: got %v, want the expiry", serr)
		}
	})
}

func TestRoleOf(t *testing.T) {
	pki := tlstest.New(t, "loom")
	for _, tc := range []struct {
		role tlsconf.Role
		name string
	}{{tlsconf.RoleNode, "node-1"}, {tlsconf.RoleClient, "bench"}} {
		cert, key := pki.Cert(tc.name, tlsconf.CertRequest{Role: tc.role, Name: tc.name})
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		r, n, err := tlsconf.RoleOf(pair.Leaf)
		if err != nil || r != tc.role || n != tc.name {
			t.Errorf("RoleOf = %q, %q, %v; want %q, %q", r, n, err, tc.role, tc.name)
		}
	}
	if _, _, err := tlsconf.CreateCert(nil, nil, tlsconf.CertRequest{Role: "admin", Name: "x"}); err == nil {
		t.Error("CreateCert accepted role admin")
	}
}

// TestReload replaces the certificate files and checks that new
// handshakes present the new certificate, without a restart.
func TestReload(t *testing.T) {
	pki := tlstest.New(t, "loom")
	o := pki.NodeOptions("n1")
	s := mustSource(t, o)
	cli := mustSource(t, tlsconf.Options{CA: pki.CA, Cert: o.Cert, Key: o.Key, VerifyOutgoing: true}).ClientConfig()
	srv := s.ServerConfig("test", tlsconf.RoleNode)
	_, err, st := handshake(t, srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	first := st.PeerCertificates[0].SerialNumber

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, 20*time.Millisecond, nil)

	// A half-written rotation (a key that is not the certificate's) is
	// refused and the old pair stays in use.
	newCert, newKey := pki.Cert("rotated", tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: "n1"})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, newCert, o.Cert)
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate with the old key")
	}
	copyFile(t, newKey, o.Key)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err, st := handshake(t, srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		if st.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server still presents the old certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.Leaf().SerialNumber; got.Cmp(first) == 0 {
		t.Fatal("Leaf is the old certificate")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Bump the modification time: a copy within the same clock tick
	// would otherwise look unchanged if it had the same size.
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Duration(len(b)) * time.Millisecond)
	_ = os.Chtimes(to, future, future)
}

func TestResumption(t *testing.T) {
	pki := tlstest.New(t, "loom")
	o := pki.NodeOptions("n1")
	srv := mustSource(t, o).ServerConfig("test", tlsconf.RoleNode)
	cli := mustSource(t, tlsconf.Options{CA: pki.CA, Cert: o.Cert, Key: o.Key, VerifyOutgoing: true}).ClientConfig()
	// The session cache is keyed by server name (gRPC sets the target's
	// host; each handshake here has a new port).
	cli.ServerName = "127.0.0.1"
	var resumed bool
	for range 3 {
		_, err, st := handshake(t, srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		resumed = resumed || st.DidResume
	}
	if !resumed {
		t.Fatal("no handshake resumed its session")
	}
}

func TestHTTPTransport(t *testing.T) {
	pki := tlstest.New(t, "loom")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, name, err := tlsconf.RoleOf(r.TLS.PeerCertificates[0])
		fmt.Fprintf(w, "%s %s %v resumed=%v", role, name, err, r.TLS.DidResume)
	}))
	srv.TLS = mustSource(t, pki.NodeOptions("n1")).ServerConfig("https", tlsconf.RoleClient)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	cert, key := pki.Client("bench")
	tr := mustSource(t, tlsconf.Options{CA: pki.CA, Cert: cert, Key: key, VerifyOutgoing: true}).HTTPTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func() string {
		t.Helper()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := get(); got != "client bench <nil> resumed=false" {
		t.Fatalf("first request: %q", got)
	}
	// A new connection resumes the first one's session.
	tr.CloseIdleConnections()
	if got := get(); got != "client bench <nil> resumed=true" {
		t.Fatalf("after a reconnect: %q", got)
	}
	// And the server is checked: a transport with another CA refuses it.
	other := tlstest.New(t, "other")
	tr2 := mustSource(t, tlsconf.Options{CA: other.CA, Cert: cert, Key: key, VerifyOutgoing: true}).HTTPTransport()
	defer tr2.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr2, Timeout: 5 * time.Second}).Get(srv.URL); err == nil || !strings.Contains(err.Error(), "not by this cluster's CA") {
		t.Fatalf("a server from another CA: %v", err)
	}
}
