package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
)

// A cluster of real loom-node processes on loopback.

const testTTL = 3 * time.Second

type member struct {
	id     string
	http   string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *bytes.Buffer
}

func startMembers(t *testing.T, n int) []*member {
	t.Helper()
	return startMembersWith(t, n, "")
}

// redisConfig is the config that puts coordination, journals and queues
// on srv, with a key prefix of the test's own.
func redisConfig(t *testing.T, srv *redistest.Server) string {
	return fmt.Sprintf("journal:\n  backend: redis\n  redis:\n    addr: %s\n    keyPrefix: %q\n", srv.Addr, t.Name()+":") +
		"  snapshotEvery: 20\n"
}

// postgresConfig is the config that puts coordination, journals and
// queues on srv (a server of the test's own).
func postgresConfig(srv *pgtest.Server) string {
	return fmt.Sprintf("journal:\n  backend: postgres\n  postgres:\n    host: %s\n    port: %d\n    user: %s\n    database: postgres\n", srv.Host, srv.Port, srv.User) +
		"  snapshotEvery: 20\n"
}

// startMembersWith starts n members whose config file holds extra besides
// the test's session TTL (coordination.backend redis or postgres when
// extra names a Redis or PostgreSQL journal).
func startMembersWith(t *testing.T, n int, extra string) []*member {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "loom.config.yaml")
	cfg := fmt.Sprintf("coordination:\n  sessionTTL: %s\n  renewInterval: 1s\n", testTTL)
	for _, b := range []string{"redis", "postgres"} {
		if strings.Contains(extra, "backend: "+b) {
			cfg += "  backend: " + b + "\n"
		}
	}
	cfg += extra
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	seedPort := nodetest.FreePort(t)
	ms := make([]*member, n)
	lines := make(chan [2]string, 3*n)
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		gossip, join := "0", fmt.Sprintf("127.0.0.1:%d", seedPort)
		if i == 0 {
			gossip, join = fmt.Sprint(seedPort), ""
		}
		args := []string{"run", "--config", cfgPath, "--node-id", id, "--data-dir", filepath.Join(dir, id),
			"--http-port", "0", "--grpc-port", "0", "--raft-port", "0", "--gossip-port", gossip,
			"--bootstrap-expect", fmt.Sprint(n), "--gossip", "local"}
		if join != "" {
			args = append(args, "--join", join)
		}
		m := &member{id: id, cmd: exec.Command(binPath, args...), exited: make(chan struct{}), logs: &bytes.Buffer{}}
		m.cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=")
		m.cmd.Stderr = m.logs
		out, _ := m.cmd.StdoutPipe()
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- [2]string{id, sc.Text()}
			}
			_ = m.cmd.Wait()
			close(m.exited)
		}()
		t.Cleanup(func() {
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
			if t.Failed() {
				t.Logf("--- %s log ---\n%s", m.id, m.logs)
			}
		})
		ms[i] = m
	}
	byID := map[string]*member{}
	for _, m := range ms {
		byID[m.id] = m
	}
	deadline := time.After(45 * time.Second)
	for started := 0; started < n; {
		select {
		case l := <-lines:
			if m := servingRE.FindStringSubmatch(l[1]); m != nil {
				byID[l[0]].http = m[1]
				started++
			}
		case <-deadline:
			t.Fatalf("cluster did not start in 45s")
		}
	}
	// Every member knows every other before a test faults one: two that
	// joined through the seed learn of each other from its gossip, and a
	// seed killed before it has gossiped leaves them apart for good (each
	// has no address of the other to join).
	for _, m := range ms {
		nodetest.WaitFor(t, 30*time.Second, fmt.Sprintf("%s to see %d members alive", m.id, n), func() bool {
			alive := 0
			for _, mi := range m.info(t).Members {
				if mi.State == "alive" {
					alive++
				}
			}
			return alive == n
		})
	}
	return ms
}

