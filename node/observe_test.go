package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collecttrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/runtime"
)

// tracedCluster is a cluster of nodes with tracing on and fixed ports, so
// that a node can be stopped and started again on the same data and
// addresses. Its nodes host the "relay" actor type, whose method calls a
// counter.
type tracedCluster struct {
	t     *testing.T
	cfgs  []config.Config
	nodes []*node.Node
	mu    sync.Mutex
}

// RelayCall is relay.call's argument: the counter to add 1 to.
type RelayCall struct {
	Counter string `json:"counter"`
}

// Relay is the "relay" actor type: its call method adds 1 to a counter,
// an actor calling an actor, through its Context.
var Relay = runtime.NewType("relay", func(string) *struct{} { return &struct{}{} })

var _ = runtime.AddMethod(Relay, "call", func(ctx runtime.Context, _ *struct{}, in RelayCall) (builtin.CounterValue, error) {
	// A call made while handling a call: same context, so the same
	// trace and correlation id.
	return builtin.CounterAdd.Call(ctx, ctx.Actors(), in.Counter, builtin.CounterDelta{Delta: 1})
})

func startTraced(t *testing.T, n int, adjust func(*config.Config)) *tracedCluster {
	t.Helper()
	dir := t.TempDir()
	c := &tracedCluster{t: t, nodes: make([]*node.Node, n)}
	seed := nodetest.FreePort(t)
	for i := range n {
		port, join := 0, fmt.Sprintf("127.0.0.1:%d", seed)
		if i == 0 {
			port, join = seed, ""
		}
		if port == 0 {
			port = nodetest.FreePort(t)
		}
		cfg := nodetest.Config(dir, fmt.Sprintf("n%d", i+1), port, join, n)
		cfg.Node.RaftPort = nodetest.FreePort(t)
		cfg.Tracing.Enabled = true
		if adjust != nil {
			adjust(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.start(t, allIndexes(n)...)
	return c
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// start starts the nodes at idx concurrently (again, if they ran before).
func (c *tracedCluster) start(t *testing.T, idx ...int) {
	t.Helper()
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		nd, err := node.New(node.Options{Config: c.cfgs[i], Builtins: true, Types: []runtime.Definition{Relay}, Logger: nodetest.Logger(c.cfgs[i].Node.ID)})
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.nodes[i] = nd
		c.mu.Unlock()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = nd.Shutdown(ctx)
		})
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[k] = nd.Start(ctx)
		})
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatalf("starting %s: %v", c.cfgs[idx[k]].Node.ID, err)
		}
	}
}

func (c *tracedCluster) stop(t *testing.T, idx ...int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, i := range idx {
		nd := c.nodes[i]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := nd.Shutdown(ctx); err != nil {
				t.Errorf("stopping %s: %v", nd.ID(), err)
			}
		})
	}
	wg.Wait()
}

// waitRing waits until every node's ring has all n members.
func (c *tracedCluster) waitRing(t *testing.T) {
	nodetest.WaitFor(t, 20*time.Second, "every ring to have every member", func() bool {
		for _, nd := range c.nodes {
			if r := nd.Info().Ring; r == nil || len(r.Members) != len(c.nodes) {
				return false
			}
		}
		return true
	})
}

// keyOwnedBy returns an actor id of typ that the ring places on owner.
func keyOwnedBy(t *testing.T, ids []string, typ, prefix, owner string) string {
	t.Helper()
	ring := placement.NewRing(ids, placement.DefaultConfig())
	for i := range 10000 {
		id := fmt.Sprintf("%s%d", prefix, i)
		if n, _ := ring.Locate(typ + "/" + id); n == owner {
			return id
		}
	}
	t.Fatalf("no %s id placed on %s", typ, owner)
	return ""
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestOneTraceAcrossThreeNodes: a client calls node A's gateway for an
// actor owned by B, whose method calls an actor on C. The call is ONE
// trace, with correct parent/child links, found by its correlation id from
// any node.
//
// It runs on both tracing paths: the light store-only tracer (no exporter,
// the default) and the OpenTelemetry SDK (an OTLP endpoint is set: here a
// collector in the test, which must receive the spans).
func TestOneTraceAcrossThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Run("store", func(t *testing.T) { testOneTraceAcrossThreeNodes(t, nil) })
	t.Run("sdk", func(t *testing.T) {
		col := startCollector(t)
		// Registered before the nodes are, so run after they shut down
		// (and flushed their exporters).
		t.Cleanup(func() {
			if col.spans.Load() == 0 {
				t.Error("the OTLP collector received no span")
			}
		})
		testOneTraceAcrossThreeNodes(t, func(c *config.Config) { c.Tracing.OTLPEndpoint = col.addr })
	})
}

