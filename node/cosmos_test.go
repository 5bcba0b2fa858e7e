package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/runtime"
)

// cosmosNodeConfig is a one-node cluster with its locks and journals in
// database db of the Cosmos DB test server s.
func cosmosNodeConfig(s *cosmostest.Server, db string) config.Config {
	cfg := config.Dev()
	cfg.Node.ID = "cosmos-node"
	cfg.Coordination.Backend, cfg.Journal.Backend = config.CoordinationCosmos, config.JournalCosmos
	cfg.Journal.Cosmos = config.CosmosConfig{Endpoint: s.Endpoint, Key: s.Key, Database: db, InsecureSkipVerify: true}
	return cfg
}

// TestCosmosNodeKeepsStateAcrossRestart: a node on Cosmos DB serves calls,
// shows the account in /health and counts its requests on /metrics;
// stopped and started again on the same account, it reads the state
// back; and a Send fails, saying durable messaging is not enabled.
func TestCosmosNodeKeepsStateAcrossRestart(t *testing.T) {
	srv := cosmostest.Shared(t)
	cfg := cosmosNodeConfig(srv, cosmostest.Database(t))
	n := startConfigured(t, cfg)
	base := "http://" + n.HTTPAddr()
	for i := range 3 {
		if code, b := httpPost(t, base+"/v1/actors/counter/c1/add", `{"delta":2}`, nil); code != 200 {
			t.Fatalf("add #%d: %d %s", i, code, b)
		}
	}
	_, b := httpGet(t, base+"/health")
	var r observability.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("health %s: %v", b, err)
	}
	c := r.Components.Cosmos
	if c == nil || c.Status != observability.Healthy || r.Status != observability.Healthy {
		t.Fatalf("health = %s; want healthy with a cosmos component", b)
	}
	for _, role := range []string{"locks", "journal"} {
		h := c.Roles[role]
		if h == nil || h.PingMs < 0 || h.RoundTrips == 0 || h.Addr != srv.Addr() {
			t.Fatalf("cosmos.%s = %+v; want %s answering", role, h, srv.Addr())
		}
	}
	if r.Components.MessageQueues != nil {
		t.Fatalf("a node on a Cosmos journal shows message queues: %+v", r.Components.MessageQueues)
	}
	_, mb := httpGet(t, base+"/metrics")
	for _, name := range []string{
		`loom_cosmos_requests_total{op="replace",role="journal"}`,
		`loom_cosmos_requests_total{op="create",role="journal"}`,
		`loom_cosmos_request_units_total{op="replace",role="journal"}`,
		`loom_cosmos_request_seconds_count{role="locks"}`,
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(mb)
		if m == nil {
			t.Fatalf("/metrics lacks %s", name)
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v <= 0 {
			t.Fatalf("%s = %v; want > 0", name, v)
		}
	}
	_, err := n.Send(t.Context(), runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add", Payload: []byte(`{"delta":1}`)})
	if !errors.Is(err, runtime.ErrMessagingDisabled) {
		t.Fatalf("Send on a Cosmos journal: %v; want ErrMessagingDisabled", err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	n2 := startConfigured(t, cfg)
	code, body := httpPost(t, "http://"+n2.HTTPAddr()+"/v1/actors/counter/c1/get", `{}`, nil)
	if code != 200 || !strings.Contains(body, "6") {
		t.Fatalf("get after restart: %d %s; want the value 6", code, body)
	}
}
