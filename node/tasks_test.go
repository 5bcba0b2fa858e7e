package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// Tasks for the node tests.
var (
	// Shout upper-cases and counts its input; it reports the correlation id
	// it ran under on shoutCIDs (when set).
	Shout = task.New("shout", func(ctx context.Context, s string) (string, error) {
		if shoutCIDs != nil {
			shoutCIDs <- runtime.CorrelationID(ctx)
		}
		if s == "" {
			return "", errors.New("nothing to shout")
		}
		return strings.ToUpper(s) + "!", nil
	})
	shoutCIDs chan string

	// Announcer is an actor type whose method runs a task: the task sees
	// the turn's correlation id.
	Announcer = runtime.NewType("announcer", func(string) *struct{} { return &struct{}{} })
	Announce  = runtime.AddMethod(Announcer, "announce", func(ctx runtime.Context, _ *struct{}, s string) (string, error) {
		r := Shout.Run(ctx, s)
		return r.Value, r.Err
	})
)

func startNodeWithTasks(t *testing.T, tasks ...task.Definition) *node.Node {
	t.Helper()
	return startNodeWithTasksCfg(t, nil, tasks...)
}

func startNodeWithTasksCfg(t *testing.T, adjust func(*config.Config), tasks ...task.Definition) *node.Node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Journal.Backend = config.JournalMemory
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := node.New(node.Options{Config: cfg, Types: []runtime.Definition{Announcer}, Tasks: tasks, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n
}

func httpPost(t *testing.T, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNodeRunsTasksOverHTTP(t *testing.T) {
	shoutCIDs = make(chan string, 8)
	t.Cleanup(func() { shoutCIDs = nil })
	n := startNodeWithTasks(t, Shout)
	base := "http://" + n.HTTPAddr()
	// Shout's counters count all its runs in this process (other tests'
	// too): compare with where they start.
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(n.TaskMetrics()); err != nil {
		t.Fatal(err)
	}
	runs0, failures0 := counter(t, reg, "loom_task_runs_total", "shout"), counter(t, reg, "loom_task_failures_total", "shout")

	status, body := httpPost(t, base+"/v1/tasks/shout", `"hello"`, map[string]string{gateway.HeaderCorrelationID: "http-1"})
	var o task.Outcome
	if err := json.Unmarshal([]byte(body), &o); err != nil || status != 200 || !o.Success || string(o.Value) != `"HELLO!"` || o.Attempts != 1 {
		t.Fatalf("%d %s", status, body)
	}
	if cid := <-shoutCIDs; cid != "http-1" {
		t.Fatalf("correlation id %q", cid)
	}
	status, body = httpPost(t, base+"/v1/tasks/shout", `""`, nil)
	<-shoutCIDs
	if status != 422 || !strings.Contains(body, `"success":false`) || !strings.Contains(body, "nothing to shout") {
		t.Fatalf("%d %s", status, body)
	}
	if status, body = httpPost(t, base+"/v1/tasks/whisper", `"x"`, nil); status != 404 || !strings.Contains(body, "unknown_task") {
		t.Fatalf("%d %s", status, body)
	}
	if status, body = httpPost(t, base+"/v1/tasks/shout", `hello`, nil); status != 400 || !strings.Contains(body, "bad_payload") || !strings.Contains(body, "not valid JSON") {
		t.Fatalf("%d %s", status, body)
	}

	// Fire and forget: 202 at once, then the run shows in the metrics.
	if status, body = httpPost(t, base+"/v1/tasks/shout?async=true", `"later"`, map[string]string{gateway.HeaderCorrelationID: "bg-1"}); status != 202 {
		t.Fatalf("%d %s", status, body)
	}
	if cid := <-shoutCIDs; cid != "bg-1" {
		t.Fatalf("background correlation id %q", cid)
	}
	nodetest.WaitFor(t, 5*time.Second, "the background run to be counted", func() bool {
		return counter(t, reg, "loom_task_runs_total", "shout") == runs0+3
	})
	if got := counter(t, reg, "loom_task_failures_total", "shout") - failures0; got != 1 {
		t.Fatalf("failures %v", got)
	}
	if got := n.TaskNames(); len(got) != 1 || got[0] != "shout" {
		t.Fatal(got)
	}
}

func TestActorTurnPassesItsCorrelationIDToTasks(t *testing.T) {
	shoutCIDs = make(chan string, 8)
	t.Cleanup(func() { shoutCIDs = nil })
	n := startNodeWithTasks(t, Shout)
	status, body := httpPost(t, "http://"+n.HTTPAddr()+"/v1/actors/announcer/a1/announce", `"news"`, map[string]string{gateway.HeaderCorrelationID: "turn-1"})
	if status != 200 || strings.TrimSpace(body) != `"NEWS!"` {
		t.Fatalf("%d %s", status, body)
	}
	if cid := <-shoutCIDs; cid != "turn-1" {
		t.Fatalf("the task ran under correlation id %q", cid)
	}
}

func TestNodeTaskInvokerAndShutdown(t *testing.T) {
	n := startNodeWithTasks(t, Shout)
	ctx := context.Background()
	r, err := Shout.Call(ctx, n, "direct")
	if err != nil || r.Value != "DIRECT!" {
		t.Fatalf("%+v, %v", r, err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Shout.Call(ctx, n, "late"); !errors.Is(err, runtime.ErrShuttingDown) {
		t.Fatalf("after Shutdown: %v", err)
	}

	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	twin := task.New("shout", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := node.New(node.Options{Config: cfg, Tasks: []task.Definition{Shout, twin}}); !errors.Is(err, task.ErrDuplicateTask) {
		t.Fatalf("duplicate task names: %v", err)
	}
}

// counter reads a counter of a task from a registry.
func counter(t *testing.T, reg *prometheus.Registry, metric, taskName string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "task" && l.GetValue() == taskName {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestTaskRunsShowInTheNodesTracesAndMetrics(t *testing.T) {
	// A task value of its own: a task's counters count every run of it in
	// the process, and Shout runs in other tests too.
	echo := task.New("echo", func(_ context.Context, s string) (string, error) {
		if s == "" {
			return "", errors.New("nothing to echo")
		}
		return s, nil
	})
	n := startNodeWithTasksCfg(t, func(c *config.Config) { c.Tracing.Enabled = true }, echo)
	base := "http://" + n.HTTPAddr()
	if status, body := httpPost(t, base+"/v1/tasks/echo", `"traced"`, map[string]string{gateway.HeaderCorrelationID: "trace-task-1"}); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	// Fire and forget: the outcome is recorded all the same.
	if status, body := httpPost(t, base+"/v1/tasks/echo?async=true", `""`, map[string]string{gateway.HeaderCorrelationID: "trace-task-2"}); status != 202 {
		t.Fatalf("%d %s", status, body)
	}

	spansOf := func(cid string) map[string]observability.Span {
		code, b := httpGet(t, base+"/traces?correlationId="+cid)
		if code != 200 {
			t.Fatalf("/traces: %d %s", code, b)
		}
		var res observability.Result
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		out := map[string]observability.Span{}
		for _, tr := range res.Traces {
			for _, sp := range tr.Spans {
				out[sp.Name] = sp
			}
		}
		return out
	}
	var spans map[string]observability.Span
	nodetest.WaitFor(t, 5*time.Second, "the task's spans", func() bool {
		spans = spansOf("trace-task-1")
		return spans["task echo"].SpanID != "" && spans["POST /v1/tasks/{name}"].SpanID != ""
	})
	if spans["task echo"].ParentSpanID != spans["POST /v1/tasks/{name}"].SpanID || spans["task echo"].Status != "ok" {
		t.Fatalf("task span %+v under request span %+v", spans["task echo"], spans["POST /v1/tasks/{name}"])
	}
	nodetest.WaitFor(t, 5*time.Second, "the background run's span", func() bool {
		spans = spansOf("trace-task-2")
		return spans["task echo"].SpanID != ""
	})
	if sp := spans["task echo"]; sp.Status != "error" || !strings.Contains(sp.Error, "nothing to echo") {
		t.Fatalf("background span %+v", sp)
	}

	code, b := httpGet(t, base+"/metrics")
	if code != 200 || !strings.Contains(string(b), `loom_task_runs_total{task="echo"} 2`) || !strings.Contains(string(b), `loom_task_failures_total{task="echo"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, b)
	}
}