func (m *member) post(path, body string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+m.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func (m *member) info(t *testing.T) node.ClusterInfo {
	resp, err := http.Get("http://" + m.http + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ci node.ClusterInfo
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		t.Fatal(err)
	}
	return ci
}

// TestProcessClusterSurvivesKillOfTheOwner: increments through random
// nodes add up exactly; the owner is killed with SIGKILL (no graceful
// leave); the actor answers again from a survivor within the session TTL
// plus failure detection, with every acknowledged increment.
func TestProcessClusterSurvivesKillOfTheOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	onEachBackend(t, testSurvivesKillOfTheOwner)
	t.Run("raft-groups", func(t *testing.T) {
		ms := startMembersWith(t, 3, "cluster:\n  raftGroups: 3\n")
		testMembersShowGroups(t, ms[0], 3)
		testSurvivesKillOfTheOwner(t, ms, nil)
	})
}

// testMembersShowGroups: loom-node members through m lists k Raft
// groups, each with a leader and the three nodes as voters, once the
// groups' leaders have spread over the nodes.
func testMembersShowGroups(t *testing.T, m *member, k int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out, errb bytes.Buffer
		if code := run([]string{"members", "--addr", m.http}, &out, &errb); code != 0 {
			t.Fatalf("loom-node members: exit %d: %s", code, errb.String())
		}
		leaders := map[string]bool{}
		rows := 0
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) == 5 && f[2] == "node-1,node-2,node-3" {
				rows++
				leaders[f[1]] = true
			}
		}
		if strings.Contains(out.String(), "raft groups") && rows == k && len(leaders) == min(k, 3) && !leaders["-"] {
			t.Logf("loom-node members:\n%s", out.String())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loom-node members does not show %d groups with spread leaders and three voters:\n%s", k, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// backingServer is the server a cluster on Redis or PostgreSQL keeps its
// locks, journals and queues in, which a test may crash (SIGKILL) and
// restart.
type backingServer struct {
	name    string
	kill    func()
	restart func() error
}

// onEachBackend runs test on a three-node cluster on the embedded Raft
// store (srv nil), on one with coordination, journals and queues on a
// throwaway redis-server, and on one with them on a throwaway PostgreSQL
// server (srv).
func onEachBackend(t *testing.T, test func(t *testing.T, ms []*member, srv *backingServer)) {
	t.Run("raft", func(t *testing.T) { test(t, startMembers(t, 3), nil) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		test(t, startMembersWith(t, 3, redisConfig(t, srv)),
			&backingServer{"redis-server", srv.Kill, func() error { srv.Restart(); return nil }})
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t, pgtest.Options{})
		test(t, startMembersWith(t, 3, postgresConfig(srv)), &backingServer{"postgres", srv.Kill, srv.Restart})
	})
}

