package rabbitmqtest_test

import (
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/internal/rabbitmqtest"
)

func TestMain(m *testing.M) { os.Exit(rabbitmqtest.Main(m)) }

// TestStartKillRestartStop starts a broker of its own, keeps a durable
// message across a crash, and checks that Stop leaves no VM, helper or
// epmd behind.
func TestStartKillRestartStop(t *testing.T) {
	t0 := time.Now()
	s := rabbitmqtest.Start(t)
	t.Logf("started in %v", time.Since(t0))
	if !strings.HasPrefix(s.Node, "loomtest-") {
		t.Fatalf("node %q", s.Node)
	}
	pids := s.Pids()
	if len(pids) < 2 {
		t.Fatalf("pids %v: want the VM and epmd at least", pids)
	}
	c := dial(t, s.URL())
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	// A quorum queue killed in its first seconds comes back without the
	// messages it confirmed (see ElectQuorumLeaders): let it settle.
	time.Sleep(5 * time.Second)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", "q", true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("kept")})
	if err != nil {
		t.Fatal(err)
	}
	if !dc.Wait() {
		t.Fatal("publish not confirmed")
	}

	s.Kill()
	for _, p := range pids[:1] {
		if rabbitmqtest.Alive(p) {
			t.Fatalf("VM %d alive after Kill", p)
		}
	}
	t0 = time.Now()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(t0))
	c2 := dial(t, s.URL())
	ch2, err := c2.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var d amqp.Delivery
	var ok bool
	deadline := time.Now().Add(30 * time.Second) // the queue's leader is elected after the restart
	for !ok && time.Now().Before(deadline) {
		if d, ok, err = ch2.Get("q", true); err != nil {
			t.Fatalf("get after restart: %v (after %v)", err, time.Since(t0))
		}
		if !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ok || string(d.Body) != "kept" {
		t.Fatalf("after restart: ok=%v body=%q", ok, d.Body)
	}

	pids = s.Pids()
	s.Stop()
	s.Stop() // twice is fine
	for _, p := range pids {
		if rabbitmqtest.Alive(p) {
			t.Errorf("process %d alive after Stop", p)
		}
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s not removed: %v", s.Dir, err)
	}
}

func TestSharedAndVHost(t *testing.T) {
	s := rabbitmqtest.Shared(t)
	if s2 := rabbitmqtest.Shared(t); s2 != s {
		t.Fatal("Shared returned two brokers")
	}
	u := s.VHost(t)
	if !strings.Contains(u, "/t") {
		t.Fatalf("vhost url %q", strings.ReplaceAll(u, s.Password, "****"))
	}
	c := dial(t, u)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if a, b := rabbitmqtest.Name(), rabbitmqtest.Name(); a == b {
		t.Fatalf("Name twice %q", a)
	}
}

func dial(t *testing.T, u string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
