package node_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
	"github.com/loom-mesh/loom/observability"
)

// TestMain initialises PostgreSQL's data directory once for the binary
// and stops the shared servers at the end (pgtest.Main, then
// cosmostest's).
func TestMain(m *testing.M) {
	os.Exit(rabbitmqtest.Around(func() int { return cosmostest.Around(func() int { return pgtest.Main(m) }) }))
}

// TestPostgresInHealthAndMetrics: a node on PostgreSQL shows the server
// under locks and messageQueues in /health (a ping, latency, errors) and
// counts its round trips on /metrics; with the server killed, both
// components are degraded, naming the server, and failures are counted.
func TestPostgresInHealthAndMetrics(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	n := startConfigured(t, postgresNodeConfig(srv, "postgres"))
	base := "http://" + n.HTTPAddr()
	if code, b := httpPost(t, base+"/v1/actors/counter/p1/add", `{"delta":1}`, nil); code != 200 {
		t.Fatalf("add: %d %s", code, b)
	}
	health := func() observability.Report {
		t.Helper()
		_, b := httpGet(t, base+"/health")
		var r observability.Report
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("health %s: %v", b, err)
		}
		return r
	}
	r := health()
	for name, h := range map[string]*observability.PostgresHealth{"locks": r.Components.Locks.Postgres, "messageQueues": r.Components.MessageQueues.Postgres} {
		if h == nil || h.Addr != srv.Addr() || h.PingMs < 0 || h.Error != "" || h.RoundTrips == 0 {
			t.Fatalf("%s.postgres = %+v, want %s answering", name, h, srv.Addr())
		}
	}
	if r.Components.Locks.Redis != nil || r.Components.MessageQueues.Redis != nil {
		t.Fatalf("a node on PostgreSQL shows Redis in /health: %+v %+v", r.Components.Locks.Redis, r.Components.MessageQueues.Redis)
	}
	if r.Components.Locks.Status != observability.Healthy || r.Components.MessageQueues.Status != observability.Healthy {
		t.Fatalf("health with PostgreSQL up: locks %s (%s), messageQueues %s %v", r.Components.Locks.Status, r.Components.Locks.Reason, r.Components.MessageQueues.Status, r.Components.MessageQueues.Reasons)
	}
	metric := func(name string) float64 {
		t.Helper()
		_, b := httpGet(t, base+"/metrics")
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("/metrics lacks %s", name)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if v := metric(`loom_postgres_round_trips_total{role="journal"}`); v < 1 {
		t.Fatalf("journal round trips %v after a durable add", v)
	}
	if v := metric(`loom_postgres_round_trips_total{role="locks"}`); v < 1 {
		t.Fatalf("locks round trips %v after an activation", v)
	}
	if v := metric(`loom_postgres_round_trip_seconds_count{role="journal"}`); v < 1 {
		t.Fatalf("journal round-trip latencies counted %v", v)
	}
	failures := func() float64 {
		sum := 0.0
		for _, role := range []string{"locks", "journal"} {
			for _, kind := range []string{"connection", "dial"} {
				sum += metric(`loom_postgres_errors_total{kind="` + kind + `",role="` + role + `"}`)
			}
		}
		return sum
	}
	before := failures()

	srv.Kill()
	r = health()
	for name, c := range map[string]struct {
		status observability.Status
		h      *observability.PostgresHealth
	}{
		"locks":         {r.Components.Locks.Status, r.Components.Locks.Postgres},
		"messageQueues": {r.Components.MessageQueues.Status, r.Components.MessageQueues.Postgres},
	} {
		if c.status == observability.Healthy || c.h == nil || c.h.PingMs != -1 || c.h.Error == "" {
			t.Fatalf("%s with postgres killed: %s, postgres %+v; want not healthy, the ping failed", name, c.status, c.h)
		}
	}
	// An add with PostgreSQL down fails (503 or 502); it counts errors.
	if code, b := httpPost(t, base+"/v1/actors/counter/p1/add", `{"delta":1}`, nil); code == 200 {
		t.Fatalf("an add was acknowledged with postgres down: %s", b)
	}
	if after := failures(); after <= before {
		t.Fatalf("connection and dial errors %v -> %v with postgres down", before, after)
	}
}
