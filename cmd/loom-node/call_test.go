package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// --retry repeats a call answered 503 or 429 (not applied) and stops at
// the first other answer; without it the first 503 is the result.
func TestCallRetry(t *testing.T) {
	for _, c := range []struct {
		name      string
		refusals  []int // statuses before a 200
		args      []string
		code      int
		attempts  int32
		outSubstr string
	}{
		{"no retry", []int{503}, nil, 1, 1, "503 Service Unavailable"},
		{"503 then 429 then ok", []int{503, 429}, []string{"--retry", "10s"}, 0, 3, `{"value":1}`},
		{"maybe applied is final", []int{502}, []string{"--retry", "10s"}, 1, 1, "502 Bad Gateway"},
		{"deadline", []int{503, 503, 503, 503, 503, 503}, []string{"--retry", "500ms"}, 1, 2, "503 Service Unavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				if i < len(c.refusals) {
					w.WriteHeader(c.refusals[i])
					w.Write([]byte(`{"error":{"code":"unavailable","message":"not yet"}}`))
					return
				}
				w.Write([]byte(`{"value":1}`))
			}))
			defer srv.Close()
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"--addr", srv.URL}, c.args...), "counter/c1", "get")
			code := cmdCall(args, &stdout, &stderr)
			if code != c.code || n.Load() != c.attempts || !strings.Contains(stdout.String()+stderr.String(), c.outSubstr) {
				t.Fatalf("exit %d after %d attempts, printed %q %q; want exit %d after %d, %q",
					code, n.Load(), stdout.String(), stderr.String(), c.code, c.attempts, c.outSubstr)
			}
		})
	}
}
