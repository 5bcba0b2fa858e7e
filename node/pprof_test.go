package node_test

import (
	"net/http"
	"testing"

	"github.com/loom-mesh/loom/config"
)

// node.pprof serves the runtime's profiles, to admins only when tokens
// are on; off, there is no such route.
func TestPprofRoutes(t *testing.T) {
	const admin, metrics = "admin-token-0123456789", "metrics-token-0123456789"
	for _, on := range []bool{false, true} {
		cfg := config.Dev()
		cfg.Node.Pprof = on
		cfg.Auth.Tokens = map[string]config.TokenConfig{
			"ops":     {Secret: admin, Scopes: []string{"admin"}},
			"metrics": {Secret: metrics, Scopes: []string{"metrics"}},
		}
		n := startConfigured(t, cfg)
		get := func(path, token string) int {
			req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		for _, c := range []struct {
			path, token string
			want        int
		}{
			{"/debug/pprof/cmdline", admin, map[bool]int{false: 404, true: 200}[on]},
			{"/debug/pprof/heap", admin, map[bool]int{false: 404, true: 200}[on]},
			{"/debug/pprof/profile?seconds=1", admin, map[bool]int{false: 404, true: 200}[on]},
			{"/debug/pprof/cmdline", metrics, 403},
		} {
			if got := get(c.path, c.token); got != c.want {
				t.Errorf("pprof %v: GET %s with the %s token: %d, want %d", on, c.path, map[string]string{admin: "admin", metrics: "metrics"}[c.token], got, c.want)
			}
		}
	}
}
