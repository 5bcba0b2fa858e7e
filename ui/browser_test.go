package ui_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/queue"
)

// The browser tests drive the dashboard in a real headless Chromium
// (Debian's chromium, which scripts/ensure-chromium installs; make test
// runs it) through chromedp. They fail, not skip, when Chromium cannot
// start; -short skips them.

var shotsDir = flag.String("ui.shots", "", "write the browser test's screenshots (ui-*.png) to this directory instead of a temporary one; the README's come from -ui.shots ../docs/img")

// chromiumPath is the browser the tests start: $LOOM_CHROMIUM, or Debian's.
func chromiumPath() string {
	if p := os.Getenv("LOOM_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// browser is one headless Chromium with one tab, and the console
// messages the tab has logged.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newBrowser starts Chromium with the flags this closed network needs (no
// background networking, no component updates, no sync, no QUIC) and a
// fresh profile, and records its console. It fails the test when the
// browser does not start.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no Chromium at %s (%v): install it with scripts/ensure-chromium, or set LOOM_CHROMIUM", path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium (%s): %v", path, err)
	}
	t.Logf("Chromium up in %v", time.Since(start).Round(time.Millisecond))
	b := &browser{t: t, ctx: ctx, dir: *shotsDir}
	if b.dir == "" {
		b.dir = t.TempDir()
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 760)); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs actions, failing the test (with a screenshot) on an error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// waitFor polls a JavaScript condition on the page until it is true.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.fail("waiting for "+what, err)
	}
}

