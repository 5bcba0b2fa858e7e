package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// The test actor: "acct" keeps a total and the order in which it applied
// its messages' tags.
type acct struct{}

type deposit struct {
	Tag    string `json:"tag"`
	Amount int64  `json:"amount"`
	// FailTimes makes the turn fail while it has been delivered fewer than
	// this many times before (runtime.DeliveryAttempts).
	FailTimes uint32 `json:"failTimes,omitempty"`
	// Always fails every delivery while failing is set.
	Always bool `json:"always,omitempty"`
	// Forward sends the same amount on to this acct from the turn.
	Forward string `json:"forward,omitempty"`
}

type ledger struct {
	Total int64    `json:"total"`
	Tags  []string `json:"tags"`
}

// failing gates deposits with Always set.
var failing atomic.Bool

var (
	acctType = runtime.NewType("acct", func(string) *acct { return &acct{} })
	deposits = runtime.AddMethod(acctType, "deposit", func(ctx runtime.Context, _ *acct, in deposit) (ledger, error) {
		if in.Always && failing.Load() {
			return ledger{}, errors.New("refused on purpose")
		}
		if runtime.DeliveryAttempts(ctx) < in.FailTimes {
			return ledger{}, fmt.Errorf("failing attempt %d on purpose", runtime.DeliveryAttempts(ctx)+1)
		}
		l, _, err := runtime.GetState[ledger](ctx.State(), "ledger")
		if err != nil {
			return ledger{}, err
		}
		l.Total += in.Amount
		l.Tags = append(l.Tags, in.Tag)
		if in.Forward != "" {
			b, _ := json.Marshal(deposit{Tag: in.Tag, Amount: in.Amount})
			if _, err := ctx.Messages().Send(ctx, runtime.Envelope{ActorType: "acct", ActorID: in.Forward, Method: "deposit", Payload: b}); err != nil {
				return ledger{}, err
			}
		}
		return l, runtime.SetState(ctx.State(), "ledger", l)
	})
	read = runtime.AddMethod0(acctType, "read", func(ctx runtime.Context, _ *acct) (ledger, error) {
		l, _, err := runtime.GetState[ledger](ctx.State(), "ledger")
		return l, err
	})
)

type session struct{ id lock.SessionID }

func (s session) Session() lock.SessionID { return s.id }
func (s session) Valid() bool             { return true }

type world struct {
	t     *testing.T
	store *inmem.Journal
	rt    *runtime.Runtime
	d     *messaging.Dispatcher
}

func newWorld(t *testing.T, mode func(string) bool) *world {
	t.Helper()
	return newWorldWith(t, mode, false)
}

