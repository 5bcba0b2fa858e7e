package observability

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func healthyReport() Report {
	return Report{
		Node: "n1",
		Components: Components{
			ActorPools: &PoolsHealth{Types: map[string]PoolHealth{"counter": {Active: 3, MaxSize: 10}}},
			Locks:      &LocksHealth{Session: "s1", Valid: true, LeaseRemainingMs: 8000, LastRenewalAgoMs: 500, TTLMs: 10000, RenewIntervalMs: 3000},
			Raft:       &RaftHealth{Role: "Follower", Leader: "n2", CommitIndex: 10, AppliedIndex: 10, LastContactMs: 40},
			Membership: &MembershipHealth{Members: map[string]int{"alive": 3}},
		},
	}
}

func TestHealthRules(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Report)
		want   Status
		reason string
	}{
		{"all fine", func(*Report) {}, Healthy, ""},
		{"no raft leader", func(r *Report) { r.Components.Raft.Leader = "" }, Unhealthy, "no Raft leader"},
		{"session lapsed", func(r *Report) { r.Components.Locks.Valid = false }, Unhealthy, "lapsed"},
		{"renewal late", func(r *Report) { r.Components.Locks.LastRenewalAgoMs = 4600 }, Degraded, "late"},
		{"leader silent", func(r *Report) { r.Components.Raft.LastContactMs = 6000 }, Degraded, "contact"},
		{"leader needs no contact", func(r *Report) {
			r.Components.Raft.Role, r.Components.Raft.Leader, r.Components.Raft.LastContactMs = "Leader", "n1", 0
		}, Healthy, ""},
		{"catching up", func(r *Report) { r.Components.Raft.CommitIndex = 5000 }, Degraded, "catching up"},
		{"member dead", func(r *Report) { r.Components.Membership.Failed = []string{"n3"} }, Degraded, "failed"},
		{"pool full", func(r *Report) {
			r.Components.ActorPools.Types["counter"] = PoolHealth{Active: 10, MaxSize: 10}
		}, Degraded, "full"},
		{"worst wins", func(r *Report) {
			r.Components.Membership.Failed = []string{"n3"}
			r.Components.Raft.Leader = ""
		}, Unhealthy, ""},
		{"single node", func(r *Report) { r.Components.Raft, r.Components.Membership = nil, nil }, Healthy, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := healthyReport()
			c.change(&r)
			if got := r.Evaluate(); got != c.want || r.Status != c.want {
				t.Fatalf("status %s, want %s", got, c.want)
			}
			if c.reason != "" {
				b, _ := json.Marshal(r)
				if !strings.Contains(string(b), c.reason) {
					t.Fatalf("report does not say %q: %s", c.reason, b)
				}
			}
			wantCode := http.StatusOK
			if c.want == Unhealthy {
				wantCode = http.StatusServiceUnavailable
			}
			if r.HTTPStatus() != wantCode {
				t.Fatalf("HTTP status %d, want %d", r.HTTPStatus(), wantCode)
			}
		})
	}
}

func TestHealthHandlers(t *testing.T) {
	r := healthyReport()
	health, live, ready := HealthHandlers(func() Report {
		rep := r
		rep.Timestamp = time.Now()
		rep.Evaluate()
		return rep
	})
	get := func(h http.Handler) (int, map[string]any) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("body %q: %v", w.Body.String(), err)
		}
		return w.Code, body
	}
	if code, body := get(health); code != 200 || body["status"] != "healthy" || body["components"].(map[string]any)["raft"] == nil {
		t.Fatalf("health %d %v", code, body)
	}
	r.Components.Raft.Leader = ""
	if code, body := get(health); code != 503 || body["status"] != "unhealthy" {
		t.Fatalf("health without leader %d %v", code, body)
	}
	if code, _ := get(ready); code != 503 {
		t.Fatalf("ready without leader %d", code)
	}
	if code, body := get(live); code != 200 || body["status"] != "alive" {
		t.Fatalf("live %d %v", code, body)
	}
}