// eval evaluates a JavaScript expression returning a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.fail("evaluating "+expr, err)
	}
	return v
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	shot := b.screenshot("failed")
	banner, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent`))
	b.t.Fatalf("%s: %v (error banner %q; screenshot %s; console %v)", what, err, banner, shot, b.messages())
}

// screenshot writes the viewport to ui-<name>.png and returns its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.dir, "ui-"+name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func (b *browser) messages() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...)
}

// errors returns the console's errors and exceptions, but those allow
// accepts.
func (b *browser) errors(allow func(chromedp.ConsoleMessage) bool) []string {
	var out []string
	for _, m := range b.messages() {
		if m.Type != chromedp.ConsoleError && !m.IsException() {
			continue
		}
		if allow != nil && allow(m) {
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s:%d)", m.String(), m.URL, m.Line))
	}
	return out
}

// call makes an actor call through a node's HTTP gateway.
func call(t *testing.T, addr, path, correlation, token, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if correlation != "" {
		req.Header.Set("X-Correlation-ID", correlation)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s %s", path, resp.Status, out)
	}
}

// TestUIBrowser: the dashboard of a 3-node cluster in headless Chromium.
// The page loads with no console error, shows three members with their
// Raft roles, finds an actor (owned by another node than the one serving
// the page) after a call, with its owner and journal entries, opens the
// call's trace from its correlation id and shows its waterfall across
// nodes, shows the call rates, and lists, inspects and purges a dead
// letter (after a confirmation). It writes a screenshot of each view.
func TestUIBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and Chromium")
	}
	start := time.Now()
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) {
		cfg.Tracing.Enabled = true
		cfg.Messaging.Default.MaxRetries = 0 // a failing message dies at once
		cfg.Messaging.Default.InitialBackoff = 10 * time.Millisecond
		cfg.Cluster.RaftGroups = 3 // the views read actors, journals and queues of three groups
		// The timings of a real network: with the local ones, a CPU stall
		// of 200 ms on a loaded machine elects new leaders, which take over
		// the actors whose owner and count the page is checked for.
		cfg.Cluster.Gossip = config.GossipLAN
	})
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	n1 := c.Nodes[0]
	// An actor lives on its group's leader, and the leaders spread over
	// the nodes after the start, handing off the actors of every group
	// they move: call once they have spread, so the actors called below
	// stay where they are while the page is checked.
	nodetest.WaitFor(t, 30*time.Second, "the three groups' leaders on three nodes", func() bool {
		leads := map[string]bool{}
		for _, g := range n1.Info().Raft.Groups {
			if g.Leader == "" {
				return false
			}
			leads[g.Leader] = true
		}
		return len(leads) == 3
	})

	// Calls through n1 until one reaches an actor that another node owns:
	// its lookup and its trace then cross nodes.
	var actor, cid, owner string
	for i := range 20 {
		id := fmt.Sprintf("ui-%d", i)
		cid = fmt.Sprintf("ui-test-%d", i)
		call(t, n1.HTTPAddr(), "/v1/actors/counter/"+id+"/add", cid, "", `{"delta":2}`)
		owner = ownerOf(c.Nodes, "counter", id)
		if owner != "" && owner != n1.ID() {
			actor = id
			break
		}
	}
	if actor == "" {
		t.Fatal("20 actors, all on the node that serves the page")
	}
	// A second call to it, and some others for the rates.
	call(t, n1.HTTPAddr(), "/v1/actors/counter/"+actor+"/add", "", "", `{"delta":3}`)
	for i := range 5 {
		call(t, c.Nodes[i%3].HTTPAddr(), fmt.Sprintf("/v1/actors/register/r%d/write", i), "", "", `{"value":"x"}`)
	}
	// A message that fails: a dead letter.
	call(t, n1.HTTPAddr(), "/v1/messages/counter/doomed/add", "ui-dead-1", "", `{"delta":1,"fail":"on purpose"}`)

	b := newBrowser(t)
	page := "http://" + n1.HTTPAddr() + "/ui/"
	t0 := time.Now()

	// Cluster: three members, alive, each with a Raft role and a lease.
	b.do("opening "+page, chromedp.Navigate(page))
	b.waitFor("three members with their Raft roles", `(() => {
		const rows = [...document.querySelectorAll('#members-table tbody tr')];
		return rows.length === 3 && rows.every(r => r.querySelector('.state.alive') && /Leader|Follower/.test(r.cells[2].textContent) && r.querySelector('.lease'));
	})()`)
	if got := b.eval(`[...document.querySelectorAll('#members-table tbody tr')].map(r => r.dataset.node).join(',')`); got != "n1,n2,n3" {
		t.Fatalf("members %q", got)
	}
	if got := b.eval(`String(document.querySelectorAll('#members-table td.leader').length)`); got != "1" {
		t.Fatalf("%s leaders in the member table", got)
	}
	b.waitFor("the actor counts", `document.querySelector('#card-actors') && Number(document.querySelector('#card-actors').textContent) >= 6`)
	b.waitFor("three Raft groups, each with a leader and three voters", `(() => {
		const rows = [...document.querySelectorAll('#groups-table tbody tr')];
		return !document.querySelector('#raft-groups').hidden && rows.length === 3 &&
			rows.every(r => r.cells[1].querySelector('.node') && r.cells[2].querySelectorAll('.node').length === 3);
	})()`)
	b.screenshot("cluster")

	// Actors: look the actor up by typing its id.
	b.do("opening the actors view", chromedp.Click(chromedp.CSS(`nav a[data-view="actors"]`)))
	b.waitFor("the type list", `document.querySelector('#actor-type').options.length >= 3`)
	b.do("searching "+actor,
		chromedp.SetValue(chromedp.CSS("#actor-type"), "counter"),
		chromedp.SendKeys(chromedp.CSS("#actor-id"), actor),
		chromedp.Click(chromedp.CSS(`#actor-form button[type="submit"]`)))
	b.waitFor("the actor's owner and journal", `(() => {
		const o = document.querySelector('#actor-owner');
		const rows = document.querySelectorAll('#actor-entries tbody tr');
		return o && o.textContent === '`+owner+`' && rows.length === 2;
	})()`)
	if got := b.eval(`document.querySelector('#actor-active').textContent`); got != "yes, on "+owner {
		t.Fatalf("active: %q, want on %s", got, owner)
	}
	if got := b.eval(`document.querySelector('#actor-journal-length').textContent`); got != "2" {
		t.Fatalf("journal length %q", got)
	}
	if got := b.eval(`document.querySelector('#actor-activated').textContent`); !strings.Contains(got, ":") || !strings.Contains(got, "(") {
		t.Fatalf("activation time %q", got)
	}
	if got := b.eval(`[...document.querySelectorAll('#actor-entries tbody tr')].map(r => r.cells[3].textContent + ' ' + r.cells[4].textContent).join('|')`); !strings.Contains(got, "add "+cid) {
		t.Fatalf("entries %q: none is add with correlation id %s", got, cid)
	}
	b.screenshot("actor")

	// Traces: the correlation id links to the call's trace.
	// Found and clicked in one step: the live view re-renders the entries
	// (a node chromedp had found may be gone by its click).
	b.waitFor("the link to the trace, clicked", `(() => {
		const a = document.querySelector('#actor-entries a.cid[href="#/traces/`+cid+`"]');
		if (!a) return false;
		a.click();
		return true;
	})()`)
	b.waitFor("the trace's waterfall across two nodes", `(() => {
		const rows = [...document.querySelectorAll('#waterfall-rows .wf-row[data-name]')];
		const nodes = new Set(rows.map(r => r.dataset.node));
		return rows.some(r => r.dataset.name.startsWith('POST ')) &&
			rows.some(r => r.dataset.name === 'loom.turn counter.add' && r.dataset.node === '`+owner+`') &&
			rows.some(r => r.dataset.name === 'loom.journal.append') && nodes.size >= 2;
	})()`)
	if got := b.eval(`location.hash`); got != "#/traces/"+cid {
		t.Fatalf("trace view at %q", got)
	}
	b.screenshot("trace")

	// Calls: the rates of both types.
	b.do("opening the calls view", chromedp.Click(chromedp.CSS(`nav a[data-view="calls"]`)))
	b.waitFor("the call rates", `document.querySelector('#calls-table tr[data-series="counter.add"]') && document.querySelector('#calls-table tr[data-series="register.write"]') && document.querySelectorAll('#chart-rate path.line').length >= 2`)
	if got := b.eval(`document.querySelector('#calls-table tr[data-series="register.write"]').cells[5].textContent`); got != "5" {
		t.Fatalf("register.write calls in 5 min: %q, want 5", got)
	}
	b.screenshot("calls")

	// Queues: the dead letter, inspected; a purge asks first.
	b.do("opening the queues view", chromedp.Click(chromedp.CSS(`nav a[data-view="queues"]`)))
	b.waitFor("the dead letter", `[...document.querySelectorAll('#dead-table tbody tr')].some(r => r.cells[1].textContent === 'counter/doomed')`)
	b.do("inspecting it", chromedp.Click(chromedp.CSS(`#dead-table tbody tr .actions button`)))
	b.waitFor("its details", `document.querySelector('#dead-inspect pre') && document.querySelector('#dead-inspect pre').textContent.includes('on purpose')`)
	b.screenshot("queues")
	b.do("asking to purge it", chromedp.Click(chromedp.CSS(`#dead-table tbody tr .actions button.danger`)))
	b.waitFor("the confirmation", `document.querySelector('#confirm-dialog').open`)
	b.do("cancelling", chromedp.Click(chromedp.CSS(`#confirm-cancel`)))
	b.waitFor("the dialog to close", `!document.querySelector('#confirm-dialog').open`)
	if dead, err := n1.DeadLetters(context.Background(), deadFilter()); err != nil || len(dead) != 1 {
		t.Fatalf("after a cancelled purge: %d dead letters, %v", len(dead), err)
	}
	// A dialog's close event comes in a task after it closed: the page
	// must not take a late one for the answer to the next question. Here
	// the question is asked again before the cancel's event has come.
	b.do("asking to purge it again", chromedp.Click(chromedp.CSS(`#dead-table tbody tr .actions button.danger`)))
	b.waitFor("the confirmation", `document.querySelector('#confirm-dialog').open`)
	if got := b.eval(`(() => {
		document.querySelector('#confirm-cancel').click();
		document.querySelector('#dead-table tbody tr .actions button.danger').click();
		return String(document.querySelector('#confirm-dialog').open);
	})()`); got != "true" {
		t.Fatalf("asked again right after a cancel: the dialog's open is %s", got)
	}
	b.do("confirming", chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	b.waitFor("the purge's outcome", `(() => {
		const r = document.querySelector('#dead-result');
		return !r.hidden && !r.textContent.endsWith('…');
	})()`)
	if got := b.eval(`document.querySelector('#dead-result').textContent`); got != "Purged 1." {
		b.fail("the purge", fmt.Errorf("the page says %q, want %q", got, "Purged 1."))
	}
	b.waitFor("the list to empty", `document.querySelectorAll('#dead-table tbody tr').length === 0 && document.querySelector('#dead-note').textContent.startsWith('0 dead')`)
	if dead, err := n1.DeadLetters(context.Background(), deadFilter()); err != nil || len(dead) != 0 {
		t.Fatalf("after the purge: %d dead letters, %v", len(dead), err)
	}

	if errs := b.errors(nil); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("browser steps took %v; screenshots in %s", time.Since(t0).Round(time.Millisecond), b.dir)
}