// newWorldWith is newWorld, with messages applied on acceptance when
// direct (runtime.Options.DirectMessages).
func newWorldWith(t *testing.T, mode func(string) bool, direct bool, more ...func(*runtime.Options)) *world {
	t.Helper()
	w := &world{t: t, store: inmem.NewJournal()}
	coord := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	sid, err := coord.CreateSession(context.Background(), "node-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ro := runtime.Options{
		NodeID: "node-test", Journal: w.store, Coordinator: coord, Session: session{sid},
		Messages: w.store, MessageOrdered: mode, MaxDelay: time.Hour, DirectMessages: direct,
	}
	for _, m := range more {
		m(&ro)
	}
	w.rt, err = runtime.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.rt.Register(acctType); err != nil {
		t.Fatal(err)
	}
	w.d, err = messaging.New(messaging.Options{
		Store: w.store, Invoker: w.rt, Workers: 4, ScanInterval: 50 * time.Millisecond,
		UnavailableRetry: 10 * time.Millisecond,
		Policy: func(string) messaging.Policy {
			return messaging.Policy{MaxRetries: 2, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.d.Start()
	t.Cleanup(func() {
		w.d.Close()
		_ = w.rt.Close(context.Background())
		_ = w.store.Close()
		_ = coord.Close()
	})
	return w
}

func (w *world) send(id string, d deposit, opts ...runtime.SendOption) queue.Accepted {
	w.t.Helper()
	acc, err := deposits.Send(context.Background(), w.rt, id, d, opts...)
	if err != nil {
		w.t.Fatalf("send %+v to %s: %v", d, id, err)
	}
	return acc
}

func (w *world) ledger(id string) ledger {
	w.t.Helper()
	l, err := read.Call(context.Background(), w.rt, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acks counts the actor's journal entries acknowledging each message id.
func (w *world) acks(actor string) map[string]int {
	w.t.Helper()
	es, err := w.store.Read(context.Background(), actor, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range es {
		if e.Kind == journal.KindMessageAck {
			n[e.IdempotencyKey]++
		}
	}
	return n
}

func (w *world) quiet(what string) {
	w.t.Helper()
	eventually(w.t, what, func() bool {
		st, err := w.store.Stats(context.Background())
		if err != nil {
			w.t.Fatal(err)
		}
		for _, s := range st {
			if s.Pending > 0 || s.Scheduled > 0 {
				return false
			}
		}
		return w.d.InFlight() == 0
	})
}

func TestSendAppliesEachMessageOnce(t *testing.T) {
	w := newWorld(t, nil)
	var ids []string
	for i := range 20 {
		ids = append(ids, w.send("a1", deposit{Tag: fmt.Sprint(i), Amount: 1}).ID)
	}
	// A second send of an id already accepted answers the first acceptance.
	dup := w.send("a1", deposit{Tag: "dup", Amount: 100}, runtime.WithMessageID(ids[3]))
	if !dup.Duplicate || dup.ID != ids[3] {
		t.Fatalf("resend of %s: %+v, want the first acceptance", ids[3], dup)
	}
	w.quiet("the queue to drain")
	if l := w.ledger("a1"); l.Total != 20 {
		t.Fatalf("total %d after 20 messages of 1 (ledger %+v)", l.Total, l)
	}
	acks := w.acks("acct/a1")
	for _, id := range ids {
		if acks[id] != 1 {
			t.Errorf("message %s acknowledged %d times in the journal", id, acks[id])
		}
	}
}

func TestFIFOOrderSurvivesRetries(t *testing.T) {
	w := newWorld(t, nil) // every type ordered
	for i := range 6 {
		d := deposit{Tag: fmt.Sprint(i), Amount: 1}
		if i == 2 {
			d.FailTimes = 2 // fails twice, succeeds on the third delivery
		}
		w.send("f", d)
	}
	w.quiet("the queue to drain")
	got := w.ledger("f").Tags
	if want := []string{"0", "1", "2", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("fifo applied %v, want %v", got, want)
	}
}

func TestStandardModeDoesNotBlockOnAFailure(t *testing.T) {
	w := newWorld(t, func(string) bool { return false })
	w.send("s", deposit{Tag: "slow", Amount: 1, FailTimes: 2})
	for i := range 3 {
		w.send("s", deposit{Tag: fmt.Sprint(i), Amount: 1})
	}
	w.quiet("the queue to drain")
	got := w.ledger("s").Tags
	if len(got) != 4 || got[3] != "slow" {
		t.Fatalf("standard applied %v, want the failing message last", got)
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	failing.Store(true)
	defer failing.Store(false)
	w := newWorld(t, nil)
	acc := w.send("d", deposit{Tag: "doomed", Amount: 5, Always: true})
	w.send("d", deposit{Tag: "after", Amount: 1})
	w.quiet("the message to be dead-lettered and the next applied")
	dead, err := w.store.ListDead(context.Background(), queue.Filter{Actor: "acct/d"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != acc.ID || dead[0].Attempts != 3 || dead[0].LastError == "" {
		t.Fatalf("dead letters %+v, want %s after 3 attempts (1 + maxRetries 2)", dead, acc.ID)
	}
	if l := w.ledger("d"); l.Total != 1 {
		t.Fatalf("ledger %+v: the dead message must not apply, the one behind it must", l)
	}
	failing.Store(false)
	if n, err := w.store.Replay(context.Background(), queue.Filter{IDs: []string{acc.ID}}, time.Now()); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	w.quiet("the replayed message to apply")
	if l := w.ledger("d"); l.Total != 6 {
		t.Fatalf("after replay the ledger is %+v, want total 6", l)
	}
}

func TestUnknownMethodIsDeadLetteredAtOnce(t *testing.T) {
	w := newWorld(t, nil)
	// Bypass the send-time check, as a message from a node with another
	// release would.
	if _, err := w.store.Enqueue(context.Background(), queue.Message{ID: "m-unknown", Actor: "acct/u", Method: "nope", Ordered: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message to be dead-lettered", func() bool {
		dead, _ := w.store.ListDead(context.Background(), queue.Filter{IDs: []string{"m-unknown"}})
		return len(dead) == 1 && dead[0].Attempts == 1
	})
	if _, err := deposits.Send(context.Background(), w.rt, "u", deposit{}, runtime.WithDelay(2*time.Hour)); !errors.Is(err, runtime.ErrDeliverAtTooFar) {
		t.Fatalf("send beyond the horizon: %v, want ErrDeliverAtTooFar", err)
	}
	if _, err := w.rt.Send(context.Background(), runtime.Envelope{ActorType: "acct", ActorID: "u", Method: "nope"}); !errors.Is(err, runtime.ErrUnknownMethod) {
		t.Fatalf("send to an unknown method: %v, want ErrUnknownMethod at send", err)
	}
}

func TestOutboxSendsOnlyWhenTheTurnCommits(t *testing.T) {
	w := newWorld(t, nil)
	// The turn fails once after sending: the retry sends again under the
	// same derived id, and the store keeps one.
	w.send("src", deposit{Tag: "x", Amount: 7, Forward: "dst", FailTimes: 1})
	w.quiet("both queues to drain")
	if l := w.ledger("dst"); l.Total != 7 || len(l.Tags) != 1 {
		t.Fatalf("forwarded ledger %+v, want exactly one deposit of 7", l)
	}
}

func TestDelayedMessageWaits(t *testing.T) {
	w := newWorld(t, nil)
	start := time.Now()
	w.send("late", deposit{Tag: "late", Amount: 1}, runtime.WithDelay(300*time.Millisecond))
	w.send("late", deposit{Tag: "now", Amount: 1})
	eventually(t, "the delayed message", func() bool { return w.ledger("late").Total == 2 })
	if since := time.Since(start); since < 300*time.Millisecond {
		t.Fatalf("delayed message applied after %v, before its 300ms delay", since)
	}
	if got := w.ledger("late").Tags; !slices.Equal(got, []string{"now", "late"}) {
		t.Fatalf("order %v: the delayed message joins the queue when due", got)
	}
}

func TestRemindersFireAndStop(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	err := runtime.Execute(ctx, w.rt, acctType, "r", func(c runtime.Context, _ *acct) error {
		return deposits.Remind(c, "tick", deposit{Tag: "tick", Amount: 1}, 20*time.Millisecond, 40*time.Millisecond)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "three firings", func() bool { return w.ledger("r").Total >= 3 })
	rs, err := w.store.Reminders(ctx, "acct/r")
	if err != nil || len(rs) != 1 || rs[0].Name != "tick" {
		t.Fatalf("reminders %+v, %v", rs, err)
	}
	if err := w.store.DeleteReminder(ctx, "acct/r", "tick"); err != nil {
		t.Fatal(err)
	}
	w.quiet("the last firing to apply")
	n := w.ledger("r").Total
	time.Sleep(200 * time.Millisecond) // five periods: a deleted reminder fires no more
	if m := w.ledger("r").Total; m != n {
		t.Fatalf("the reminder fired %d more times after it was deleted", m-n)
	}
}

func TestASecondDeliveryIsSettled(t *testing.T) {
	w := newWorld(t, nil)
	w.d.Close() // deliver by hand
	acc := w.send("twice", deposit{Tag: "t", Amount: 1})
	ctx := runtime.WithDelivery(context.Background(), acc.ID, 0, nil)
	payload := []byte(`{"tag":"t","amount":1}`)
	if _, err := w.rt.Invoke(ctx, "acct", "twice", "deposit", payload); err != nil {
		t.Fatal(err)
	}
	_, err := w.rt.Invoke(ctx, "acct", "twice", "deposit", payload)
	if !errors.Is(err, runtime.ErrMessageSettled) {
		t.Fatalf("second delivery: %v, want ErrMessageSettled", err)
	}
	if l := w.ledger("twice"); l.Total != 1 {
		t.Fatalf("ledger %+v after two deliveries of one message", l)
	}
}
