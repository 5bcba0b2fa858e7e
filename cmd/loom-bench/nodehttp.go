package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// nodeHTTP reads the nodes' HTTP ports (their /metrics, for send-deliver
// and --overload). An --http-addrs entry is host:port (plain HTTP) or a
// URL, http:// or https://; an https:// node is checked against --ca and
// shown --cert, as the gRPC client does (without --ca or --cert, against
// the system's roots).
type nodeHTTP struct {
	hc    *http.Client
	token string // sent as a bearer token, when not empty
}

// newNodeHTTP is the HTTP client of nodes whose TLS files are o (zero:
// none of loom-bench's own) and whose token is token ("": none).
func newNodeHTTP(o client.TLSOptions, token string) (*nodeHTTP, error) {
	if o.CA == "" && o.Cert == "" {
		return &nodeHTTP{hc: &http.Client{}, token: token}, nil
	}
	src, err := tlsconf.New(tlsconf.Options{CA: o.CA, Cert: o.Cert, Key: o.Key, VerifyOutgoing: o.CA != "",
		ServerName: o.ServerName, MinVersion: tlsconf.ParseVersion(o.MinVersion)})
	if err != nil {
		return nil, err
	}
	return &nodeHTTP{hc: &http.Client{Transport: src.HTTPTransport()}, token: token}, nil
}

// get sends a GET to a node. Every request loom-bench sends to a node goes
// through here: the one place for headers they all need (an
// Authorization: Bearer token, when the nodes ask for one).
func (n *nodeHTTP) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if n.token != "" {
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	return n.hc.Do(req)
}

// metrics reads the node at addr (an --http-addrs entry) /metrics, a
// Prometheus text exposition, into series -> value, within timeout.
func (n *nodeHTTP) metrics(addr string, timeout time.Duration) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := n.get(ctx, nodeURL(addr)+"/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if strings.Contains(string(body), "HTTPS server") {
			return nil, fmt.Errorf("%s serves HTTPS: write https://%s in --http-addrs (with --ca, --cert and --key)", addr, addr)
		}
		return nil, fmt.Errorf("GET %s/metrics: %s: %s", nodeURL(addr), resp.Status, strings.TrimSpace(string(body)))
	}
	return parseMetrics(resp.Body)
}

// nodeURL is an --http-addrs entry as a URL without a trailing slash:
// host:port is http://host:port.
func nodeURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}

// checkHTTPAddrs refuses an --http-addrs entry that is neither host:port
// nor an http:// or https:// URL.
func checkHTTPAddrs(addrs []string) error {
	for _, a := range addrs {
		scheme, rest, ok := strings.Cut(a, "://")
		if ok && (scheme != "http" && scheme != "https" || rest == "") || !ok && a == "" {
			return fmt.Errorf("--http-addrs: %q is not host:port, http://host:port nor https://host:port", a)
		}
	}
	return nil
}

// parseMetrics reads a Prometheus text exposition into series -> value.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}
