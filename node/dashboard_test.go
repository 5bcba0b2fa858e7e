package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
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

// TestDashboardEndpointsStaySmall: with 10,000 actors active on one node,
// what the dashboard reads stays small — counts per type, one actor at a
// time, a series per type and method — and the page itself is the same
// few files. (Sizes, not timings: a slow machine must not fail it.)
func TestDashboardEndpointsStaySmall(t *testing.T) {
	const actors = 10_000
	cfg := config.Default()
	cfg.Node.ID = "big"
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Journal.Backend = config.JournalMemory
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	if max := cfg.ActorPools.For("counter").MaxSize; max < actors {
		t.Fatalf("the counter pool holds %d actors, fewer than %d", max, actors)
	}

	// Activate them (a read activates without writing), 8 callers at once.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < actors; i += 8 {
				if _, err := builtin.CounterGet.Call(ctx, n, fmt.Sprintf("c%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := builtin.CounterAdd.Call(ctx, n, "c42", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
	if got := n.Runtime().Active("counter"); got != actors {
		t.Fatalf("%d counters active, want %d", got, actors)
	}

	base := "http://" + n.HTTPAddr()
	for _, tc := range []struct {
		path  string
		limit int
	}{
		{"/v1/admin/nodes", 2 << 10},
		{"/v1/admin/actors/counter/c42", 2 << 10},
		{"/v1/admin/queues", 1 << 10},
		{"/v1/stats/calls", 4 << 10},
		{"/v1/cluster", 1 << 10},
		{"/ui/", 8 << 10},
		{"/ui/app.js", 64 << 10},
		{"/ui/style.css", 16 << 10},
	} {
		code, body := get(t, base+tc.path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", tc.path, code, body)
		}
		if len(body) > tc.limit {
			t.Errorf("GET %s with %d actors: %d bytes, over %d", tc.path, actors, len(body), tc.limit)
		}
		t.Logf("GET %s: %d bytes", tc.path, len(body))
	}

	// What they say: the count, and the one actor.
	_, body := get(t, base+"/v1/admin/nodes")
	var nv node.NodesView
	if err := json.Unmarshal(body, &nv); err != nil {
		t.Fatal(err)
	}
	if len(nv.Members) != 1 || nv.Members[0].Report == nil || nv.Members[0].Report.Actors["counter"] != actors || nv.Mode != "single" {
		t.Fatalf("nodes: %s", body)
	}
	if s := nv.Members[0].Report.Session; s == nil || !s.Valid || s.LeaseRemainingMs <= 0 {
		t.Fatalf("session: %+v", s)
	}
	_, body = get(t, base+"/v1/admin/actors/counter/c42")
	var av node.ActorView
	if err := json.Unmarshal(body, &av); err != nil {
		t.Fatal(err)
	}
	if av.Owner != "big" || !av.Active || av.ActivatedAt == nil || av.JournalLength != 1 || len(av.Entries) != 1 || av.Entries[0].Method != "add" || av.Entries[0].CorrelationID == "" {
		t.Fatalf("actor: %s", body)
	}
	// A call is counted as it ends, just after its caller has the answer:
	// the last ones may show a moment later.
	var cs node.CallStatsView
	var gets uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body = get(t, base+"/v1/stats/calls")
		cs = node.CallStatsView{}
		if err := json.Unmarshal(body, &cs); err != nil {
			t.Fatal(err)
		}
		for _, s := range cs.Series {
			if s.Type == "counter" && s.Method == "get" {
				gets = s.Total
			}
		}
		if gets >= actors || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the route is the only way to look
	}
	if gets != actors || len(cs.Series) != 2 || cs.Nodes["big"] != "ok" {
		t.Fatalf("stats: %d gets in %d series (%v)", gets, len(cs.Series), cs.Nodes)
	}
}

// TestLookupActor: an actor never written nor active is found empty; an
// unknown type is 404; a journal longer than the entries asked for shows
// its latest, newest first.
func TestLookupActor(t *testing.T) {
	n := startNode(t, t.TempDir())
	ctx := context.Background()
	for range 30 {
		if _, err := builtin.CounterAdd.Call(runtime.WithCorrelationID(ctx, "lookup"), n, "c", builtin.CounterDelta{Delta: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := n.LookupActor(ctx, "counter", "c", 5)
	if err != nil {
		t.Fatal(err)
	}
	if v.JournalLength != 30 || len(v.Entries) != 5 || v.Entries[0].Seq != 30 || v.Entries[4].Seq != 26 || v.Entries[0].CorrelationID != "lookup" {
		t.Fatalf("lookup: %+v", v)
	}
	if v, err := n.LookupActor(ctx, "counter", "never", 5); err != nil || v.Active || v.Owner != "" || v.JournalLength != 0 || len(v.Entries) != 0 {
		t.Fatalf("an actor never called: %+v, %v", v, err)
	}
	code, body := get(t, "http://"+n.HTTPAddr()+"/v1/admin/actors/nope/x")
	if code != http.StatusNotFound || !strings.Contains(string(body), "unknown_type") {
		t.Fatalf("unknown type: %d %s", code, body)
	}
	code, body = get(t, "http://"+n.HTTPAddr()+"/v1/admin/actors/counter/c?entries=x")
	if code != http.StatusBadRequest {
		t.Fatalf("entries=x: %d %s", code, body)
	}
	// The page redirects /ui to /ui/ and serves its files, not others.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + n.HTTPAddr() + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/ui: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := get(t, "http://"+n.HTTPAddr()+"/ui/nothing.js"); code != http.StatusNotFound {
		t.Fatalf("/ui/nothing.js: %d", code)
	}
}

// An actor evicted for room is not active, and its node says it keeps
// its lock; called again, it is active under the same token.
func TestLookupEvictedActor(t *testing.T) {
	cfg := config.Dev()
	cfg.ActorPools.Types = map[string]config.PoolOverride{"counter": {MaxSize: new(1)}}
	n := startConfigured(t, cfg)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := builtin.CounterAdd.Call(ctx, n, id, builtin.CounterDelta{Delta: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := n.LookupActor(ctx, "counter", "a", 5)
	if err != nil || v.Active || !v.Kept || v.Owner != cfg.Node.ID || v.Token == 0 {
		t.Fatalf("the evicted actor: %+v, %v; want not active, its lock kept by %s", v, err, cfg.Node.ID)
	}
	if _, err := builtin.CounterAdd.Call(ctx, n, "a", builtin.CounterDelta{Delta: 1}); err != nil {
		t.Fatal(err)
	}
	again, err := n.LookupActor(ctx, "counter", "a", 5)
	if err != nil || !again.Active || again.Kept || again.Token != v.Token {
		t.Fatalf("called again: %+v, %v; want active under token %d", again, err, v.Token)
	}
}
