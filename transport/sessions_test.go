package transport

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/loom-mesh/loom/security/tlsconf"
)

// TestSessionsPerAddress: two nodes on one host, dialed with one shared
// session cache, each resume their own session: connect to A, B, then A
// again and B again, and both second connections resume.
func TestSessionsPerAddress(t *testing.T) {
	cert := selfSigned(t)
	var addrs []string
	for range 2 {
		// A config each: each node has session ticket keys of its own.
		srv := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.(*tls.Conn).Handshake()
					_, _ = c.Write([]byte{1}) // TLS 1.3 tickets come after the handshake
					_, _ = c.Read(make([]byte, 1))
				}()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	shared := tls.NewLRUClientSessionCache(16)
	dial := func(addr string) bool {
		t.Helper()
		cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1", ClientSessionCache: peerSessions{addr: addr, c: shared}}
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, cfg)
		defer c.Close()
		if _, err := c.Read(make([]byte, 1)); err != nil { // handshake, and the ticket
			t.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}
	dial(addrs[0])
	dial(addrs[1])
	if !dial(addrs[0]) || !dial(addrs[1]) {
		t.Fatal("a node's reconnect did not resume: the nodes' sessions overwrite one another")
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.CreateCA("sessions test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
