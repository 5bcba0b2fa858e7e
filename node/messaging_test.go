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

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// startMessagingNode starts a single node whose journal (and so message
// store) is backend.
func startMessagingNode(t *testing.T, backend string) *node.Node {
	t.Helper()
	cfg := config.Default()
	switch backend {
	case config.JournalRaft:
		cfg = config.Dev() // a one-node Raft cluster, as loom-node dev runs
	case config.JournalRedis:
		cfg = redisNodeConfig(redistest.Start(t, redistest.Options{}))
	case config.JournalPostgres:
		srv := pgtest.Shared(t)
		cfg = postgresNodeConfig(srv, srv.CreateDatabase(t))
	}
	cfg.Journal.Backend = backend
	cfg.Messaging.Default.MaxRetries = 2
	cfg.Messaging.Default.InitialBackoff = 5 * time.Millisecond
	cfg.Messaging.Default.MaxBackoff = 20 * time.Millisecond
	return startConfigured(t, cfg)
}

// redisNodeConfig is a one-node cluster with its locks, journals and
// queues on srv.
func redisNodeConfig(srv *redistest.Server) config.Config {
	cfg := config.Dev()
	cfg.Coordination.Backend, cfg.Journal.Backend = config.CoordinationRedis, config.JournalRedis
	cfg.Journal.Redis.Addr = srv.Addr
	return cfg
}

// postgresNodeConfig is a one-node cluster with its locks, journals and
// queues in database db on srv.
func postgresNodeConfig(srv *pgtest.Server, db string) config.Config {
	cfg := config.Dev()
	cfg.Coordination.Backend, cfg.Journal.Backend = config.CoordinationPostgres, config.JournalPostgres
	cfg.Journal.Postgres = config.PostgresConfig{Host: srv.Host, Port: srv.Port, User: srv.User, Database: db}
	return cfg
}

// startConfigured starts a node of cfg, on a data dir of the test's and
// a free HTTP port, shut down when the test ends.
func startConfigured(t *testing.T, cfg config.Config) *node.Node {
	t.Helper()
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.HTTPPort = 0
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n
}