// collector is an OTLP/gRPC trace collector that counts what it receives.
type collector struct {
	collecttrace.UnimplementedTraceServiceServer
	addr  string
	spans atomic.Int64
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collecttrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *collecttrace.ExportTraceServiceRequest) (*collecttrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans.Add(int64(len(ss.Spans)))
		}
	}
	return &collecttrace.ExportTraceServiceResponse{}, nil
}

func testOneTraceAcrossThreeNodes(t *testing.T, adjust func(*config.Config)) {
	c := startTraced(t, 3, adjust)
	c.waitRing(t)
	ids := []string{"n1", "n2", "n3"}
	relayID := keyOwnedBy(t, ids, "relay", "r", "n2")
	counterID := keyOwnedBy(t, ids, "counter", "c", "n3")

	const cid = "corr-three-nodes-1"
	body, _ := json.Marshal(RelayCall{Counter: counterID})
	req, _ := http.NewRequest("POST", "http://"+c.nodes[0].HTTPAddr()+"/v1/actors/relay/"+relayID+"/call", bytes.NewReader(body))
	req.Header.Set("X-Correlation-ID", cid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(out), `"value":1`) {
		t.Fatalf("call: %d %s", resp.StatusCode, out)
	}

	// The spans every node must have recorded, as (node, name) chains from
	// the counter's journal append up to the gateway's root span.
	chain := []struct{ node, name string }{
		{"n3", "loom.journal.append"},
		{"n3", "loom.turn counter.add"},   // the turn on C
		{"n2", "loom.Invoke counter.add"}, // the hop B → C
		{"n2", "loom.turn relay.call"},    // the turn on B
		{"n1", "loom.Invoke relay.call"},  // the hop A → B
		{"n1", "POST /v1/actors/{type}/{id}/{method}"},
	}
	var first observability.Result
	for i, nd := range c.nodes {
		var res observability.Result
		// Spans end before the replies are sent; poll anyway, bounded.
		nodetest.WaitFor(t, 10*time.Second, "the whole trace from "+nd.ID(), func() bool {
			code, b := httpGet(t, "http://"+nd.HTTPAddr()+"/traces?correlationId="+cid)
			if code != 200 {
				t.Fatalf("/traces on %s: %d %s", nd.ID(), code, b)
			}
			res = observability.Result{}
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			return len(res.Traces) == 1 && len(res.Traces[0].Nodes) == 3 && len(res.Traces[0].Spans) >= len(chain)
		})
		if len(res.Traces) != 1 {
			t.Fatalf("from %s: %d traces, want 1", nd.ID(), len(res.Traces))
		}
		tr := res.Traces[0]
		for _, n := range ids {
			if res.Nodes[n] != "ok" {
				t.Fatalf("from %s: node %s answered %q", nd.ID(), n, res.Nodes[n])
			}
		}
		if len(tr.Roots) != 1 {
			t.Fatalf("from %s: %d roots, want 1: %+v", nd.ID(), len(tr.Roots), tr.Roots)
		}
		byID := map[string]observability.Span{}
		for _, sp := range tr.Spans {
			byID[sp.SpanID] = sp
			if sp.TraceID != tr.TraceID || sp.CorrelationID != cid {
				t.Fatalf("span %s on %s: trace %s, correlation id %q", sp.Name, sp.Node, sp.TraceID, sp.CorrelationID)
			}
			if sp.ParentSpanID != "" {
				if _, ok := byID[sp.ParentSpanID]; !ok && !containsSpan(tr.Spans, sp.ParentSpanID) {
					t.Fatalf("span %s on %s: parent %s not in the trace", sp.Name, sp.Node, sp.ParentSpanID)
				}
			}
		}
		// Walk up from the append.
		var cur observability.Span
		for _, sp := range tr.Spans {
			if sp.Node == chain[0].node && sp.Name == chain[0].name {
				cur = sp
			}
		}
		for k, want := range chain {
			if cur.Node != want.node || cur.Name != want.name {
				t.Fatalf("from %s: link %d is %s %q, want %s %q\n%s", nd.ID(), k, cur.Node, cur.Name, want.node, want.name, tree(tr))
			}
			if k < len(chain)-1 {
				parent, ok := byID[cur.ParentSpanID]
				if !ok {
					t.Fatalf("from %s: %s %q has no parent in the trace\n%s", nd.ID(), cur.Node, cur.Name, tree(tr))
				}
				if !contains(parent.Children, cur.SpanID) {
					t.Fatalf("from %s: %q does not list %q as a child", nd.ID(), parent.Name, cur.Name)
				}
				cur = parent
			}
		}
		if cur.SpanID != tr.Roots[0] {
			t.Fatalf("from %s: the gateway span is not the root\n%s", nd.ID(), tree(tr))
		}
		// The activations on B and C are children of their turns, with the
		// lock acquisition and the replay under them.
		for _, want := range []struct{ node, name, parent string }{
			{"n2", "loom.activate relay", "loom.turn relay.call"},
			{"n3", "loom.activate counter", "loom.turn counter.add"},
			{"n3", "loom.lock.acquire", "loom.activate counter"},
			{"n3", "loom.journal.read", "loom.activate counter"},
		} {
			found := false
			for _, sp := range tr.Spans {
				found = found || (sp.Node == want.node && sp.Name == want.name && byID[sp.ParentSpanID].Name == want.parent)
			}
			if !found {
				t.Fatalf("from %s: no span %s under %s on %s\n%s", nd.ID(), want.name, want.parent, want.node, tree(tr))
			}
		}
		if i == 0 {
			first = res
			t.Logf("the trace, as n1 answers it:\n%s", tree(tr))
		} else if len(tr.Spans) != len(first.Traces[0].Spans) || tr.TraceID != first.Traces[0].TraceID {
			t.Fatalf("%s answers %d spans of %s, n1 %d of %s", nd.ID(), len(tr.Spans), tr.TraceID, len(first.Traces[0].Spans), first.Traces[0].TraceID)
		}
	}

	// The Go API answers the same, by trace id and by actor.
	res := c.nodes[2].QueryTraces(context.Background(), observability.Query{TraceIDs: []string{first.Traces[0].TraceID}})
	if len(res.Traces) != 1 || len(res.Traces[0].Spans) != len(first.Traces[0].Spans) {
		t.Fatalf("QueryTraces by trace id: %+v", res)
	}
	res = c.nodes[1].QueryTraces(context.Background(), observability.Query{Actor: "counter/" + counterID})
	if len(res.Traces) != 1 || res.Traces[0].TraceID != first.Traces[0].TraceID || len(res.Traces[0].Spans) != len(first.Traces[0].Spans) {
		t.Fatalf("QueryTraces by actor: %d traces", len(res.Traces))
	}

	// A cluster client that traces nothing itself: the owner's spans
	// start a trace, with a correlation id made up where the call entered.
	addrs := []string{c.nodes[0].GRPCAddr(), c.nodes[1].GRPCAddr(), c.nodes[2].GRPCAddr()}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := builtin.CounterGet.Call(dctx, cl, counterID); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the client call's trace", func() bool {
		res = c.nodes[0].QueryTraces(context.Background(), observability.Query{Actor: "counter/" + counterID, Limit: 1})
		return len(res.Traces) == 1 && res.Traces[0].TraceID != first.Traces[0].TraceID
	})
	tr := res.Traces[0]
	if len(tr.Spans) != 1 || tr.Spans[0].Name != "loom.turn counter.get" || tr.Spans[0].Node != "n3" || tr.Spans[0].ParentSpanID != "" || tr.CorrelationID == "" {
		t.Fatalf("client call trace:\n%s%+v", tree(tr), tr.Spans)
	}
}