// ownerOf is the node on which the actor is active, or "".
func ownerOf(nodes []*node.Node, typ, id string) string {
	for _, n := range nodes {
		if n.Runtime().IsActive(typ, id) {
			return n.ID()
		}
	}
	return ""
}

// deadFilter selects the browser test's dead letter.
func deadFilter() queue.Filter { return queue.Filter{Actor: "counter/doomed"} }

// TestUIBrowserTokens: with bearer tokens on (one node), the page loads
// without one (it carries no data), asks for a token when the APIs answer
// 401, says which scope a token lacks, and with an admin token shows the
// node, finds an actor and opens its trace; the token stays in the tab's
// sessionStorage and goes on every request.
func TestUIBrowserTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	const (
		tokOps     = "ops-token-0123456789"
		tokMetrics = "metrics-token-0123456789"
		tokApp     = "app-token-0123456789"
	)
	cfg := config.Default()
	cfg.Node.ID = "solo"
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	cfg.Tracing.Enabled = true
	cfg.Auth.Tokens = map[string]config.TokenConfig{
		"ops":     {Secret: tokOps, Scopes: []string{"admin", "metrics"}},
		"metrics": {Secret: tokMetrics, Scopes: []string{"metrics"}},
		"app":     {Secret: tokApp, Scopes: []string{"actors:call"}},
	}
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	call(t, n.HTTPAddr(), "/v1/actors/counter/t1/add", "tok-1", tokApp, `{"delta":1}`)

	b := newBrowser(t)
	b.do("opening the page", chromedp.Navigate("http://"+n.HTTPAddr()+"/ui/"))
	b.waitFor("the token prompt", `document.querySelector('#token-dialog').open`)
	b.screenshot("token")

	// A token without admin: the cluster view says what it lacks; the
	// calls view, which needs metrics, works.
	b.do("entering the metrics token", chromedp.SendKeys(chromedp.CSS("#token-input"), tokMetrics), chromedp.Click(chromedp.CSS("#token-ok")))
	b.waitFor("the scope error", `!document.querySelector('#error').hidden && document.querySelector('#error').textContent.includes('lacks the scope admin')`)
	b.do("opening the calls view", chromedp.Click(chromedp.CSS(`nav a[data-view="calls"]`)))
	b.waitFor("the call rates", `document.querySelector('#calls-table tr[data-series="counter.add"]') !== null`)

	// The admin token: everything. The page learns which node serves it
	// only now; the navigation must not move when it says so, or a click
	// aimed at it lands elsewhere.
	navAt := `String(document.querySelector('nav a[data-view="cluster"]').getBoundingClientRect().left)`
	if got := b.eval(`document.querySelector('#served-by').textContent`); got != "" {
		t.Fatalf("served by %q before any admin answer", got)
	}
	navBefore := b.eval(navAt)
	b.do("changing the token", chromedp.Click(chromedp.CSS("#token-button")))
	b.waitFor("the token prompt", `document.querySelector('#token-dialog').open`)
	b.do("entering the ops token", chromedp.SendKeys(chromedp.CSS("#token-input"), tokOps), chromedp.Click(chromedp.CSS("#token-ok")))
	b.do("opening the cluster view", chromedp.Click(chromedp.CSS(`nav a[data-view="cluster"]`)))
	b.waitFor("the node", `document.querySelectorAll('#members-table tbody tr[data-node="solo"]').length === 1 && document.querySelector('#error').hidden`)
	if got := b.eval(`String(document.querySelector('#raft-groups').hidden)`); got != "true" {
		t.Fatalf("the Raft groups of a single node are shown (hidden = %s)", got)
	}
	if got := b.eval(`document.querySelector('#served-by').textContent`); got != "served by solo" {
		t.Fatalf("header says %q", got)
	}
	if after := b.eval(navAt); after != navBefore {
		t.Fatalf("the navigation moved from x=%s to x=%s", navBefore, after)
	}
	b.do("looking the actor up", chromedp.Navigate("http://"+n.HTTPAddr()+"/ui/#/actors/counter/t1"))
	b.waitFor("the actor", `document.querySelector('#actor-owner') && document.querySelector('#actor-owner').textContent === 'solo' && document.querySelectorAll('#actor-entries tbody tr').length === 1`)
	b.do("opening its trace", chromedp.Click(chromedp.CSS(`#actor-entries a.cid[href="#/traces/tok-1"]`)))
	b.waitFor("the waterfall", `[...document.querySelectorAll('#waterfall-rows .wf-row[data-name]')].some(r => r.dataset.name === 'loom.turn counter.add')`)
	if got := b.eval(`sessionStorage.getItem('loom.token')`); got != tokOps {
		t.Fatalf("sessionStorage holds %q", got)
	}
	// The browser logs the refused requests (401, 403) as errors of the
	// network: expected here, and nothing else.
	refused := func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && (strings.Contains(m.Text, "401") || strings.Contains(m.Text, "403"))
	}
	if errs := b.errors(refused); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	if len(b.errors(nil)) == 0 {
		t.Fatal("no refused request was logged: the page never met a 401")
	}

	// A purge that fails (the node is gone): the page says why.
	b.do("opening the queues view", chromedp.Click(chromedp.CSS(`nav a[data-view="queues"]`)))
	b.waitFor("the empty list", `document.querySelector('#dead-note').textContent.startsWith('0 dead')`)
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.do("asking to purge every dead letter", chromedp.Click(chromedp.CSS(`#dead-purge`)))
	b.waitFor("the confirmation", `document.querySelector('#confirm-dialog').open`)
	b.do("confirming", chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	b.waitFor("the failure", `document.querySelector('#dead-result').textContent.startsWith('Purge failed: ') && !document.querySelector('#dead-purge').disabled`)
}