// forEachBackend runs test on a node of each journal backend, all of which
// keep queues: memory, the bbolt file (loom-node run alone), a one-node
// Raft cluster (loom-node dev), Redis (with the Redis coordinator) and
// PostgreSQL (with the PostgreSQL coordinator).
func forEachBackend(t *testing.T, test func(t *testing.T, backend string)) {
	for _, b := range []string{config.JournalMemory, config.JournalBBolt, config.JournalRaft, config.JournalRedis, config.JournalPostgres} {
		t.Run(b, func(t *testing.T) { test(t, b) })
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSendOverHTTP(t *testing.T) { forEachBackend(t, testSendOverHTTP) }

func testSendOverHTTP(t *testing.T, backend string) {
	n := startMessagingNode(t, backend)
	base := "http://" + n.HTTPAddr()
	ctx := context.Background()

	var first gateway.SendResult
	for i := range 3 {
		status, body := httpPost(t, base+"/v1/messages/counter/c1/add", `{"delta":1}`, map[string]string{gateway.HeaderMessageID: "m-" + string(rune('a'+i))})
		if status != http.StatusAccepted {
			t.Fatalf("send: %d %s", status, body)
		}
		if i == 0 {
			_ = json.Unmarshal([]byte(body), &first)
		}
	}
	// The same id again is accepted once: the answer is the first acceptance.
	status, body := httpPost(t, base+"/v1/messages/counter/c1/add", `{"delta":100}`, map[string]string{gateway.HeaderMessageID: "m-a"})
	var dup gateway.SendResult
	_ = json.Unmarshal([]byte(body), &dup)
	if status != http.StatusAccepted || !dup.Duplicate || dup.Seq != first.Seq {
		t.Fatalf("resend: %d %s, want the first acceptance %+v", status, body, first)
	}
	waitFor(t, "three adds", func() bool {
		v, err := builtin.CounterGet.Call(ctx, n, "c1")
		return err == nil && v.Value == 3
	})

	// Bad input gets a specific error and stores nothing.
	for _, tc := range []struct {
		path, body string
		hdr        map[string]string
		status     int
		code       string
	}{
		{"/v1/messages/nosuch/x/add", `{}`, nil, http.StatusNotFound, "unknown_type"},
		{"/v1/messages/counter/x/nosuch", `{}`, nil, http.StatusNotFound, "unknown_method"},
		{"/v1/messages/counter/x/add", `{}`, map[string]string{gateway.HeaderDelay: "10000h"}, http.StatusBadRequest, "deliver_at_too_far"},
		{"/v1/messages/counter/x/add", `{}`, map[string]string{gateway.HeaderDeliverAt: "tomorrow"}, http.StatusBadRequest, "bad_deliver_at"},
		{"/v1/messages/counter/x/add", `{}`, map[string]string{gateway.HeaderMessageID: strings.Repeat("i", queue.MaxIDLen+1)}, http.StatusBadRequest, "invalid_argument"},
		{"/v1/messages/counter/x/add", strings.Repeat("x", 5<<20), nil, http.StatusRequestEntityTooLarge, "payload_too_large"},
	} {
		status, body := httpPost(t, base+tc.path, tc.body, tc.hdr)
		var eb gateway.ErrorBody
		_ = json.Unmarshal([]byte(body), &eb)
		if status != tc.status || eb.Error.Code != tc.code {
			t.Errorf("POST %s %v: %d %s, want %d %s", tc.path, tc.hdr, status, strings.TrimSpace(body), tc.status, tc.code)
		}
	}
	if st, err := n.MessageQueues(ctx); err != nil || len(st) != 0 && st[0].Pending+st[0].Scheduled != 0 {
		t.Fatalf("queues after refused sends: %+v, %v", st, err)
	}

	// /health has the queues; /metrics counts the three accepted sends.
	h := n.Health()
	if q := h.Components.MessageQueues; q == nil || q.Status != "healthy" {
		t.Fatalf("health messageQueues: %+v", q)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = io.Copy(&sb, resp.Body)
	for _, line := range []string{`loom_messages_sent_total{type="counter"} 3`, `loom_messages_delivered_total{outcome="ok",type="counter"} 3`} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

func TestDeadLettersOverHTTP(t *testing.T) { forEachBackend(t, testDeadLettersOverHTTP) }

func testDeadLettersOverHTTP(t *testing.T, backend string) {
	n := startMessagingNode(t, backend)
	base := "http://" + n.HTTPAddr()
	ctx := context.Background()
	status, body := httpPost(t, base+"/v1/messages/counter/c2/add", `{"delta":1,"fail":"no"}`, map[string]string{gateway.HeaderMessageID: "doomed"})
	if status != http.StatusAccepted {
		t.Fatalf("send: %d %s", status, body)
	}
	var dead []gateway.DeadLetterJSON
	waitFor(t, "the message to be dead-lettered", func() bool {
		resp, err := http.Get(base + "/v1/deadletters?type=counter")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			DeadLetters []gateway.DeadLetterJSON `json:"deadLetters"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		dead = out.DeadLetters
		return len(dead) == 1
	})
	if d := dead[0]; d.ID != "doomed" || d.Attempts != 3 || !strings.Contains(d.LastError, "no") || d.Actor != "counter/c2" {
		t.Fatalf("dead letter %+v, want doomed after 3 attempts (1 + maxRetries 2)", d)
	}
	// Replay needs a filter or all=true.
	if status, body := httpPost(t, base+"/v1/deadletters/replay", "", nil); status != http.StatusBadRequest {
		t.Fatalf("replay without a filter: %d %s", status, body)
	}
	if status, body := httpPost(t, base+"/v1/deadletters/replay?id=doomed", "", nil); status != http.StatusOK || !strings.Contains(body, `"replayed":1`) {
		t.Fatalf("replay: %d %s", status, body)
	}
	waitFor(t, "the replayed message to die again", func() bool {
		d, err := n.DeadLetters(ctx, queue.Filter{IDs: []string{"doomed"}})
		return err == nil && len(d) == 1 && d[0].Attempts == 3
	})
	if status, body := httpPost(t, base+"/v1/deadletters/purge?actor=counter/c2", "", nil); status != http.StatusOK || !strings.Contains(body, `"purged":1`) {
		t.Fatalf("purge: %d %s", status, body)
	}
	if v, err := builtin.CounterGet.Call(ctx, n, "c2"); err != nil || v.Value != 0 {
		t.Fatalf("counter %+v, %v: a failing message must apply nothing", v, err)
	}
}

func TestReminderFromTheCounter(t *testing.T) { forEachBackend(t, testReminderFromTheCounter) }

func testReminderFromTheCounter(t *testing.T, backend string) {
	n := startMessagingNode(t, backend)
	ctx := context.Background()
	if _, err := builtin.CounterRemind.Call(ctx, n, "r", builtin.CounterReminder{Name: "tick", Delta: 1, Every: "30ms"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three firings", func() bool {
		v, err := builtin.CounterGet.Call(ctx, n, "r")
		return err == nil && v.Value >= 3
	})
	rs, err := n.Reminders(ctx, "counter", "r")
	if err != nil || len(rs) != 1 || rs[0].Period != 30*time.Millisecond {
		t.Fatalf("reminders %+v, %v", rs, err)
	}
	if _, err := builtin.CounterForget.Call(ctx, n, "r", builtin.CounterReminder{Name: "tick"}); err != nil {
		t.Fatal(err)
	}
	if rs, _ := n.Reminders(ctx, "counter", "r"); len(rs) != 0 {
		t.Fatalf("reminders after forget: %+v", rs)
	}
}

// TestReplayRefusesWhatCannotBeDelivered: a dead letter to an actor type
// the node does not have (a message from a release that had it) is
// dead-lettered at once, and a replay that selects it is refused, naming
// it, and moves nothing.
func TestReplayRefusesWhatCannotBeDelivered(t *testing.T) {
	n := startMessagingNode(t, config.JournalMemory)
	ctx := context.Background()
	st, err := n.MessageQueues(ctx) // the node has a store
	if err != nil {
		t.Fatal(err, st)
	}
	if _, err := n.Send(ctx, runtimeEnvelope("gone", "x", "add")); err == nil {
		t.Fatal("a send to an unknown type was accepted")
	}
	// Enqueue past the send-time check, as an older release would have.
	enqueueRaw(t, n, queue.Message{ID: "old-1", Actor: "gone/x", Method: "add", Ordered: true})
	waitFor(t, "the message to be dead-lettered", func() bool {
		d, err := n.DeadLetters(ctx, queue.Filter{IDs: []string{"old-1"}})
		return err == nil && len(d) == 1
	})
	nmoved, err := n.Replay(ctx, queue.Filter{Type: "gone"})
	if nmoved != 0 || err == nil || !strings.Contains(err.Error(), "old-1") || !errors.Is(err, runtime.ErrUnknownType) {
		t.Fatalf("replay of a dead letter to a gone type: %d, %v", nmoved, err)
	}
	if d, _ := n.DeadLetters(ctx, queue.Filter{}); len(d) != 1 {
		t.Fatalf("dead letters after the refused replay: %+v", d)
	}
}

func enqueueRaw(t *testing.T, n *node.Node, m queue.Message) {
	t.Helper()
	if _, err := n.MessageStore().Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func runtimeEnvelope(typ, id, method string) runtime.Envelope {
	return runtime.Envelope{ActorType: typ, ActorID: id, Method: method}
}
