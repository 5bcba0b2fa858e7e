package cosmostest_test

import (
	"crypto/tls"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/cosmostest"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// TestStartAnswersHTTPS: a started server answers over HTTPS (with its
// self-signed certificate), and stops.
func TestStartAnswersHTTPS(t *testing.T) {
	start := time.Now()
	s := cosmostest.Start(t)
	t.Logf("started in %v on %s", time.Since(start), s.Endpoint)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil {
		t.Fatal("answered without TLS")
	}
	s.Stop()
	s.Stop()
	if _, err := c.Get(s.Endpoint); err == nil {
		t.Fatal("a stopped server answered")
	}
}

// TestShared: Shared is one server.
func TestShared(t *testing.T) {
	a, b := cosmostest.Shared(t), cosmostest.Shared(t)
	if a != b {
		t.Fatal("two shared servers")
	}
	if cosmostest.Database(t) == cosmostest.Database(t) {
		t.Fatal("Database returned one name twice")
	}
}