func containsSpan(spans []observability.Span, id string) bool {
	for _, sp := range spans {
		if sp.SpanID == id {
			return true
		}
	}
	return false
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func tree(tr observability.Trace) string {
	var b strings.Builder
	_ = observability.WriteTree(&b, []observability.Trace{tr})
	return b.String()
}

// scrape fetches and parses a node's /metrics with the Prometheus text
// parser.
func scrape(t *testing.T, nd *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	code, b := httpGet(t, "http://"+nd.HTTPAddr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, b)
	}
	return mfs
}

// value sums a family's samples whose labels include want: counter and
// gauge values, histogram sample counts.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == want[i] && lp.GetValue() == want[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// TestMetricsScrapedAndMoving scrapes /metrics of a one-node Raft cluster
// with the Prometheus text parser: every family is present, and moves when
// calls are made.
func TestMetricsScrapedAndMoving(t *testing.T) {
	c := startTraced(t, 1, func(cfg *config.Config) {
		cfg.ActorPools.Types = map[string]config.PoolOverride{"kv": {MaxSize: new(2)}}
	})
	nd := c.nodes[0]
	ctx := context.Background()
	before := scrape(t, nd)
	for _, name := range []string{
		"go_goroutines", "process_cpu_seconds_total", "loom_disk_written_bytes_total",
		"loom_raft_state", "loom_raft_commit_index", "loom_raft_applied_index", "loom_raft_term", "loom_raft_leader_known",
		"loom_raft_batches_total", "loom_raft_batch_commands_total", "loom_cluster_members",
		"loom_lock_acquisitions_total", "loom_fencing_rejections_total", "loom_session_renewals_total", "loom_session_lapses_total",
		"loom_journal_appends_total", "loom_journal_append_duration_seconds", "loom_journal_append_entries",
		"loom_actors_active", "loom_mailbox_depth", "loom_call_hops", "loom_trace_store_spans", "loom_trace_store_traces",
	} {
		if before[name] == nil {
			t.Errorf("family %s missing before any call", name)
		}
	}
	if value(before, "loom_raft_state", "group", "0", "state", "Leader") != 1 || value(before, "loom_cluster_members", "state", "alive") != 1 {
		t.Errorf("raft state / members: %v %v", value(before, "loom_raft_state", "group", "0", "state", "Leader"), value(before, "loom_cluster_members", "state", "alive"))
	}

	for i := range 3 {
		for range 2 {
			if _, err := builtin.CounterAdd.Call(ctx, nd, fmt.Sprintf("c%d", i), builtin.CounterDelta{Delta: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := builtin.KVPutMethod.Call(ctx, nd, fmt.Sprintf("k%d", i), builtin.KVPut{Key: "a", Value: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nd.Invoke(ctx, "counter", "c0", "add", []byte(`{"delta":"x"}`)); err == nil {
		t.Fatal("a bad payload was accepted")
	}
	if err := nd.Runtime().Deactivate(ctx, "counter", "c0"); err != nil {
		t.Fatal(err)
	}

	var after map[string]*dto.MetricFamily
	// Renewals happen every second: wait for one more.
	nodetest.WaitFor(t, 10*time.Second, "a session renewal to be counted", func() bool {
		after = scrape(t, nd)
		return value(after, "loom_session_renewals_total", "outcome", "ok") > value(before, "loom_session_renewals_total", "outcome", "ok")
	})
	moved := func(name string, labels ...string) {
		t.Helper()
		b, a := value(before, name, labels...), value(after, name, labels...)
		if a <= b || a < 0 {
			t.Errorf("%s%v did not move: %v → %v", name, labels, b, a)
		}
	}
	moved("loom_calls_total", "type", "counter", "method", "add", "outcome", "ok")
	moved("loom_calls_total", "type", "counter", "method", "add", "outcome", "bad_request")
	moved("loom_calls_total", "type", "kv", "method", "put")
	moved("loom_call_duration_seconds", "type", "counter", "method", "add")
	moved("loom_call_hops")
	moved("loom_actor_activations_total", "type", "counter", "outcome", "ok")
	moved("loom_actor_activation_duration_seconds", "type", "kv")
	moved("loom_actor_deactivations_total", "type", "counter", "reason", "requested")
	moved("loom_actor_deactivations_total", "type", "kv", "reason", "evicted")
	moved("loom_actor_evictions_total", "type", "kv")
	moved("loom_journal_appends_total", "outcome", "ok")
	moved("loom_journal_append_duration_seconds")
	moved("loom_journal_append_entries")
	moved("loom_raft_apply_duration_seconds", "op", "append")
	moved("loom_raft_apply_duration_seconds", "op", "acquire")
	moved("loom_raft_commit_index")
	moved("loom_raft_applied_index")
	moved("loom_raft_batches_total")
	moved("loom_lock_acquisitions_total", "outcome", "ok")
	moved("loom_session_renewals_total", "outcome", "ok")
	moved("loom_trace_store_spans")
	if got := value(after, "loom_actors_active", "type", "counter"); got != 2 {
		t.Errorf("loom_actors_active{type=counter} = %v, want 2", got)
	}
	if got := value(after, "loom_actors_active", "type", "kv"); got != 2 {
		t.Errorf("loom_actors_active{type=kv} = %v, want 2 (maxSize)", got)
	}
	if got := value(after, "loom_mailbox_depth", "type", "counter"); got != 0 {
		t.Errorf("loom_mailbox_depth{type=counter} = %v, want 0", got)
	}
}

func healthOf(t *testing.T, nd *node.Node) (int, observability.Report) {
	t.Helper()
	code, b := httpGet(t, "http://"+nd.HTTPAddr()+"/health")
	var r observability.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("/health: %v: %s", err, b)
	}
	return code, r
}

// TestHealthUnhealthyWithoutRaftLeader: /health answers 503 once the node
// has lost its Raft leader (two of three nodes stop), and healthy again
// once they are back.
func TestHealthUnhealthyWithoutRaftLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts, stops and restarts a 3-node cluster")
	}
	c := startTraced(t, 3, nil)
	c.waitRing(t)
	n1 := c.nodes[0]
	nodetest.WaitFor(t, 20*time.Second, "n1 healthy", func() bool {
		code, r := healthOf(t, n1)
		return code == 200 && r.Status == observability.Healthy
	})
	code, r := healthOf(t, n1)
	if r.Components.Raft == nil || r.Components.Locks == nil || r.Components.ActorPools == nil || r.Components.Membership == nil ||
		r.Components.Membership.Members["alive"] != 3 || r.Components.Raft.Leader == "" || !r.Components.Locks.Valid || r.Node != "n1" || r.Timestamp.IsZero() {
		t.Fatalf("healthy report %d %+v", code, r)
	}
	if code, _ := httpGet(t, "http://"+n1.HTTPAddr()+"/health/ready"); code != 200 {
		t.Fatalf("/health/ready %d", code)
	}

	c.stop(t, 1, 2)
	nodetest.WaitFor(t, 20*time.Second, "n1 unhealthy (503) without a Raft leader", func() bool {
		code, r := healthOf(t, n1)
		return code == http.StatusServiceUnavailable && r.Status == observability.Unhealthy &&
			r.Components.Raft != nil && r.Components.Raft.Status == observability.Unhealthy
	})
	if code, _ := httpGet(t, "http://"+n1.HTTPAddr()+"/health/ready"); code != 503 {
		t.Fatalf("/health/ready without leader %d", code)
	}
	if code, _ := httpGet(t, "http://"+n1.HTTPAddr()+"/health/live"); code != 200 {
		t.Fatalf("/health/live without leader %d", code)
	}

	c.start(t, 1, 2)
	nodetest.WaitFor(t, 30*time.Second, "n1 healthy again", func() bool {
		code, r := healthOf(t, n1)
		return code == 200 && r.Status == observability.Healthy
	})
}
