package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

type session struct{ id lock.SessionID }

func (s session) Session() lock.SessionID { return s.id }
func (s session) Valid() bool             { return true }

type sleeper struct{}

var Sleeper = runtime.NewType("sleeper", func(string) *sleeper { return &sleeper{} })

var _ = runtime.AddMethod(Sleeper, "sleep", func(ctx runtime.Context, _ *sleeper, d string) (string, error) {
	dur, _ := time.ParseDuration(d)
	select {
	case <-time.After(dur):
		return "awake", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
})

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	j := inmem.NewJournal()
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	sid, err := c.CreateSession(context.Background(), "n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(runtime.Options{Journal: j, Coordinator: c, Session: session{sid}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Register(append(builtin.Types(), Sleeper)...); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gateway.New(gateway.Options{Invoker: rt, MaxBodyBytes: 1024, Types: rt.Types}))
	t.Cleanup(func() {
		srv.Close()
		_ = rt.Close(context.Background())
		_ = j.Close()
		_ = c.Close()
	})
	return srv
}

func post(t *testing.T, srv *httptest.Server, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestBuiltinsOverHTTP(t *testing.T) {
	srv := newServer(t)
	steps := []struct{ path, body, want string }{
		{"/v1/actors/counter/c1/add", `{"delta":2}`, `{"value":2}`},
		{"/v1/actors/counter/c1/add", `{"delta":3}`, `{"value":5}`},
		{"/v1/actors/counter/c1/get", ``, `{"value":5}`},
		{"/v1/actors/register/r1/read", `{}`, `{"value":null}`},
		{"/v1/actors/register/r1/cas", `{"expect":null,"value":{"b":1,"a":2}}`, `{"ok":true}`},
		{"/v1/actors/register/r1/cas", `{"expect":1,"value":3}`, `{"ok":false}`},
		{"/v1/actors/register/r1/cas", `{"expect":{"a":2, "b":1},"value":3}`, `{"ok":true}`},
		{"/v1/actors/register/r1/write", `{"value":"x"}`, `{}`},
		{"/v1/actors/register/r1/read", `{}`, `{"value":"x"}`},
		{"/v1/actors/kv/k1/put", `{"key":"b","value":[1,2]}`, `{}`},
		{"/v1/actors/kv/k1/put", `{"key":"a","value":true}`, `{}`},
		{"/v1/actors/kv/k1/get", `{"key":"b"}`, `{"value":[1,2],"found":true}`},
		{"/v1/actors/kv/k1/get", `{"key":"zz"}`, `{"value":null,"found":false}`},
		{"/v1/actors/kv/k1/list", `{}`, `{"keys":["a","b"]}`},
		{"/v1/actors/kv/k1/delete", `{"key":"a"}`, `{"deleted":true}`},
		{"/v1/actors/kv/k1/list", `{}`, `{"keys":["b"]}`},
	}
	for _, s := range steps {
		resp, body := post(t, srv, s.path, s.body, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(body) != s.want {
			t.Fatalf("POST %s %s = %d %s, want 200 %s", s.path, s.body, resp.StatusCode, body, s.want)
		}
	}
}

func TestErrorsOverHTTP(t *testing.T) {
	srv := newServer(t)
	for _, tc := range []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		code             string
	}{
		{"unknown type", "/v1/actors/nope/x/add", `{}`, nil, 404, "unknown_type"},
		{"unknown method", "/v1/actors/counter/x/nope", `{}`, nil, 404, "unknown_method"},
		{"bad json", "/v1/actors/counter/x/add", `{"delta":`, nil, 400, "bad_payload"},
		{"wrong type", "/v1/actors/counter/x/add", `{"delta":"one"}`, nil, 400, "bad_payload"},
		{"invalid argument", "/v1/actors/kv/x/put", `{"key":"","value":1}`, nil, 400, "invalid_argument"},
		{"too large", "/v1/actors/counter/x/add", `{"delta":1,"pad":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "payload_too_large"},
		{"deadline", "/v1/actors/sleeper/s/sleep", `"10s"`, map[string]string{gateway.HeaderTimeout: "50ms"}, 504, "deadline_exceeded"},
		{"bad timeout", "/v1/actors/sleeper/s/sleep", `"1ms"`, map[string]string{gateway.HeaderTimeout: "soon"}, 400, "bad_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, srv, tc.path, tc.body, tc.hdr)
			var eb gateway.ErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body %q: %v", body, err)
			}
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code || eb.Error.Message == "" {
				t.Fatalf("= %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	// Nothing above changed the counter.
	resp, body := post(t, srv, "/v1/actors/counter/x/get", ``, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"value":0}` {
		t.Fatalf("counter after bad calls = %s", body)
	}
}

func TestCorrelationID(t *testing.T) {
	srv := newServer(t)
	resp, _ := post(t, srv, "/v1/actors/counter/c/get", ``, map[string]string{gateway.HeaderCorrelationID: "abc-123"})
	if got := resp.Header.Get(gateway.HeaderCorrelationID); got != "abc-123" {
		t.Fatalf("echoed correlation id %q", got)
	}
	resp, _ = post(t, srv, "/v1/actors/counter/c/get", ``, nil)
	if got := resp.Header.Get(gateway.HeaderCorrelationID); len(got) != 32 {
		t.Fatalf("generated correlation id %q", got)
	}
}
