package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
)

// The tokens of the auth tests, by what they may do.
const (
	tokApp     = "app-token-0123456789"     // actors:call, tasks:run
	tokCounter = "counter-token-0123456789" // actors:call:counter
	tokOps     = "ops-token-0123456789"     // admin, metrics
	tokMetrics = "metrics-token-0123456789" // metrics
)

func withTokens(cfg *config.Config) {
	cfg.Auth.Tokens = map[string]config.TokenConfig{
		"app":     {Secret: tokApp, Scopes: []string{"actors:call", "tasks:run"}},
		"counter": {Secret: tokCounter, Scopes: []string{"actors:call:counter"}},
		"ops":     {Secret: tokOps, Scopes: []string{"admin", "metrics"}},
		"metrics": {Secret: tokMetrics, Scopes: []string{"metrics"}},
	}
}

// TestTokensCluster: three nodes with mutual TLS and tokens. Nodes
// forward calls to one another without tokens (their certificates speak
// for them); a cluster client needs a token with the scope; every HTTP
// route but the probes needs one, answering 401 without and 403 with the
// wrong scope, in the gateway's JSON error shape.
func TestTokensCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	pki := tlstest.New(t, "loom")
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) {
		secure(pki)(cfg)
		withTokens(cfg)
	})
	ctx := context.Background()
	cert, key := pki.Client("app")
	src, err := tlsconf.New(tlsconf.Options{CA: pki.CA, Cert: cert, Key: key, VerifyOutgoing: true})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig()}}
	do := func(method, path, token, body string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+c.Nodes[0].HTTPAddr()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	// Calls through every node reach actors on every node: forwarding
	// between nodes needs no token.
	for i := range 12 {
		code, body, _ := do("POST", fmt.Sprintf("/v1/actors/counter/k%d/add", i), tokApp, `{"delta":1}`)
		if code != http.StatusOK {
			t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	spread := 0
	for _, nd := range c.Nodes {
		if nd.Runtime().Active("counter") > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Fatalf("actors on %d node(s): no call was forwarded", spread)
	}

	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/health/live", "", 200},
		{"GET", "/health/ready", "", 200},
		{"GET", "/health", "", 401},
		{"GET", "/health", tokMetrics, 200},
		{"GET", "/metrics", tokApp, 403},
		{"GET", "/metrics", tokOps, 200},
		{"POST", "/v1/actors/counter/k1/add", "", 401},
		{"POST", "/v1/actors/counter/k1/add", "Bearer-less-garbage-value", 401},
		{"POST", "/v1/actors/counter/k1/add", tokCounter, 200},
		{"POST", "/v1/actors/counter/k1/add", tokOps, 403},
		{"POST", "/v1/actors/register/r1/read", tokCounter, 403},
		{"POST", "/v1/actors/count%65r/k1/add", tokCounter, 200}, // the same type, escaped
		{"POST", "/v1/actors/register/r1/read", tokApp, 200},
		{"POST", "/v1/messages/counter/k1/add", tokCounter, 202},
		{"POST", "/v1/messages/register/r1/read", tokCounter, 403},
		{"GET", "/v1/actors", tokCounter, 200},
		{"GET", "/v1/actors", "", 401},
		{"GET", "/v1/cluster", tokApp, 403},
		{"GET", "/v1/cluster", tokOps, 200},
		{"GET", "/v1/deadletters", tokApp, 403},
		{"GET", "/v1/deadletters", tokOps, 200},
		{"GET", "/v1/admin/journal/counter/k1", tokCounter, 403},
		{"GET", "/v1/admin/journal/counter/k1", tokOps, 200},
		{"GET", "/v1/admin/keyring", tokApp, 403},
		{"GET", "/traces", tokMetrics, 403},
		{"GET", "/v1/actors/counter/k1/reminders", tokCounter, 403},
		{"GET", "/no/such/route", tokApp, 403},
		{"GET", "/no/such/route", tokOps, 404},
		// The dashboard: its page is open, its data is not.
		{"GET", "/ui/", "", 200},
		{"GET", "/ui", "", 200}, // redirected to /ui/
		{"GET", "/ui/app.js", "", 200},
		{"GET", "/ui/nothing.js", "", 404},
		{"POST", "/ui/", "", 401},
		{"GET", "/ui/a/b", "", 401},
		{"GET", "/ui/%2e%2e/v1/cluster", "", 401},
		{"GET", "/v1/admin/nodes", "", 401},
		{"GET", "/v1/admin/nodes", tokMetrics, 403},
		{"GET", "/v1/admin/nodes", tokOps, 200},
		{"GET", "/v1/admin/actors/counter/k1", tokCounter, 403},
		{"GET", "/v1/admin/actors/counter/k1", tokOps, 200},
		{"GET", "/v1/admin/queues", tokMetrics, 403},
		{"GET", "/v1/admin/queues", tokOps, 200},
		{"GET", "/v1/stats/calls", "", 401},
		{"GET", "/v1/stats/calls", tokApp, 403},
		{"GET", "/v1/stats/calls", tokMetrics, 200},
	} {
		body := `{"delta":1}`
		if strings.Contains(tc.path, "register") {
			body = `{}`
		}
		code, out, h := do(tc.method, tc.path, tc.token, body)
		if code != tc.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.token, code, out, tc.want)
			continue
		}
		if code == 401 || code == 403 {
			var eb gateway.ErrorBody
			if err := json.Unmarshal([]byte(out), &eb); err != nil || eb.Error.Code == "" {
				t.Errorf("%s %s: the %d body is not the JSON error shape: %s", tc.method, tc.path, code, out)
			}
			if wantCode := map[int]string{401: "unauthenticated", 403: "permission_denied"}[code]; eb.Error.Code != wantCode {
				t.Errorf("%s %s: code %q, want %q", tc.method, tc.path, eb.Error.Code, wantCode)
			}
			if code == 401 && h.Get("WWW-Authenticate") != `Bearer realm="loom"` {
				t.Errorf("%s %s: 401 without WWW-Authenticate", tc.method, tc.path)
			}
			if strings.Contains(out, "token-0123456789") {
				t.Errorf("%s %s: the answer repeats a token: %s", tc.method, tc.path, out)
			}
		}
	}

	// What a node asks its peers for a caller (the dashboard's nodes, an
	// actor's owner, call rates; traces) goes with the caller's token,
	// over TLS: every peer answers.
	getJSON := func(path, token string, v any) {
		t.Helper()
		code, body, _ := do("GET", path, token, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	var nv node.NodesView
	getJSON("/v1/admin/nodes", tokOps, &nv)
	if len(nv.Members) != 3 {
		t.Fatalf("nodes: %+v", nv)
	}
	for _, m := range nv.Members {
		if m.Report == nil || m.Report.Raft == nil || m.Report.Session == nil || m.Error != "" {
			t.Fatalf("member %s: report %+v, error %q", m.ID, m.Report, m.Error)
		}
	}
	for i := range 12 {
		id := fmt.Sprintf("k%d", i)
		owner := ""
		for _, nd := range c.Nodes {
			if nd.Runtime().IsActive("counter", id) {
				owner = nd.ID()
			}
		}
		if owner == "" || owner == c.Nodes[0].ID() {
			continue
		}
		var av node.ActorView
		getJSON("/v1/admin/actors/counter/"+id, tokOps, &av)
		if av.Node != owner || av.Owner != owner || !av.Active || av.ActivatedAt == nil || av.Note != "" {
			t.Fatalf("actor %s on %s, as %s tells: %+v", id, owner, c.Nodes[0].ID(), av)
		}
		break
	}
	var cs node.CallStatsView
	getJSON("/v1/stats/calls", tokMetrics, &cs)
	var traces observability.Result
	getJSON("/traces", tokOps, &traces)
	for _, nd := range c.Nodes {
		if cs.Nodes[nd.ID()] != "ok" {
			t.Fatalf("call rates: %s answered %q", nd.ID(), cs.Nodes[nd.ID()])
		}
		if st := traces.Nodes[nd.ID()]; st != "tracing disabled" {
			t.Fatalf("traces: %s answered %q", nd.ID(), st)
		}
	}

	// The cluster client: a token of the right scope calls; none is
	// refused at Dial, with the reason; a narrow token calls its type
	// only; a token never goes out without TLS.
	dial := func(token string) (*client.Client, error) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return client.Dial(dctx, []string{c.Nodes[1].GRPCAddr()}, client.Options{Token: token, TLS: client.TLSOptions{CA: pki.CA, Cert: cert, Key: key}})
	}
	cl, err := dial(tokCounter)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if v, err := builtin.CounterGet.Call(ctx, cl, "k1"); err != nil || v.Value != 4 {
		t.Fatalf("client with the counter token: %+v, %v; want 4", v, err)
	}
	if _, err := builtin.RegisterRead.Call(ctx, cl, "r1"); !errors.Is(err, transport.ErrPermissionDenied) || !strings.Contains(err.Error(), `token "counter" lacks the scope actors:call:register`) {
		t.Fatalf("client calling a type its token does not name: %v", err)
	}
	if _, err := dial(""); !errors.Is(err, transport.ErrUnauthenticated) {
		t.Fatalf("client without a token: %v; want unauthenticated", err)
	}
	if _, err := dial("wrong-token-0123456789"); !errors.Is(err, transport.ErrUnauthenticated) {
		t.Fatalf("client with an unknown token: %v; want unauthenticated", err)
	}
	if _, err := client.Dial(ctx, []string{c.Nodes[1].GRPCAddr()}, client.Options{Token: tokApp}); err == nil || !strings.Contains(err.Error(), "a token needs TLS") {
		t.Fatalf("client with a token and no TLS: %v", err)
	}
}
