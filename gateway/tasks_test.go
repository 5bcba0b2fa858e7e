package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

type resizeIn struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

type resizeOut struct {
	Pixels int `json:"pixels"`
}

// taskServer serves the gateway with a registry of test tasks on a real
// loopback listener. bg receives the correlation id of each "bg" run.
func taskServer(t *testing.T) (srv *httptest.Server, bg chan string) {
	t.Helper()
	return taskServerWith(t, gateway.Options{})
}

// taskServerWith is taskServer with more gateway options.
func taskServerWith(t *testing.T, opts gateway.Options) (srv *httptest.Server, bg chan string) {
	t.Helper()
	bg = make(chan string, 4)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tasks := []task.Definition{
		task.New("resize", func(_ context.Context, in resizeIn) (resizeOut, error) {
			if in.Width < 0 {
				return resizeOut{}, errors.New("negative width")
			}
			return resizeOut{Pixels: in.Width * in.Height}, nil
		}),
		task.New("panics", func(context.Context, struct{}) (int, error) { panic("kaput") }),
		task.New("slow", func(ctx context.Context, _ struct{}) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, task.Timeout(10*time.Millisecond)),
		task.New("stubborn", func(context.Context, struct{}) (int, error) {
			<-release // ignores its context
			return 0, nil
		}),
		task.New("bg", func(ctx context.Context, n int) (int, error) {
			bg <- runtime.CorrelationID(ctx)
			return n, nil
		}),
	}
	reg, err := task.NewRegistry(task.RegistryOptions{Tasks: tasks})
	if err != nil {
		t.Fatal(err)
	}
	opts.Tasks, opts.TaskNames, opts.MaxBodyBytes = reg, reg.Names, 1024
	srv = httptest.NewServer(gateway.New(opts))
	t.Cleanup(func() {
		srv.Close()
		_ = reg.Close(context.Background())
	})
	return srv, bg
}

func TestTasksOverHTTP(t *testing.T) {
	srv, _ := taskServer(t)
	for _, tc := range []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		success          bool
		value, code      string
	}{
		{"success", "/v1/tasks/resize", `{"width":3,"height":4}`, nil, 200, true, `{"pixels":12}`, ""},
		{"empty body is the zero value", "/v1/tasks/resize", ``, nil, 200, true, `{"pixels":0}`, ""},
		{"task error", "/v1/tasks/resize", `{"width":-1}`, nil, 422, false, "", "failed"},
		{"panic", "/v1/tasks/panics", `{}`, nil, 500, false, "", "panic"},
		{"task timeout", "/v1/tasks/slow", `{}`, nil, 504, false, "", "timeout"},
		// The request's deadline ends the wait even though the task ignores it.
		{"request deadline", "/v1/tasks/stubborn", `{}`, map[string]string{gateway.HeaderTimeout: "20ms"}, 504, false, "", "deadline_exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, srv, tc.path, tc.body, tc.hdr)
			var o task.Outcome
			if err := json.Unmarshal([]byte(body), &o); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if resp.StatusCode != tc.status || o.Success != tc.success || string(o.Value) != tc.value {
				t.Fatalf("= %d %s", resp.StatusCode, body)
			}
			if o.Attempts != 1 || o.Start.IsZero() || o.DurationMs <= 0 {
				t.Fatalf("timing fields: %s", body)
			}
			if tc.code != "" && (o.Error == nil || o.Error.Code != tc.code || o.Error.Message == "") {
				t.Fatalf("error %s, want code %s", body, tc.code)
			}
			for _, field := range []string{`"success"`, `"durationMs"`, `"attempts"`, `"start"`} {
				if !strings.Contains(body, field) {
					t.Fatalf("no %s in %s", field, body)
				}
			}
		})
	}
}

