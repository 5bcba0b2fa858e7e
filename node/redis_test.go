package node_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"

	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/observability"
)

// TestRedisInHealthAndMetrics: a node on Redis shows the server under
// locks and messageQueues in /health (a ping, latency, errors) and counts
// its round trips on /metrics; with redis-server killed, both components
// are degraded, naming the server, and connection errors are counted.
func TestRedisInHealthAndMetrics(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	n := startConfigured(t, redisNodeConfig(srv))
	base := "http://" + n.HTTPAddr()
	if code, b := httpPost(t, base+"/v1/actors/counter/r1/add", `{"delta":1}`, nil); code != 200 {
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
	for name, h := range map[string]*observability.RedisHealth{"locks": r.Components.Locks.Redis, "messageQueues": r.Components.MessageQueues.Redis} {
		if h == nil || h.Addr != srv.Addr || h.PingMs < 0 || h.Error != "" || h.RoundTrips == 0 {
			t.Fatalf("%s.redis = %+v, want %s answering", name, h, srv.Addr)
		}
	}
	if r.Components.Locks.Status != observability.Healthy || r.Components.MessageQueues.Status != observability.Healthy {
		t.Fatalf("health with Redis up: locks %s (%s), messageQueues %s %v", r.Components.Locks.Status, r.Components.Locks.Reason, r.Components.MessageQueues.Status, r.Components.MessageQueues.Reasons)
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
	if v := metric(`loom_redis_round_trips_total{role="journal"}`); v < 1 {
		t.Fatalf("journal round trips %v after a durable add", v)
	}
	if v := metric(`loom_redis_round_trips_total{role="locks"}`); v < 1 {
		t.Fatalf("locks round trips %v after an activation", v)
	}
	before := metric(`loom_redis_errors_total{kind="connection",role="locks"}`) + metric(`loom_redis_errors_total{kind="connection",role="journal"}`)

	srv.Kill()
	r = health()
	for name, c := range map[string]struct {
		status observability.Status
		h      *observability.RedisHealth
	}{
		"locks":         {r.Components.Locks.Status, r.Components.Locks.Redis},
		"messageQueues": {r.Components.MessageQueues.Status, r.Components.MessageQueues.Redis},
	} {
		if c.status == observability.Healthy || c.h == nil || c.h.PingMs != -1 || c.h.Error == "" {
			t.Fatalf("%s with redis-server killed: %s, redis %+v; want not healthy, the ping failed", name, c.status, c.h)
		}
	}
	// An add with Redis down fails (503 or 502); it counts errors.
	if code, b := httpPost(t, base+"/v1/actors/counter/r1/add", `{"delta":1}`, nil); code == 200 {
		t.Fatalf("an add was acknowledged with redis-server down: %s", b)
	}
	after := metric(`loom_redis_errors_total{kind="connection",role="locks"}`) + metric(`loom_redis_errors_total{kind="connection",role="journal"}`)
	if after <= before {
		t.Fatalf("connection errors %v -> %v with redis-server down", before, after)
	}
}
