package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
)

// TestMetricsOverHTTPS: an https:// --http-addrs entry is read with the
// --ca, --cert and --key of the gRPC client; a node that requires a
// client certificate sees it; host:port at an HTTPS port is told to write
// https://.
func TestMetricsOverHTTPS(t *testing.T) {
	pki := tlstest.New(t, "loom")
	src, err := tlsconf.New(pki.NodeOptions("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, name, _ := tlsconf.RoleOf(r.TLS.PeerCertificates[0])
		if r.URL.Path != "/metrics" || name != "bench" {
			http.Error(w, fmt.Sprintf("path %s, client %q", r.URL.Path, name), http.StatusForbidden)
			return
		}
		io.WriteString(w, "# HELP loom_mailbox_depth ...\nloom_mailbox_depth{type=\"counter\"} 7\nprocess_cpu_seconds_total 1.5\n")
	}))
	srv.TLS = src.ServerConfig("https", tlsconf.RoleClient)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	cert, key := pki.Client("bench")
	nh, err := newNodeHTTP(client.TLSOptions{CA: pki.CA, Cert: cert, Key: key}, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := nh.metrics("https://"+addr+"/", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[`loom_mailbox_depth{type="counter"}`] != 7 || m["process_cpu_seconds_total"] != 1.5 || len(m) != 2 {
		t.Errorf("metrics %v", m)
	}
	if _, err := nh.metrics(addr, 5*time.Second); err == nil || !strings.Contains(err.Error(), "write https://"+addr+" in --http-addrs") {
		t.Errorf("host:port at an HTTPS port: %v", err)
	}
	// Another client certificate: the node's answer is the error.
	other, otherKey := pki.Client("other")
	nh2, err := newNodeHTTP(client.TLSOptions{CA: pki.CA, Cert: other, Key: otherKey}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nh2.metrics("https://"+addr, 5*time.Second); err == nil || !strings.Contains(err.Error(), `403 Forbidden: path /metrics, client "other"`) {
		t.Errorf("a refused request: %v", err)
	}
}

func TestHTTPAddrs(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7420":          "http://127.0.0.1:7420",
		"http://127.0.0.1:7420/":  "http://127.0.0.1:7420",
		"https://127.0.0.1:7420":  "https://127.0.0.1:7420",
		"https://n1.example:7420": "https://n1.example:7420",
	} {
		if got := nodeURL(in); got != want {
			t.Errorf("nodeURL(%q) = %q, want %q", in, got, want)
		}
		if err := checkHTTPAddrs([]string{in}); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	for _, bad := range []string{"ftp://127.0.0.1:7420", "https://", ""} {
		if err := checkHTTPAddrs([]string{"127.0.0.1:7420", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--http-addrs", "127.0.0.1:7420,ftp://x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `"ftp://x" is not host:port`) {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}