func TestTaskRequestErrors(t *testing.T) {
	srv, _ := taskServer(t)
	for _, tc := range []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		code, message    string
	}{
		{"unknown task", "/v1/tasks/nope", `{}`, nil, 404, "unknown_task", `"nope"`},
		{"unknown task, async", "/v1/tasks/nope?async=true", `{}`, nil, 404, "unknown_task", `"nope"`},
		{"bad json", "/v1/tasks/resize", `{"width":`, nil, 400, "bad_payload", `task "resize": input is not valid JSON`},
		{"wrong type", "/v1/tasks/resize", `{"width":"wide"}`, nil, 400, "bad_payload", "width"},
		{"bad json, async", "/v1/tasks/resize?async=1", `[`, nil, 400, "bad_payload", "not valid JSON"},
		{"bad async", "/v1/tasks/resize?async=maybe", `{}`, nil, 400, "invalid_argument", "async"},
		{"bad timeout", "/v1/tasks/resize", `{}`, map[string]string{gateway.HeaderTimeout: "-1s"}, 400, "bad_timeout", gateway.HeaderTimeout},
		{"too large", "/v1/tasks/resize", `{"width":1,"pad":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "payload_too_large", "1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, srv, tc.path, tc.body, tc.hdr)
			var eb gateway.ErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body %q: %v", body, err)
			}
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.message) {
				t.Fatalf("= %d %s, want %d %s mentioning %q", resp.StatusCode, body, tc.status, tc.code, tc.message)
			}
		})
	}
}

func TestTaskFireAndForgetOverHTTP(t *testing.T) {
	srv, bg := taskServer(t)
	resp, body := post(t, srv, "/v1/tasks/bg?async=true", `5`, map[string]string{gateway.HeaderCorrelationID: "async-1"})
	var acc gateway.Accepted
	if err := json.Unmarshal([]byte(body), &acc); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !acc.Accepted || acc.Task != "bg" || acc.CorrelationID != "async-1" {
		t.Fatalf("%+v", acc)
	}
	if cid := <-bg; cid != "async-1" { // it ran, after the answer, with the request's id
		t.Fatalf("correlation id %q", cid)
	}
}

func TestTaskNamesAndNoTasks(t *testing.T) {
	srv, _ := taskServer(t)
	resp, err := srv.Client().Get(srv.URL + "/v1/tasks")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Tasks []string }
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if strings.Join(got.Tasks, ",") != "bg,panics,resize,slow,stubborn" {
		t.Fatalf("%v", got.Tasks)
	}

	// A gateway without tasks (the actor-only gateway) answers 404.
	plain := newServer(t)
	r, body := post(t, plain, "/v1/tasks/resize", `{}`, nil)
	if r.StatusCode != 404 || !strings.Contains(body, "unknown_task") {
		t.Fatalf("%d %s", r.StatusCode, body)
	}
}

func TestTaskJoinsTheRequestsTrace(t *testing.T) {
	// Not parallel: installs a global provider and propagator, then puts
	// the previous ones back.
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(propagation.TraceContext{})

	srv, _ := taskServer(t)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	resp, body := post(t, srv, "/v1/tasks/resize", `{"width":1,"height":1}`, map[string]string{
		"traceparent":               "00-" + traceID + "-" + parentID + "-01",
		gateway.HeaderCorrelationID: "traced-1",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var span sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "task resize" {
			span = s
		}
	}
	if span == nil {
		t.Fatal("no task span")
	}
	if span.SpanContext().TraceID().String() != traceID || span.Parent().SpanID().String() != parentID {
		t.Fatalf("span trace %s parent %s", span.SpanContext().TraceID(), span.Parent().SpanID())
	}
	found := false
	for _, kv := range span.Attributes() {
		if kv.Key == "loom.correlation_id" && kv.Value.AsString() == "traced-1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no correlation id attribute: %v", span.Attributes())
	}
}

func TestTaskSpanWithTheGatewaysTracerProvider(t *testing.T) {
	// No globals: the gateway's own provider and propagator, as a node
	// passes them; the task's span follows the request's into that pipeline.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv, _ := taskServerWith(t, gateway.Options{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, body := post(t, srv, "/v1/tasks/resize", `{"width":2,"height":2}`, map[string]string{
		"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	req, run := byName["POST /v1/tasks/{name}"], byName["task resize"]
	if req == nil || run == nil {
		t.Fatalf("spans %v", byName)
	}
	if req.SpanContext().TraceID().String() != traceID || run.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Fatal("the task span is not the request span's child in the caller's trace")
	}
}