// testSurvivesKillOfTheOwner is TestProcessClusterSurvivesKillOfTheOwner
// on ms; with srv, the server is also killed -9 and restarted (Redis's
// append-only file fsynced on every write; PostgreSQL with fsync and
// synchronous_commit on) after the owner's kill.
func testSurvivesKillOfTheOwner(t *testing.T, ms []*member, srv *backingServer) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	acked, unknown := 0, 0
	add := func(via *member) (bool, string) {
		code, body, err := via.post("/v1/actors/counter/hot/add", `{"delta":1}`)
		switch {
		case err != nil:
			unknown++ // the request may have reached the node
			return false, err.Error()
		case code == 200:
			acked++
			var v struct{ Value int }
			_ = json.Unmarshal([]byte(body), &v)
			if v.Value < acked || v.Value > acked+unknown {
				t.Fatalf("value %d after %d acked and %d unknown increments", v.Value, acked, unknown)
			}
			return true, body
		case code == 503 || code == 409:
			return false, body // not applied: retryable
		default:
			unknown++ // 500/504: outcome unknown
			return false, body
		}
	}
	for i := 0; i < 30; i++ {
		if ok, body := add(ms[rng.IntN(3)]); !ok {
			t.Fatalf("increment %d failed before any fault: %s", i, body)
		}
	}
	var owner *member
	for _, m := range ms {
		if m.info(t).Actors["counter"] == 1 {
			owner = m
		}
	}
	if owner == nil {
		t.Fatal("no node has the counter active")
	}
	var survivors []*member
	for _, m := range ms {
		if m != owner {
			survivors = append(survivors, m)
		}
	}
	t.Logf("killing the owner %s", owner.id)
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.exited
	killed := time.Now()
	limit := testTTL + 10*time.Second // TTL + failure detection (local preset) + slack
	// Recovered once every survivor has answered: each learns of the death
	// from gossip on its own, and until then routes the actor to the dead
	// node.
	answered := make([]bool, len(survivors))
	for !answered[0] || !answered[1] {
		i := rng.IntN(2)
		if ok, _ := add(survivors[i]); ok {
			answered[i] = true
			continue
		}
		if time.Since(killed) > limit {
			t.Fatalf("the actor did not answer within %v of the kill", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered %v after the kill", time.Since(killed).Round(time.Millisecond))
	if srv != nil {
		t.Logf("killing %s with SIGKILL and restarting it", srv.name)
		srv.kill()
		if ok, _ := add(survivors[0]); ok {
			t.Fatalf("an increment was acknowledged while %s was down", srv.name)
		}
		if err := srv.restart(); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		for ok := false; !ok; {
			if ok, _ = add(survivors[rng.IntN(2)]); !ok {
				if time.Since(restarted) > limit {
					t.Fatalf("no answer within %v of the restart of %s", limit, srv.name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("answering %v after the restart of %s", time.Since(restarted).Round(time.Millisecond), srv.name)
	}
	for i := 0; i < 10; i++ {
		if ok, body := add(survivors[i%2]); !ok {
			t.Fatalf("increment after recovery failed: %s", body)
		}
	}
	code, body, err := survivors[0].post("/v1/actors/counter/hot/get", `{}`)
	if err != nil || code != 200 {
		t.Fatalf("get: %d %s %v", code, body, err)
	}
	var v struct{ Value int }
	_ = json.Unmarshal([]byte(body), &v)
	if v.Value < acked || v.Value > acked+unknown {
		t.Fatalf("final value %d, acknowledged %d, unknown %d", v.Value, acked, unknown)
	}
}

// TestProcessClusterFencesAPausedOwner: the owner is paused (SIGSTOP) past
// its session TTL, so its renewals stop; another node takes the actor; when
// the old owner wakes up it must not serve from its stale memory nor write:
// every read through any node, the old owner included, sees every
// acknowledged increment, and no more than the attempts that may have
// applied add.
func TestProcessClusterFencesAPausedOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	onEachBackend(t, func(t *testing.T, ms []*member, _ *backingServer) { testFencesAPausedOwner(t, ms) })
}

func testFencesAPausedOwner(t *testing.T, ms []*member) {
	get := func(via *member) (int, bool) {
		code, body, err := via.post("/v1/actors/counter/z/get", `{}`)
		if err != nil || code != 200 {
			return 0, false
		}
		var v struct{ Value int }
		_ = json.Unmarshal([]byte(body), &v)
		return v.Value, true
	}
	acked := 0
	for i := 0; i < 10; i++ {
		if code, body, err := ms[i%3].post("/v1/actors/counter/z/add", `{"delta":1}`); err != nil || code != 200 {
			t.Fatalf("add: %d %s %v", code, body, err)
		}
		acked++
	}
	var owner *member
	var others []*member
	for _, m := range ms {
		if m.info(t).Actors["counter"] == 1 {
			owner = m
		} else {
			others = append(others, m)
		}
	}
	if owner == nil {
		t.Fatal("no owner")
	}
	t.Logf("pausing the owner %s", owner.id)
	if err := owner.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	unknown := 0 // attempts that may have applied (the gateway's contract), or whose answer was lost
	for {
		code, _, err := others[0].post("/v1/actors/counter/z/add", `{"delta":1}`)
		if err == nil && code == 200 {
			acked++
			break
		}
		switch {
		case err != nil, code == 499, code == 500, code == 502, code == 504:
			unknown++
		}
		if time.Since(paused) > testTTL+15*time.Second {
			_ = owner.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatal("no other node took the actor over")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("taken over %v after the pause (%d attempts of unknown outcome)", time.Since(paused).Round(time.Millisecond), unknown)
	if err := owner.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Through the woken owner and the others, the same value, between the
	// acknowledged count and that plus the attempts that may have applied
	// (a forward the paused owner had received runs when it wakes, through
	// the new holder): no stale read, no lost write, and no write of an
	// attempt refused as not applied.
	deadline := time.Now().Add(20 * time.Second)
	seen := -1
	for _, via := range []*member{owner, others[0], others[1]} {
		for {
			if v, ok := get(via); ok {
				if v < acked || v > acked+unknown || seen >= 0 && v != seen {
					t.Fatalf("via %s: value %d, want %d..%d and the same through every node (seen %d)", via.id, v, acked, acked+unknown, seen)
				}
				seen = v
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("via %s: no answer", via.id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if code, body, err := owner.post("/v1/actors/counter/z/add", `{"delta":1}`); err != nil || code != 200 || body != fmt.Sprintf(`{"value":%d}`, seen+1) {
		t.Fatalf("add via the woken owner: %d %s %v", code, body, err)
	}
}

// TestProcessClusterReminderSurvivesKillOfTheOwner: a durable reminder
// that adds 1 every 2 s keeps firing after its actor's owner is killed
// -9: the survivors take the actor over and fire it. Also the messages
// sent before the kill are all applied once.
func TestProcessClusterReminderSurvivesKillOfTheOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	onEachBackend(t, func(t *testing.T, ms []*member, _ *backingServer) { testReminderSurvivesKillOfTheOwner(t, ms) })
}

func testReminderSurvivesKillOfTheOwner(t *testing.T, ms []*member) {
	get := func(via *member) (int, bool) {
		code, body, err := via.post("/v1/actors/counter/tick/get", `{}`)
		if err != nil || code != 200 {
			return 0, false
		}
		var v struct{ Value int }
		_ = json.Unmarshal([]byte(body), &v)
		return v.Value, true
	}
	if code, body, err := ms[0].post("/v1/actors/counter/tick/remind", `{"name":"every2s","delta":1,"every":"2s"}`); err != nil || code != 200 {
		t.Fatalf("remind: %d %s %v", code, body, err)
	}
	for i := range 3 {
		if code, body, err := ms[i].post("/v1/messages/counter/tick/add", `{"delta":100}`); err != nil || code != 202 {
			t.Fatalf("send: %d %s %v", code, body, err)
		}
	}
	waitValue := func(what string, via func() *member, ok func(int) bool, within time.Duration) int {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if v, answered := get(via()); answered && ok(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	before := waitValue("two firings and the three messages", func() *member { return ms[1] }, func(v int) bool { return v >= 302 }, 15*time.Second)
	var owner *member
	var survivors []*member
	for _, m := range ms {
		if m.info(t).Actors["counter"] == 1 && owner == nil {
			owner = m
		} else {
			survivors = append(survivors, m)
		}
	}
	if owner == nil {
		t.Fatal("no node has the counter active")
	}
	t.Logf("value %d; killing the owner %s", before, owner.id)
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.exited
	// Within the TTL, failure detection and two periods, it fires again,
	// and keeps firing; the messages' 300 stay applied exactly once.
	after := waitValue("a firing after the kill", func() *member { return survivors[0] }, func(v int) bool { return v > before }, testTTL+15*time.Second)
	last := waitValue("more firings", func() *member { return survivors[1] }, func(v int) bool { return v >= after+2 }, 10*time.Second)
	if last/100 != 3 {
		t.Fatalf("value %d: the three messages of 100 must be applied exactly once", last)
	}
	t.Logf("fired on after the kill: %d -> %d -> %d", before, after, last)
}
