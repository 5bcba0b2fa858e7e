package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/adapters/rabbitmq"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
	"github.com/loom-mesh/loom/queue"
)

func TestMain(m *testing.M) { os.Exit(rabbitmqtest.Main(m)) }

// testPolicy retries twice, 50 ms then 100 ms, without jitter.
func testPolicy(string) rabbitmq.Policy {
	return rabbitmq.Policy{MaxRetries: 2, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}
}

// open opens a Broker on srv with a prefix of the test's own (or
// prefix), closed when t ends.
func open(t testing.TB, srv *rabbitmqtest.Server, prefix string, tweak func(*rabbitmq.Options)) *rabbitmq.Broker {
	t.Helper()
	o := rabbitmq.Options{URL: srv.URL(), Prefix: prefix, FIFOQueues: 2, MaxDelay: 2 * time.Second,
		Policy: testPolicy, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		UnavailableRetry: 100 * time.Millisecond}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := rabbitmq.Open(ctx, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// recorder is a handler that records every delivery.
type recorder struct {
	mu    sync.Mutex
	seen  []delivery
	fail  func(m queue.Message) error // nil: succeed
	after func(m queue.Message)
}

type delivery struct {
	queue.Message
	at time.Time
}

func (r *recorder) handle(ctx context.Context, m queue.Message) error {
	r.mu.Lock()
	r.seen = append(r.seen, delivery{m, time.Now()})
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail(m)
	}
	return nil
}

func (r *recorder) of(id string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.seen {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

func (r *recorder) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msg(id, actor string, ordered bool) queue.Message {
	return queue.Message{ID: id, Actor: actor, Method: "add", Payload: []byte(`{"n":1}`), Ordered: ordered,
		Headers: map[string]string{"k": "v"}, CorrelationID: "corr-" + id,
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
}

func publish(t testing.TB, b *rabbitmq.Broker, m queue.Message) queue.Accepted {
	t.Helper()
	a, err := b.Publish(context.Background(), m)
	if err != nil {
		t.Fatalf("publish %s: %v", m.ID, err)
	}
	return a
}

func TestPublishConfirmedThenDoneAcked(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	b := open(t, srv, rabbitmqtest.Name(), nil)
	before := time.Now()
	a := publish(t, b, msg("m1", "counter/a", false))
	publish(t, b, msg("m2", "counter/a", true))
	if a.ID != "m1" || a.AcceptedAt.Before(before) || a.Duplicate || a.Applied {
		t.Fatalf("accepted %+v", a)
	}
	// Confirmed means stored: the messages wait in the broker before any
	// consumer exists.
	st, err := b.Stats(context.Background())
	if err != nil || st.Ready != 2 {
		t.Fatalf("stats before consuming: %+v %v", st, err)
	}
	if _, err := b.Publish(context.Background(), queue.Message{ID: "x", Actor: "counter/a"}); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("no method: %v", err)
	}
	r := &recorder{}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both delivered", func() bool { return len(r.all()) == 2 })
	for _, d := range r.all() {
		want := msg(d.ID, "counter/a", d.ID == "m2")
		if d.Actor != want.Actor || d.Method != want.Method || string(d.Payload) != string(want.Payload) ||
			d.CorrelationID != want.CorrelationID || d.TraceParent != want.TraceParent || d.Headers["k"] != "v" ||
			d.Ordered != want.Ordered || d.Attempts != 0 || d.AcceptedAt.IsZero() {
			t.Errorf("delivered %+v", d.Message)
		}
	}
	time.Sleep(500 * time.Millisecond) // nothing more arrives
	if n := len(r.all()); n != 2 {
		t.Fatalf("%d deliveries, want 2 (acked messages redelivered?)", n)
	}
	st, err = b.Stats(context.Background())
	if err != nil || st.Ready != 0 || st.InFlight != 0 || st.Consumers != 3 {
		t.Fatalf("stats after: %+v %v", st, err)
	}
	ms := b.MeterStats()
	if ms.Publishes < 2 || ms.Acks < 2 || ms.Answered == 0 || ms.P50 <= 0 {
		t.Fatalf("meter %+v", ms)
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestFailures(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	for _, c := range []struct {
		name      string
		ordered   bool
		class     rabbitmq.Class
		wantCalls int
	}{
		{"std failed", false, rabbitmq.Failed, 3},
		{"fifo failed", true, rabbitmq.Failed, 3},
		{"std permanent", false, rabbitmq.Permanent, 1},
		{"fifo permanent", true, rabbitmq.Permanent, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := open(t, srv, rabbitmqtest.Name(), func(o *rabbitmq.Options) {
				o.Classify = func(error) rabbitmq.Class { return c.class }
			})
			r := &recorder{fail: func(m queue.Message) error { return fmt.Errorf("boom %d", m.Attempts) }}
			if err := b.Consume(r.handle); err != nil {
				t.Fatal(err)
			}
			a := publish(t, b, msg("bad", "counter/f", c.ordered))
			var dead []queue.DeadLetter
			waitFor(t, 15*time.Second, "the dead letter", func() bool {
				var err error
				dead, err = b.ListDead(context.Background(), queue.Filter{})
				return err == nil && len(dead) == 1
			})
			calls := r.of("bad")
			if len(calls) != c.wantCalls {
				t.Fatalf("%d calls, want %d", len(calls), c.wantCalls)
			}
			for i, d := range calls {
				if d.Attempts != uint32(i) {
					t.Errorf("call %d: Attempts %d", i, d.Attempts)
				}
				if i > 0 {
					// Backoff 50 ms then 100 ms (no jitter).
					if gap, want := d.at.Sub(calls[i-1].at), testPolicy("").Backoff(uint32(i)); gap < want {
						t.Errorf("retry %d after %v, want at least %v", i, gap, want)
					}
				}
			}
			dl := dead[0]
			want := fmt.Sprintf("boom %d", c.wantCalls-1)
			if dl.ID != "bad" || dl.Attempts != uint32(c.wantCalls) || dl.LastError != want ||
				!dl.AcceptedAt.Equal(a.AcceptedAt) || dl.DeadAt.Before(calls[len(calls)-1].at.Add(-time.Millisecond)) ||
				dl.Actor != "counter/f" || dl.Ordered != c.ordered {
				t.Fatalf("dead letter %+v (accepted %v)", dl, a.AcceptedAt)
			}
			time.Sleep(300 * time.Millisecond)
			if n := len(r.of("bad")); n != c.wantCalls {
				t.Fatalf("delivered again after dead-lettering: %d calls", n)
			}
		})
	}
}

func TestUnavailableIsNotAnAttempt(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprint("ordered=", ordered), func(t *testing.T) {
			b := open(t, srv, rabbitmqtest.Name(), func(o *rabbitmq.Options) {
				o.Classify = func(error) rabbitmq.Class { return rabbitmq.Unavailable }
			})
			var mu sync.Mutex
			n := 0
			r := &recorder{fail: func(m queue.Message) error {
				mu.Lock()
				defer mu.Unlock()
				n++
				if n <= 4 { // more than MaxRetries: were they attempts, it would die
					return errors.New("owner unreachable")
				}
				return nil
			}}
			if err := b.Consume(r.handle); err != nil {
				t.Fatal(err)
			}
			publish(t, b, msg("u", "counter/u", ordered))
			waitFor(t, 10*time.Second, "5 deliveries", func() bool { return len(r.of("u")) == 5 })
			calls := r.of("u")
			for i, d := range calls {
				if d.Attempts != 0 {
					t.Errorf("call %d: Attempts %d", i, d.Attempts)
				}
				if i > 0 && d.at.Sub(calls[i-1].at) < 90*time.Millisecond {
					t.Errorf("call %d after %v, want UnavailableRetry 100ms", i, d.at.Sub(calls[i-1].at))
				}
			}
			if dead, _ := b.ListDead(context.Background(), queue.Filter{}); len(dead) != 0 {
				t.Fatalf("dead letters %+v", dead)
			}
		})
	}
}

// sameQueueActor finds an actor other than a that hashes to a's fifo queue.
func sameQueueActor(b *rabbitmq.Broker, a string) string {
	for i := 0; ; i++ {
		o := fmt.Sprintf("counter/o%d", i)
		if b.FIFOQueueOf(o) == b.FIFOQueueOf(a) {
			return o
		}
	}
}

func TestFIFOFailingHeadBlocksItsQueue(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	b := open(t, srv, rabbitmqtest.Name(), nil)
	other := sameQueueActor(b, "counter/h")
	r := &recorder{fail: func(m queue.Message) error {
		if m.ID == "head" {
			return errors.New("head fails")
		}
		return nil
	}}
	publish(t, b, msg("head", "counter/h", true))
	publish(t, b, msg("next1", "counter/h", true))
	publish(t, b, msg("next2", "counter/h", true))
	publish(t, b, msg("neighbour", other, true)) // another actor on the same queue
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "all delivered", func() bool { return len(r.all()) == 6 })
	var order []string
	for _, d := range r.all() {
		order = append(order, d.ID)
	}
	want := []string{"head", "head", "head", "next1", "next2", "neighbour"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	if dead, _ := b.ListDead(context.Background(), queue.Filter{}); len(dead) != 1 || dead[0].ID != "head" {
		t.Fatalf("dead %+v", dead)
	}
}

func TestStdFailureDoesNotBlock(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	b := open(t, srv, rabbitmqtest.Name(), func(o *rabbitmq.Options) {
		o.Policy = func(string) rabbitmq.Policy {
			return rabbitmq.Policy{MaxRetries: 1, InitialBackoff: time.Second, MaxBackoff: time.Second}
		}
		o.Prefetch = 1 // even with one delivery at a time
	})
	r := &recorder{fail: func(m queue.Message) error {
		if m.ID == "bad" {
			return errors.New("bad")
		}
		return nil
	}}
	publish(t, b, msg("bad", "counter/s", false))
	for i := range 10 {
		publish(t, b, msg(fmt.Sprint("good", i), "counter/s", false))
	}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every good message", func() bool { return len(r.all()) >= 11 })
	all := r.all()
	if all[0].ID != "bad" || slices.ContainsFunc(all[1:11], func(d delivery) bool { return d.ID == "bad" }) {
		t.Fatalf("the failing message held the others back: %v", all)
	}
	waitFor(t, 10*time.Second, "the retry", func() bool { return len(r.of("bad")) == 2 })
	if gap := r.of("bad")[1].at.Sub(r.of("bad")[0].at); gap < time.Second {
		t.Fatalf("retried after %v, want 1 s", gap)
	}
}

func TestDelayedPublish(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	b := open(t, srv, rabbitmqtest.Name(), nil)
	r := &recorder{}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cases := map[string]time.Duration{"d50": 50 * time.Millisecond, "d700": 700 * time.Millisecond, "d2500": 2500 * time.Millisecond, "f300": 300 * time.Millisecond}
	for id, d := range cases {
		m := msg(id, "counter/d"+id, id[0] == 'f')
		m.DeliverAt = now.Add(d)
		publish(t, b, m)
	}
	publish(t, b, msg("now", "counter/d", false))
	waitFor(t, 15*time.Second, "every message", func() bool { return len(r.all()) == 5 })
	for _, d := range r.all() {
		if d.ID == "now" {
			continue
		}
		if d.at.Before(d.DeliverAt) {
			t.Errorf("%s delivered %v before its DeliverAt", d.ID, d.DeliverAt.Sub(d.at))
		}
		if late := d.at.Sub(d.DeliverAt); late > 500*time.Millisecond {
			t.Errorf("%s delivered %v late", d.ID, late)
		}
		if !d.DeliverAt.Equal(now.Add(cases[d.ID])) {
			t.Errorf("%s DeliverAt %v", d.ID, d.DeliverAt)
		}
	}
	if all := r.all(); all[len(all)-1].ID != "d2500" {
		t.Errorf("last delivered: %s, want d2500", all[len(all)-1].ID)
	}
}

func TestFIFOOrderWithTwoBrokers(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	prefix := rabbitmqtest.Name()
	var mu sync.Mutex
	got := map[string][]int{}               // actor → sequence numbers in delivery order
	byQueue := map[string]map[string]bool{} // fifo queue → brokers that delivered from it
	brokers := []*rabbitmq.Broker{open(t, srv, prefix, nil), open(t, srv, prefix, nil)}
	for i, b := range brokers {
		name := fmt.Sprint("b", i)
		err := b.Consume(func(ctx context.Context, m queue.Message) error {
			var n int
			fmt.Sscanf(m.ID[strings.LastIndexByte(m.ID, '-')+1:], "%d", &n)
			mu.Lock()
			got[m.Actor] = append(got[m.Actor], n)
			q := b.FIFOQueueOf(m.Actor)
			if byQueue[q] == nil {
				byQueue[q] = map[string]bool{}
			}
			byQueue[q][name] = true
			mu.Unlock()
			time.Sleep(time.Millisecond)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const actors, each = 4, 40
	var wg sync.WaitGroup
	for a := range actors {
		wg.Go(func() {
			for i := range each {
				actor := fmt.Sprintf("counter/fifo%d", a)
				// Alternate the publishing broker: order is the order of
				// the confirms, whoever sent them.
				if _, err := brokers[i%2].Publish(context.Background(), msg(fmt.Sprintf("%s-%d", actor, i), actor, true)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, 30*time.Second, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range got {
			n += len(s)
		}
		return n >= actors*each
	})
	mu.Lock()
	defer mu.Unlock()
	for actor, seq := range got {
		if len(seq) != each {
			t.Errorf("%s: %d deliveries, want %d", actor, len(seq), each)
		}
		for i, n := range seq {
			if n != i {
				t.Fatalf("%s out of order: %v", actor, seq)
			}
		}
	}
	for q, bs := range byQueue {
		if len(bs) != 1 {
			t.Errorf("queue %s delivered by %d brokers: single active consumer broken", q, len(bs))
		}
	}
}

func TestCrashLoopEndsInDeadLetters(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	const limit = 3
	var b *rabbitmq.Broker
	b = open(t, srv, rabbitmqtest.Name(), func(o *rabbitmq.Options) { o.DeliveryLimit = limit })
	r := &recorder{fail: func(m queue.Message) error {
		b.DropConnection() // the consumer dies holding the message
		return errors.New("died")
	}}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	// Through the delay ladder first: its x-death then holds an older
	// death (expired) than the one that put it in the dead letters.
	m := msg("poison", "counter/c", false)
	m.DeliverAt = time.Now().Add(150 * time.Millisecond)
	publish(t, b, m)
	var dead []queue.DeadLetter
	waitFor(t, 30*time.Second, "the dead letter", func() bool {
		var err error
		dead, err = b.ListDead(context.Background(), queue.Filter{})
		return err == nil && len(dead) == 1
	})
	calls := r.of("poison")
	if len(calls) < limit || len(calls) > limit+1 {
		t.Errorf("%d deliveries, want %d or %d", len(calls), limit, limit+1)
	}
	dl := dead[0]
	if dl.ID != "poison" || !strings.Contains(dl.LastError, "without an outcome") || dl.DeadAt.IsZero() {
		t.Fatalf("dead letter %+v", dl)
	}
	if ms := b.MeterStats(); ms.Reconnects < limit {
		t.Fatalf("reconnects %d", ms.Reconnects)
	}
}

func TestDeadLetterListReplayPurge(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	b := open(t, srv, rabbitmqtest.Name(), func(o *rabbitmq.Options) {
		o.Classify = func(error) rabbitmq.Class { return rabbitmq.Permanent }
	})
	var mu sync.Mutex
	failing := true
	r := &recorder{fail: func(m queue.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("refused")
		}
		return nil
	}}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	ids := []struct{ id, actor string }{
		{"a1", "counter/1"}, {"a2", "counter/1"}, {"a3", "counter/2"}, {"t1", "timer/1"}, {"t2", "timer/2"},
	}
	var cut time.Time
	for i, x := range ids {
		publish(t, b, msg(x.id, x.actor, i%2 == 0))
		waitFor(t, 10*time.Second, "dead "+x.id, func() bool {
			d, _ := b.ListDead(context.Background(), queue.Filter{IDs: []string{x.id}})
			return len(d) == 1
		})
		if i == 2 {
			cut = time.Now()
		}
	}
	ctx := context.Background()
	idsOf := func(dl []queue.DeadLetter) []string {
		var out []string
		for _, d := range dl {
			out = append(out, d.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    queue.Filter
		want []string
	}{
		{"all", queue.Filter{}, []string{"a1", "a2", "a3", "t1", "t2"}},
		{"type", queue.Filter{Type: "counter"}, []string{"a1", "a2", "a3"}},
		{"actor", queue.Filter{Actor: "counter/1"}, []string{"a1", "a2"}},
		{"ids", queue.Filter{IDs: []string{"t2", "a2", "zz"}}, []string{"a2", "t2"}},
		{"before", queue.Filter{Before: cut}, []string{"a1", "a2", "a3"}},
		{"limit", queue.Filter{Limit: 2}, []string{"a1", "a2"}},
		{"type and limit", queue.Filter{Type: "timer", Limit: 1}, []string{"t1"}},
	} {
		dl, err := b.ListDead(ctx, c.f)
		if err != nil || !slices.Equal(idsOf(dl), c.want) {
			t.Errorf("%s: %v %v, want %v", c.name, idsOf(dl), err, c.want)
		}
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	n, err := b.Replay(ctx, queue.Filter{IDs: []string{"a2", "t1"}}, time.Now())
	if err != nil || n != 2 {
		t.Fatalf("replay: %d %v", n, err)
	}
	waitFor(t, 10*time.Second, "the replayed messages", func() bool { return len(r.of("a2")) == 2 && len(r.of("t1")) == 2 })
	for _, id := range []string{"a2", "t1"} {
		if d := r.of(id)[1]; d.Attempts != 0 || d.LastError != "" {
			t.Errorf("replayed %s: Attempts %d LastError %q", id, d.Attempts, d.LastError)
		}
	}
	n, err = b.Purge(ctx, queue.Filter{Type: "counter"})
	if err != nil || n != 2 {
		t.Fatalf("purge: %d %v", n, err)
	}
	dl, err := b.ListDead(ctx, queue.Filter{})
	if err != nil || !slices.Equal(idsOf(dl), []string{"t2"}) {
		t.Fatalf("left: %v %v", idsOf(dl), err)
	}
	// The scan's nack-requeue is applied by the queue asynchronously: a
	// passive declare just after it may not count the returned messages.
	waitFor(t, 5*time.Second, "stats to count the dead letter left", func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.Dead == 1
	})
}

func TestOpenFailsWithoutLeakingThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := rabbitmq.Open(ctx, rabbitmq.Options{URL: "amqp://loom:hunter2@127.0.0.1:1/"})
	if !errors.Is(err, rabbitmq.ErrUnavailable) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("open: %v", err)
	}
	srv := rabbitmqtest.Shared(t)
	_, err = rabbitmq.Open(ctx, rabbitmq.Options{URL: "amqp://loom:hunter2@" + srv.Addr() + "/"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("open with a wrong password: %v", err)
	}
}

func TestTopologyLoss(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	prefix := rabbitmqtest.Name()
	b := open(t, srv, prefix, nil)
	deleteStd := func() {
		c, err := amqp.Dial(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDelete(prefix+".std", false, false, false); err != nil {
			t.Fatal(err)
		}
	}
	// Unroutable: returned by the broker, so not accepted.
	deleteStd()
	if _, err := b.Publish(context.Background(), msg("lost", "counter/t", false)); !errors.Is(err, rabbitmq.ErrUnconfirmed) || !strings.Contains(err.Error(), "unroutable") {
		t.Fatalf("publish to a deleted queue: %v", err)
	}
	// A consumer cancelled by the broker makes the Broker reconnect,
	// which declares the queue again.
	r := &recorder{}
	if err := b.Consume(r.handle); err != nil {
		t.Fatal(err)
	}
	b.DropConnection() // the reconnection declares std again
	waitFor(t, 10*time.Second, "the reconnection", func() bool { return b.MeterStats().Reconnects >= 1 })
	deleteStd()
	waitFor(t, 10*time.Second, "the second reconnection", func() bool { return b.MeterStats().Reconnects >= 2 })
	waitFor(t, 10*time.Second, "a confirmed publish", func() bool {
		_, err := b.Publish(context.Background(), msg("again", "counter/t", false))
		return err == nil
	})
	waitFor(t, 10*time.Second, "its delivery", func() bool { return len(r.of("again")) > 0 })
}

// TestCloseLeavesUnsettledForAnotherNode closes a Broker while its
// handler runs: Close cancels the handler and waits for it, the message
// is not acked, and another Broker gets it, with the lost delivery
// counted as an attempt.
func TestCloseLeavesUnsettledForAnotherNode(t *testing.T) {
	srv := rabbitmqtest.Shared(t)
	prefix := rabbitmqtest.Name()
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprint("ordered=", ordered), func(t *testing.T) {
			b1 := open(t, srv, prefix, nil)
			started := make(chan struct{})
			var returned sync.WaitGroup
			returned.Add(1)
			if err := b1.Consume(func(ctx context.Context, m queue.Message) error {
				close(started)
				<-ctx.Done()
				returned.Done()
				return ctx.Err()
			}); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprint("held-", ordered)
			publish(t, b1, msg(id, "counter/held", ordered))
			<-started
			if err := b1.Close(); err != nil {
				t.Fatal(err)
			}
			returned.Wait() // Close waited for the handler
			if _, err := b1.Publish(context.Background(), msg("x", "counter/held", false)); !errors.Is(err, rabbitmq.ErrClosed) {
				t.Fatalf("publish after Close: %v", err)
			}
			b2 := open(t, srv, prefix, nil)
			r := &recorder{}
			if err := b2.Consume(r.handle); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the redelivery", func() bool { return len(r.of(id)) == 1 })
			if a := r.of(id)[0].Attempts; a != 1 {
				t.Errorf("Attempts %d after one lost delivery, want 1", a)
			}
			_ = b2.Close()
		})
	}
}