func TestParseRaftStats(t *testing.T) {
	st := ParseRaftStats(map[string]string{"state": "Follower", "term": "4", "commit_index": "90", "applied_index": "80", "fsm_applied_index": "85", "last_contact": "12.5ms"})
	if st.Term != 4 || st.CommitIndex != 90 || st.AppliedIndex != 85 || st.LastContact != 12500*time.Microsecond || !st.LeaderKnown {
		t.Fatalf("%+v", st)
	}
	if st := ParseRaftStats(map[string]string{"state": "Candidate", "last_contact": "never"}); st.LeaderKnown || st.LastContact != -1 {
		t.Fatalf("%+v", st)
	}
	if st := ParseRaftStats(map[string]string{"state": "Leader", "last_contact": "0"}); !st.LeaderKnown || st.LastContact != 0 {
		t.Fatalf("%+v", st)
	}
}

// testutilCounter reads one counter child from m's registry.
func testutilCounter(t *testing.T, m *Metrics, name, label, value string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if hasLabel(mt, label, value) {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name && lp.GetValue() == value {
			return true
		}
	}
	return false
}

func TestWriteTree(t *testing.T) {
	t0 := time.Unix(100, 0)
	spans := []Span{
		{TraceID: "t1", SpanID: "a", Name: "POST /v1/actors/{type}/{id}/{method}", Node: "n1", Actor: "relay/r", Method: "call", CorrelationID: "cid", Start: t0, End: t0.Add(5 * time.Millisecond), DurationMs: 5},
		{TraceID: "t1", SpanID: "b", ParentSpanID: "a", Name: "loom.Invoke relay.call", Node: "n1", Start: t0.Add(time.Millisecond), End: t0.Add(4 * time.Millisecond), DurationMs: 3},
		{TraceID: "t1", SpanID: "c", ParentSpanID: "b", Name: "loom.turn relay.call", Node: "n2", Actor: "relay/r", Method: "call", Start: t0.Add(2 * time.Millisecond), End: t0.Add(3 * time.Millisecond), DurationMs: 1},
		{TraceID: "t1", SpanID: "d", ParentSpanID: "b", Name: "loom.activate relay", Node: "n2", Actor: "relay/r", Start: t0.Add(1500 * time.Microsecond), End: t0.Add(1800 * time.Microsecond), DurationMs: 0.3, Status: "error", Error: "boom"},
		{TraceID: "t1", SpanID: "c", ParentSpanID: "b", Name: "loom.turn relay.call", Node: "n2"}, // a duplicate from a second round
	}
	traces := Assemble(spans, 0)
	var b bytes.Buffer
	if err := WriteTree(&b, traces); err != nil {
		t.Fatal(err)
	}
	want := `trace t1  correlation cid  5.00 ms  nodes n1,n2
└─ n1  POST /v1/actors/{type}/{id}/{method}  relay/r call  5.00 ms
   └─ n1  loom.Invoke relay.call  3.00 ms
      ├─ n2  loom.activate relay  relay/r  0.30 ms  ERROR boom
      └─ n2  loom.turn relay.call  relay/r call  1.00 ms
`
	if b.String() != want {
		t.Fatalf("tree:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseQuery(t *testing.T) {
	now := time.Unix(10_000, 0)
	q, err := ParseQuery(map[string][]string{
		"correlationId": {"abc"}, "traceId": {"4BF92F3577B34DA6A3CE929D0E0E4736,00000000000000000000000000000001"},
		"actor": {"counter/c1"}, "since": {"15m"}, "until": {"1970-01-01T02:46:00Z"}, "limit": {"5"},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if q.CorrelationID != "abc" || len(q.TraceIDs) != 2 || q.TraceIDs[0] != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		q.Actor != "counter/c1" || !q.Since.Equal(now.Add(-15*time.Minute)) || !q.Until.Equal(time.Unix(9960, 0)) || q.Limit != 5 {
		t.Fatalf("%+v", q)
	}
	back, err := ParseQuery(q.Values(), now)
	if err != nil || back.CorrelationID != q.CorrelationID || !back.Since.Equal(q.Since) || len(back.TraceIDs) != 2 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if _, err := ParseQuery(map[string][]string{"traceId": {"xyz"}, "since": {"yesterday"}, "limit": {"-1"}}, now); err == nil ||
		!strings.Contains(err.Error(), "traceId") || !strings.Contains(err.Error(), "since") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("want every problem reported, got %v", err)
	}
}
