package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// refuser fails every turn: its messages end in the dead letters.
var (
	refuserType = runtime.NewType("refuser", func(string) *struct{} { return &struct{}{} })
	_           = runtime.AddMethod0(refuserType, "poke", func(runtime.Context, *struct{}) (struct{}, error) {
		return struct{}{}, errors.New("refused on purpose")
	})
)

// rabbitConfig is cfg with its messages in a virtual host of its own on
// the shared broker, sent there even to actors this node hosts.
func rabbitConfig(t *testing.T, cfg config.Config) config.Config {
	cfg.Messaging.Backend = config.MessagingRabbitMQ
	cfg.Messaging.RabbitMQ.URL = rabbitmqtest.Shared(t).VHost(t)
	cfg.Messaging.ApplyOnAccept = false
	cfg.Messaging.Default.MaxRetries = 1
	cfg.Messaging.Default.InitialBackoff = 5 * time.Millisecond
	cfg.Messaging.Default.MaxBackoff = 20 * time.Millisecond
	return cfg
}

func counterAdd(id, msgID string) runtime.Envelope {
	return runtime.Envelope{ActorType: "counter", ActorID: id, Method: "add", Payload: []byte(`{"delta":1}`), MessageID: msgID}
}

// TestRabbitMQMessages: with messaging.backend rabbitmq, a send is
// accepted once the broker confirms it, delivered as a turn whose journal
// append records its id, and applied once however often it is sent or
// delivered; a message that keeps failing ends in the broker's dead
// letters, which the node lists, replays and purges.
func TestRabbitMQMessages(t *testing.T) {
	cfg := rabbitConfig(t, config.Dev())
	cfg.Node.DataDir, cfg.Node.HTTPPort = t.TempDir(), 0
	n, err := node.New(node.Options{Config: cfg, Builtins: true, Types: []runtime.Definition{refuserType}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })

	const sends = 20
	for round := range 2 { // the second round resends every id
		for i := range sends {
			acc, err := n.Send(ctx, counterAdd(fmt.Sprintf("c%d", i%4), fmt.Sprintf("m-%d", i)))
			if err != nil || acc.Applied {
				t.Fatalf("round %d, send %d: %+v, %v; want accepted by the broker", round, i, acc, err)
			}
		}
	}
	total := func() int64 {
		var sum int64
		for i := range 4 {
			v, err := builtin.CounterGet.Call(ctx, n, fmt.Sprintf("c%d", i))
			if err != nil {
				t.Fatal(err)
			}
			sum += v.Value
		}
		return sum
	}
	waitFor(t, "every message applied", func() bool { return total() >= sends })
	// The resent ids were delivered too (the broker keeps no ids) and
	// applied nothing: wait until the broker holds nothing, then count.
	waitFor(t, "the broker's queues drained", func() bool {
		st, err := n.BrokerStats(ctx)
		return err == nil && st.Ready == 0 && st.InFlight == 0
	})
	if got := total(); got != sends {
		t.Fatalf("counters total %d after %d sends of %d ids, want %d", got, 2*sends, sends, sends)
	}

	if _, err := n.Send(ctx, runtime.Envelope{ActorType: "refuser", ActorID: "r1", Method: "poke", MessageID: "doomed"}); err != nil {
		t.Fatal(err)
	}
	var dead []queue.DeadLetter
	waitFor(t, "the failing message dead-lettered", func() bool {
		dead, err = n.DeadLetters(ctx, queue.Filter{})
		return err == nil && len(dead) == 1
	})
	if d := dead[0]; d.ID != "doomed" || d.Actor != "refuser/r1" || d.Attempts != 2 || !strings.Contains(d.LastError, "refused on purpose") {
		t.Fatalf("dead letter %+v, want doomed to refuser/r1 after 2 attempts with its error", d)
	}
	if moved, err := n.Replay(ctx, queue.Filter{IDs: []string{"doomed"}}); err != nil || moved != 1 {
		t.Fatalf("replay: %d, %v", moved, err)
	}
	waitFor(t, "the replayed message dead-lettered again", func() bool {
		dead, err = n.DeadLetters(ctx, queue.Filter{Actor: "refuser/r1"})
		return err == nil && len(dead) == 1
	})
	// The broker in /health and /metrics.
	h := n.Health().Components.MessageQueues
	if h == nil || h.RabbitMQ == nil || h.RabbitMQ.PingMs < 0 || h.RabbitMQ.Queues == nil || h.RabbitMQ.Publishes < 2*sends ||
		strings.Contains(h.RabbitMQ.Addr, "@") || h.Status != "healthy" {
		t.Fatalf("/health messageQueues = %+v (rabbitmq %+v)", h, h.RabbitMQ)
	}
	status, body := httpGet(t, "http://"+n.HTTPAddr()+"/metrics")
	metrics := string(body)
	if status != 200 || !strings.Contains(metrics, `loom_rabbitmq_operations_total{op="publish"}`) || !strings.Contains(metrics, "loom_rabbitmq_round_trip_seconds_count") {
		t.Fatalf("/metrics (HTTP %d) has no RabbitMQ counters", status)
	}
	if gone, err := n.Purge(ctx, queue.Filter{Type: "refuser"}); err != nil || gone != 1 {
		t.Fatalf("purge: %d, %v", gone, err)
	}
	if dead, err = n.DeadLetters(ctx, queue.Filter{}); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters after the purge: %+v, %v", dead, err)
	}
}

// TestRabbitMQAcrossNodes: in a 3-node cluster, a message is consumed by
// whichever node the broker gives it to and applied on its actor's owner.
func TestRabbitMQAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and a broker")
	}
	url := rabbitmqtest.Shared(t).VHost(t)
	c := nodetest.StartConfigured(t, 3, func(cfg *config.Config) {
		*cfg = rabbitConfig(t, *cfg)
		cfg.Messaging.RabbitMQ.URL = url
	})
	ctx := context.Background()
	const actors, sends = 12, 60
	for i := range sends {
		via := c.Nodes[i%3]
		if _, err := via.Send(ctx, counterAdd(fmt.Sprintf("x%d", i%actors), fmt.Sprintf("x-%d", i))); err != nil {
			t.Fatalf("send %d via %s: %v", i, via.ID(), err)
		}
	}
	waitFor(t, "every message applied on its owner", func() bool {
		var sum int64
		for i := range actors {
			v, err := builtin.CounterGet.Call(ctx, c.Nodes[0], fmt.Sprintf("x%d", i))
			if err != nil {
				return false
			}
			sum += v.Value
		}
		return sum == sends
	})
	active := 0
	for _, nd := range c.Nodes {
		active += nd.Runtime().Active("counter")
	}
	if active != actors {
		t.Fatalf("%d counter activations across the cluster, want %d (one per actor)", active, actors)
	}
}
