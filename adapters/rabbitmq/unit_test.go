package rabbitmq

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func msDur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

func TestLadderRoute(t *testing.T) {
	o := Options{URL: "amqp://u:p@127.0.0.1:1/", Prefix: "p", MaxDelay: 2 * time.Second}
	o.defaults()
	tp := newTopology(o)
	if len(tp.rungs) != 5 || tp.rungs[4] != 1600*time.Millisecond {
		t.Fatalf("rungs %v", tp.rungs)
	}
	for _, c := range []struct {
		delay time.Duration
		want  string
	}{
		{0, "p"}, {99 * time.Millisecond, "p"}, {100 * time.Millisecond, "p.delay.100ms"},
		{399 * time.Millisecond, "p.delay.200ms"}, {400 * time.Millisecond, "p.delay.400ms"},
		{time.Hour, "p.delay.1600ms"},
	} {
		if got := tp.route("std", c.delay); got != c.want {
			t.Errorf("route(%v) = %s, want %s", c.delay, got, c.want)
		}
	}
	// An actor always hashes to the same fifo queue.
	if a, b := tp.fifoKey("counter/1"), tp.fifoKey("counter/1"); a != b || !strings.HasPrefix(a, "fifo.") {
		t.Fatalf("fifoKey %s %s", a, b)
	}
}

func TestBackoff(t *testing.T) {
	p := Policy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 350 * time.Millisecond}
	for i, want := range []time.Duration{100, 200, 350, 350} {
		if got := p.Backoff(uint32(i + 1)); got != want*time.Millisecond && !(want == 350 && got == 350*time.Millisecond) {
			t.Errorf("Backoff(%d) = %v, want %v ms", i+1, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	err := Options{URL: "amqp://loom:hunter2@127.0.0.1:5672/", FIFOQueues: -1, MaxDelay: time.Millisecond, Prefetch: 1 << 20}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"FIFOQueues", "MaxDelay", "Prefetch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: no %s", err, want)
		}
	}
	if err := (Options{}).Validate(); err == nil || !strings.Contains(err.Error(), "URL") {
		t.Errorf("empty URL: %v", err)
	}
	if err := (Options{URL: "amqp://loom:hunter2@127.0.0.1:5672/"}).Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	e := (&Broker{o: Options{URL: "amqp://loom:hunter2@127.0.0.1:5672/"}}).redact(errors.New("dial amqp://loom:hunter2@x"))
	if strings.Contains(e.Error(), "hunter2") {
		t.Errorf("redact: %v", e)
	}
}

func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	if o.Prefix != "loom" || o.FIFOQueues != 8 || o.Prefetch != 32 || o.DeliveryLimit != 20 || o.MaxDelay != time.Hour ||
		o.UnavailableRetry != 250*time.Millisecond || o.Policy("x") != DefaultPolicy() || o.Classify(errors.New("x")) != Failed {
		t.Fatalf("%+v", o)
	}
	o.URL = "amqp://u:p@127.0.0.1:5672/"
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := len(newTopology(o).rungs); n != 16 {
		t.Fatalf("%d rungs up to 1 h", n)
	}
}
