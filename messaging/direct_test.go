package messaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// kinds counts the actor's journal entries of each message kind by id.
func (w *world) kinds(actor string) map[journal.Kind]map[string]int {
	w.t.Helper()
	es, err := w.store.Read(context.Background(), actor, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	n := map[journal.Kind]map[string]int{}
	for _, e := range es {
		if e.Kind == journal.KindMessageAck || e.Kind == journal.KindMessageDirect {
			if n[e.Kind] == nil {
				n[e.Kind] = map[string]int{}
			}
			n[e.Kind][e.IdempotencyKey]++
		}
	}
	return n
}

// TestDirectAppliesOnAcceptance: with DirectMessages, a message to an idle
// actor this node hosts is applied by the time Send returns, accepted by
// the turn's own entry (one KindMessageDirect entry, no queue record, no
// acknowledgement); a resend of its id is a duplicate and applies nothing;
// the journal replays into the same state.
func TestDirectAppliesOnAcceptance(t *testing.T) {
	w := newWorldWith(t, nil, true)
	var ids []string
	for i := range 5 {
		acc := w.send("d", deposit{Tag: fmt.Sprint(i), Amount: 1})
		if !acc.Applied || acc.Seq != 0 || acc.Duplicate {
			t.Fatalf("send %d: %+v, want applied on acceptance", i, acc)
		}
		if l := w.ledger("d"); l.Total != int64(i+1) {
			t.Fatalf("after send %d returned: total %d, want %d", i, l.Total, i+1)
		}
		ids = append(ids, acc.ID)
	}
	dup := w.send("d", deposit{Tag: "dup", Amount: 100}, runtime.WithMessageID(ids[2]))
	if !dup.Duplicate || dup.Applied {
		t.Fatalf("resend of %s: %+v, want a duplicate", ids[2], dup)
	}
	if st, err := w.store.Stats(context.Background()); err != nil || len(st) != 0 {
		t.Fatalf("queues after direct sends: %+v, %v; want none", st, err)
	}
	k := w.kinds("acct/d")
	for _, id := range ids {
		if k[journal.KindMessageDirect][id] != 1 || k[journal.KindMessageAck][id] != 0 {
			t.Errorf("message %s: %d direct and %d ack entries, want 1 and 0", id, k[journal.KindMessageDirect][id], k[journal.KindMessageAck][id])
		}
	}
	if l := w.ledger("d"); l.Total != 5 {
		t.Fatalf("total %d, want 5: the duplicate applied", l.Total)
	}
	// One entry per turn: the direct entry carries the turn's changes,
	// and replay reads it as the invocation it is.
	es, err := w.store.Read(context.Background(), "acct/d", 1)
	if err != nil || len(es) != 5 {
		t.Fatalf("journal of acct/d: %d entries, %v; want one per send", len(es), err)
	}
	if err := w.rt.Deactivate(context.Background(), "acct", "d"); err != nil {
		t.Fatal(err)
	}
	if l := w.ledger("d"); l.Total != 5 || len(l.Tags) != 5 {
		t.Fatalf("after replay: %+v, want the 5 deposits", l)
	}
}

// TestDirectKeepsFIFOBehindAFailure: a message whose handler fails is
// enqueued; while it is pending, the messages sent after it to the same
// actor are not applied on acceptance (the journal refuses: an ordered
// message is pending) but queued behind it, and all are applied once, in
// send order.
func TestDirectKeepsFIFOBehindAFailure(t *testing.T) {
	w := newWorldWith(t, nil, true)
	first := w.send("f", deposit{Tag: "0", Amount: 1})
	failed := w.send("f", deposit{Tag: "1", Amount: 1, FailTimes: 2})
	if !first.Applied || failed.Applied || failed.Seq == 0 {
		t.Fatalf("first %+v, failing %+v: want the first applied and the failing one queued", first, failed)
	}
	var later []queue.Accepted
	for i := 2; i < 6; i++ {
		later = append(later, w.send("f", deposit{Tag: fmt.Sprint(i), Amount: 1}))
	}
	w.quiet("the queue to drain")
	if got, want := w.ledger("f").Tags, []string{"0", "1", "2", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	k := w.kinds("acct/f")
	for _, acc := range append([]queue.Accepted{first, failed}, later...) {
		if n := k[journal.KindMessageDirect][acc.ID] + k[journal.KindMessageAck][acc.ID]; n != 1 {
			t.Errorf("message %s (%+v) accepted or acknowledged %d times in the journal", acc.ID, acc, n)
		}
	}
}

// TestDirectFailureIsRetriedFromTheQueue: a message whose handler always
// fails is tried on acceptance, then delivered 1+maxRetries times from
// the queue and dead-lettered, as without direct application.
func TestDirectFailureIsRetriedFromTheQueue(t *testing.T) {
	failing.Store(true)
	defer failing.Store(false)
	w := newWorldWith(t, nil, true)
	acc := w.send("x", deposit{Tag: "bad", Amount: 1, Always: true})
	if acc.Applied {
		t.Fatalf("a failing message was reported applied: %+v", acc)
	}
	eventually(t, "the dead letter", func() bool {
		ds, err := w.store.ListDead(context.Background(), queue.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(ds) == 1 && ds[0].ID == acc.ID && ds[0].Attempts == 3
	})
	if l := w.ledger("x"); l.Total != 0 {
		t.Fatalf("total %d after a message that always fails", l.Total)
	}
}

// TestDirectIgnoresACallKey: a send made under a call's idempotency key
// applies each message under its own id: the key names no call, so a
// second message under the same key is applied too, and the journal
// records the message ids.
func TestDirectIgnoresACallKey(t *testing.T) {
	w := newWorldWith(t, nil, true)
	ctx := runtime.WithIdempotencyKey(context.Background(), "call-key")
	var ids []string
	for i := range 2 {
		acc, err := deposits.Send(ctx, w.rt, "k", deposit{Tag: fmt.Sprint(i), Amount: 1})
		if err != nil || !acc.Applied {
			t.Fatalf("send %d under a call key: %+v, %v", i, acc, err)
		}
		ids = append(ids, acc.ID)
	}
	if l := w.ledger("k"); l.Total != 2 {
		t.Fatalf("total %d, want 2", l.Total)
	}
	es, err := w.store.Read(context.Background(), "acct/k", 1)
	if err != nil || len(es) != 2 || es[0].IdempotencyKey != ids[0] || es[1].IdempotencyKey != ids[1] {
		t.Fatalf("journal %+v, %v; want the two messages' ids", es, err)
	}
}

// TestExternalDelivery: a message kept in a broker is delivered with
// runtime.WithExternalDelivery: its turn's append records the id (one
// KindMessageDirect entry, nothing queued); a redelivery of the id applies
// nothing and answers ErrMessageSettled, which tells the broker's consumer
// it may acknowledge; while an ordered message of the actor waits in the
// store's own queue the delivery is refused as unavailable (to be tried
// again), never as settled, and applies nothing.
func TestExternalDelivery(t *testing.T) {
	w := newWorld(t, nil)
	w.d.Close() // nothing delivers the store's own queue here
	ctx := context.Background()
	deliver := func(id, actor string, d deposit) error {
		b, _ := json.Marshal(d)
		_, err := w.rt.Invoke(runtime.WithExternalDelivery(ctx, id, 0, nil), "acct", actor, "deposit", b)
		return err
	}
	if err := deliver("ext-1", "e", deposit{Tag: "a", Amount: 3}); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if err := deliver("ext-1", "e", deposit{Tag: "a", Amount: 3}); !errors.Is(err, runtime.ErrMessageSettled) {
		t.Fatalf("redelivery: %v, want ErrMessageSettled", err)
	}
	if l := w.ledger("e"); l.Total != 3 || len(l.Tags) != 1 {
		t.Fatalf("ledger %+v, want the one deposit", l)
	}
	if k := w.kinds("acct/e"); k[journal.KindMessageDirect]["ext-1"] != 1 || len(k[journal.KindMessageAck]) != 0 {
		t.Fatalf("journal kinds %v, want one direct entry for ext-1", k)
	}
	// An Enqueue of the applied id is a duplicate: the store remembers it.
	acc, err := w.store.Enqueue(ctx, queue.Message{ID: "ext-1", Actor: "acct/e", Method: "deposit"})
	if err != nil || !acc.Duplicate {
		t.Fatalf("Enqueue of an applied id: %+v, %v; want a duplicate", acc, err)
	}

	if _, err := w.store.Enqueue(ctx, queue.Message{ID: "queued", Actor: "acct/e", Method: "deposit", Payload: []byte(`{"tag":"q","amount":1}`), Ordered: true}); err != nil {
		t.Fatal(err)
	}
	err = deliver("ext-2", "e", deposit{Tag: "b", Amount: 5})
	if !errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrMessageSettled) {
		t.Fatalf("delivery behind a queued ordered message: %v, want ErrUnavailable and not settled", err)
	}
	if l := w.ledger("e"); l.Total != 3 {
		t.Fatalf("ledger %+v after a refused delivery, want it unchanged", l)
	}
}

// TestSendPublishes: with Options.Publish (a broker), Send hands the
// checked message to it and answers its acceptance, enqueueing nothing in
// the journal's store; a message applied on acceptance never reaches the
// broker; what the broker delivers back through WithExternalDelivery is
// applied once.
func TestSendPublishes(t *testing.T) {
	var mu sync.Mutex
	var published []queue.Message
	publish := func(o *runtime.Options) {
		o.Publish = func(_ context.Context, m queue.Message) (queue.Accepted, error) {
			mu.Lock()
			defer mu.Unlock()
			published = append(published, m)
			return queue.Accepted{ID: m.ID, AcceptedAt: time.Now()}, nil
		}
	}
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			mu.Lock()
			published = nil
			mu.Unlock()
			w := newWorldWith(t, nil, direct, publish)
			acc := w.send("p", deposit{Tag: "a", Amount: 2}, runtime.WithHeaders(map[string]string{"h": "v"}))
			mu.Lock()
			got := slices.Clone(published)
			mu.Unlock()
			if direct {
				if !acc.Applied || len(got) != 0 {
					t.Fatalf("direct send: %+v, %d published; want applied, none published", acc, len(got))
				}
				return
			}
			if acc.Applied || len(got) != 1 || got[0].ID != acc.ID || got[0].Actor != "acct/p" || got[0].Method != "deposit" || got[0].Headers["h"] != "v" {
				t.Fatalf("send: %+v, published %+v; want the message handed to the broker", acc, got)
			}
			if st, err := w.store.Stats(context.Background()); err != nil || len(st) != 0 {
				t.Fatalf("the journal's queues after a published send: %+v, %v; want none", st, err)
			}
			ctx := runtime.WithExternalDelivery(context.Background(), got[0].ID, 0, got[0].Headers)
			for i := range 2 {
				_, err := w.rt.Invoke(ctx, "acct", "p", got[0].Method, got[0].Payload)
				if (i == 0 && err != nil) || (i == 1 && !errors.Is(err, runtime.ErrMessageSettled)) {
					t.Fatalf("delivery %d: %v", i+1, err)
				}
			}
			if l := w.ledger("p"); l.Total != 2 {
				t.Fatalf("ledger %+v, want the message applied once", l)
			}
		})
	}
}
