package queuesm_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/queue"
)

type wake struct {
	actor string
	at    int64
}

type world struct {
	t     *testing.T
	mem   *kv.Mem
	m     *queuesm.Machine
	woken []wake
}

func newWorld(t *testing.T, retention time.Duration) *world {
	w := &world{t: t, mem: kv.NewMem()}
	w.m = queuesm.New(queuesm.NewBuckets(w.mem.Bucket), queuesm.Config{Retention: retention,
		OnWake: func(actor string, at int64) { w.woken = append(w.woken, wake{actor, at}) }})
	return w
}

func ns(n int64) time.Time { return time.Unix(0, n).UTC() }

func msg(id, actor string, ordered bool) queue.Message {
	return queue.Message{ID: id, Actor: actor, Method: "M", Payload: []byte(id), Ordered: ordered}
}

func (w *world) enqueue(now int64, m queue.Message) (queue.Accepted, error) {
	w.t.Helper()
	acc, rule, err := w.m.Enqueue(now, m)
	if err != nil {
		w.t.Fatal(err)
	}
	return acc, rule
}

func (w *world) mustEnqueue(now int64, m queue.Message) queue.Accepted {
	w.t.Helper()
	acc, rule := w.enqueue(now, m)
	if rule != nil {
		w.t.Fatalf("Enqueue %s: %v", m.ID, rule)
	}
	return acc
}

// ack is the journal hook as a backend runs it: check, then apply.
func (w *world) ack(now int64, actor string, ids ...string) error {
	w.t.Helper()
	rule, err := w.m.CheckAcks(actor, ids)
	if err != nil {
		w.t.Fatal(err)
	}
	if rule != nil {
		return rule
	}
	if err := w.m.Ack(now, actor, ids); err != nil {
		w.t.Fatal(err)
	}
	return nil
}

func (w *world) failure(dead bool, now int64, f queue.Failure) error {
	w.t.Helper()
	var rule, err error
	if dead {
		rule, err = w.m.DeadLetter(now, f)
	} else {
		rule, err = w.m.Retry(now, f)
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return rule
}

func (w *world) release(now int64, actor string) int {
	w.t.Helper()
	n, rule, err := w.m.Release(now, actor)
	if rule != nil || err != nil {
		w.t.Fatalf("Release: %v, %v", rule, err)
	}
	return n
}

func (w *world) due(actor string, now int64) string {
	w.t.Helper()
	msgs, err := w.m.Due(actor, now, 100)
	if err != nil {
		w.t.Fatal(err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return strings.Join(ids, " ")
}

func (w *world) ready(until int64) string {
	w.t.Helper()
	rs, err := w.m.Ready(until, 100)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s@%d", r.Actor, r.At.UnixNano()))
	}
	return strings.Join(out, " ")
}

func fail(actor, id string, attempts uint32, retryAt int64) queue.Failure {
	return queue.Failure{Actor: actor, ID: id, Attempts: attempts, Reason: "boom", At: ns(retryAt - 1), RetryAt: ns(retryAt)}
}

// TestRules: each case sets up the buckets and returns the rule violation
// of its last command, which must wrap want (nil: accepted).
func TestRules(t *testing.T) {
	t.Parallel()
	outbox := func(w *world, id string, m queue.Message) error { return w.m.CheckOutbox(id, queue.MarshalMessage(m)) }
	cases := []struct {
		name string
		run  func(w *world) error
		want error
	}{
		{"enqueue", func(w *world) error { _, r := w.enqueue(10, msg("x", "a/1", false)); return r }, nil},
		{"enqueue without id", func(w *world) error { _, r := w.enqueue(10, msg("", "a/1", false)); return r }, queue.ErrInvalid},
		{"enqueue without method", func(w *world) error {
			m := msg("x", "a/1", false)
			m.Method = ""
			_, r := w.enqueue(10, m)
			return r
		}, queue.ErrInvalid},
		{"enqueue to a too long actor", func(w *world) error {
			_, r := w.enqueue(10, msg("x", strings.Repeat("a", queue.MaxActorLen+1), false))
			return r
		}, queue.ErrInvalid},
		{"ack a pending message", func(w *world) error { w.mustEnqueue(10, msg("x", "a/1", false)); return w.ack(11, "a/1", "x") }, nil},
		{"ack an unknown id", func(w *world) error { return w.ack(11, "a/1", "x") }, queue.ErrNotFound},
		{"ack in another actor", func(w *world) error { w.mustEnqueue(10, msg("x", "a/1", false)); return w.ack(11, "a/2", "x") }, queue.ErrNotFound},
		{"ack twice", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			if err := w.ack(11, "a/1", "x"); err != nil {
				return err
			}
			return w.ack(12, "a/1", "x")
		}, queue.ErrNotFound},
		{"ack twice in one append", func(w *world) error { w.mustEnqueue(10, msg("x", "a/1", false)); return w.ack(11, "a/1", "x", "x") }, queue.ErrNotFound},
		{"ack a scheduled message", func(w *world) error {
			m := msg("x", "a/1", false)
			m.DeliverAt = ns(50)
			w.mustEnqueue(10, m)
			return w.ack(11, "a/1", "x")
		}, queue.ErrNotFound},
		{"ack a dead letter", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			if r := w.failure(true, 11, fail("a/1", "x", 0, 12)); r != nil {
				return r
			}
			return w.ack(13, "a/1", "x")
		}, queue.ErrNotFound},
		{"ack an ordered message behind another", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", true))
			w.mustEnqueue(10, msg("y", "a/1", true))
			return w.ack(11, "a/1", "y")
		}, queue.ErrNotHead},
		{"ack two ordered messages in order", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", true))
			w.mustEnqueue(10, msg("y", "a/1", true))
			return w.ack(11, "a/1", "x", "y")
		}, nil},
		{"ack two ordered messages out of order", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", true))
			w.mustEnqueue(10, msg("y", "a/1", true))
			return w.ack(11, "a/1", "y", "x")
		}, queue.ErrNotHead},
		{"ack an unordered message behind an ordered one", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", true))
			w.mustEnqueue(10, msg("y", "a/1", false))
			return w.ack(11, "a/1", "y")
		}, nil},
		{"ack the head of another actor's ordered queue", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", true))
			w.mustEnqueue(10, msg("y", "a/10", true))
			return w.ack(11, "a/10", "y")
		}, nil},
		{"retry", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			return w.failure(false, 11, fail("a/1", "x", 0, 20))
		}, nil},
		{"retry unknown", func(w *world) error { return w.failure(false, 11, fail("a/1", "x", 0, 20)) }, queue.ErrNotFound},
		{"retry in another actor", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			return w.failure(false, 11, fail("a/2", "x", 0, 20))
		}, queue.ErrNotFound},
		{"retry stale", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			if r := w.failure(false, 11, fail("a/1", "x", 0, 20)); r != nil {
				return r
			}
			return w.failure(false, 12, fail("a/1", "x", 0, 20))
		}, queue.ErrStale},
		{"retry a scheduled message", func(w *world) error {
			m := msg("x", "a/1", false)
			m.DeliverAt = ns(50)
			w.mustEnqueue(10, m)
			return w.failure(false, 11, fail("a/1", "x", 0, 20))
		}, queue.ErrNotFound},
		{"retry without id", func(w *world) error { return w.failure(false, 11, fail("a/1", "", 0, 20)) }, queue.ErrInvalid},
		{"dead letter stale", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			return w.failure(true, 11, fail("a/1", "x", 3, 20))
		}, queue.ErrStale},
		{"dead letter twice", func(w *world) error {
			w.mustEnqueue(10, msg("x", "a/1", false))
			if r := w.failure(true, 11, fail("a/1", "x", 0, 20)); r != nil {
				return r
			}
			return w.failure(true, 12, fail("a/1", "x", 1, 20))
		}, queue.ErrNotFound},
		{"outbox", func(w *world) error { return outbox(w, "x", msg("x", "a/1", false)) }, nil},
		{"outbox of another id", func(w *world) error { return outbox(w, "y", msg("x", "a/1", false)) }, queue.ErrInvalid},
		{"outbox of an invalid message", func(w *world) error { return outbox(w, "x", msg("x", "", false)) }, queue.ErrInvalid},
		{"outbox of garbage", func(w *world) error { return w.m.CheckOutbox("x", []byte("garbage")) }, queue.ErrInvalid},
		{"release of no actor", func(w *world) error { _, r, _ := w.m.Release(10, ""); return r }, queue.ErrInvalid},
		{"reminder", func(w *world) error {
			r, _ := w.m.SetReminder(10, queue.Reminder{Actor: "a/1", Name: "n", Method: "M", DueAt: ns(20)})
			return r
		}, nil},
		{"reminder without method", func(w *world) error {
			r, _ := w.m.SetReminder(10, queue.Reminder{Actor: "a/1", Name: "n", DueAt: ns(20)})
			return r
		}, queue.ErrInvalid},
		{"delete a missing reminder", func(w *world) error { r, _ := w.m.DeleteReminder(10, "a/1", "n"); return r }, queue.ErrNotFound},
		{"replay with a negative limit", func(w *world) error { _, r, _ := w.m.Replay(10, queue.Filter{Limit: -1}); return r }, queue.ErrInvalid},
		{"purge with a negative limit", func(w *world) error { _, r, _ := w.m.Purge(10, queue.Filter{Limit: -1}); return r }, queue.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 0)
			rule := tc.run(w)
			if tc.want == nil && rule != nil || tc.want != nil && !errors.Is(rule, tc.want) {
				t.Fatalf("rule violation %v, want %v", rule, tc.want)
			}
		})
	}
}

// TestRuleViolationChangesNothing: a rejected command leaves the buckets
// byte for byte as they were, whichever rule rejected it.
func TestRuleViolationChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 100)
	w.mustEnqueue(10, msg("o1", "a/1", true))
	w.mustEnqueue(10, msg("o2", "a/1", true))
	w.mustEnqueue(10, msg("u", "a/1", false))
	w.mustEnqueue(10, msg("gone", "a/1", false))
	if err := w.ack(11, "a/1", "gone"); err != nil {
		t.Fatal(err)
	}
	later := msg("later", "a/1", false)
	later.DeliverAt = ns(500)
	w.mustEnqueue(10, later)
	w.mustEnqueue(10, msg("d", "b/1", false))
	if r := w.failure(true, 12, fail("b/1", "d", 0, 13)); r != nil {
		t.Fatal(r)
	}
	if r, err := w.m.SetReminder(12, queue.Reminder{Actor: "a/1", Name: "n", Method: "M", DueAt: ns(30)}); r != nil || err != nil {
		t.Fatal(r, err)
	}
	before := w.mem.Dump()
	// The clock is past the retention of "gone": a write that passed its
	// rules would prune it.
	const now = 500
	ackRule := func(ids ...string) error {
		r, err := w.m.CheckAcks("a/1", ids)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i, rule := range []error{
		ackRule("o2"),
		ackRule("o1", "o1"),
		ackRule("u", "o2", "o1"),
		ackRule("later"),
		ackRule("gone"),
		ackRule("d"),
		w.failure(false, now, fail("a/1", "u", 5, 600)),
		w.failure(true, now, fail("a/1", "later", 0, 600)),
		w.failure(false, now, fail("a/2", "u", 0, 600)),
		func() error { _, r := w.enqueue(now, msg("", "a/1", false)); return r }(),
		func() error { _, r, _ := w.m.Release(now, ""); return r }(),
		func() error { _, r, _ := w.m.Replay(now, queue.Filter{Limit: -1}); return r }(),
		func() error { _, r, _ := w.m.Purge(now, queue.Filter{Limit: -2}); return r }(),
		func() error {
			r, _ := w.m.SetReminder(now, queue.Reminder{Actor: "a/1", Name: "n", DueAt: ns(1)})
			return r
		}(),
		func() error { r, _ := w.m.DeleteReminder(now, "a/1", "nope"); return r }(),
	} {
		if rule == nil {
			t.Fatalf("violation %d was accepted", i)
		}
	}
	if after := w.mem.Dump(); after != before {
		t.Fatalf("rejected commands changed the buckets:\n%s\nwas\n%s", after, before)
	}
}

// TestDueOrder: unordered messages by (NextAt, Seq), a failing one does
// not hold back the others; only the ordered head, which blocks the ordered
// messages behind it until it is acknowledged or dead-lettered.
func TestDueOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	for _, id := range []string{"u1", "u2", "u3"} {
		w.mustEnqueue(10, msg(id, "a/1", false))
	}
	for _, id := range []string{"o1", "o2", "o3"} {
		w.mustEnqueue(11, msg(id, "a/1", true))
	}
	if got := w.due("a/1", 20); got != "u1 u2 u3 o1" {
		t.Fatalf("due: %q", got)
	}
	if r := w.failure(false, 12, fail("a/1", "u1", 0, 30)); r != nil {
		t.Fatal(r)
	}
	if r := w.failure(false, 12, fail("a/1", "o1", 0, 25)); r != nil {
		t.Fatal(r)
	}
	if got := w.due("a/1", 20); got != "u2 u3" {
		t.Fatalf("due while u1 and o1 back off: %q", got)
	}
	if got := w.due("a/1", 40); got != "u2 u3 o1 u1" {
		t.Fatalf("due after the backoffs: %q", got)
	}
	msgs, _ := w.m.Due("a/1", 40, 2)
	if len(msgs) != 2 || msgs[0].ID != "u2" {
		t.Fatalf("Due with max 2: %v", msgs)
	}
	if got := w.due("a/1", 5); got != "" {
		t.Fatalf("due before acceptance: %q", got)
	}
	if r := w.failure(true, 41, fail("a/1", "o1", 1, 41)); r != nil {
		t.Fatal(r)
	}
	if got := w.due("a/1", 40); got != "u2 u3 o2 u1" {
		t.Fatalf("due after o1 died: %q", got)
	}
	if err := w.ack(42, "a/1", "o2"); err != nil {
		t.Fatal(err)
	}
	if got := w.due("a/1", 40); got != "u2 u3 o3 u1" {
		t.Fatalf("due after o2's ack: %q", got)
	}
	msgs, _ = w.m.Due("a/1", 40, 100)
	if m := msgs[2]; m.Seq != 6 || m.AcceptedAt != ns(11) || m.NextAt != ns(11) || m.Attempts != 0 {
		t.Fatalf("o3 as stored: %+v", m)
	}
	if got := w.due("a/10", 100); got != "" {
		t.Fatalf("a/10 sees a/1's messages: %q", got)
	}
}

// TestQueuedAndHandoff: Queued lists an actor's queue by Seq, due or
// not, then its scheduled messages; Handoff takes messages out of it in
// any order, remembers their ids, and skips what is not there.
func TestQueuedAndHandoff(t *testing.T) {
	t.Parallel()
	w := newWorld(t, time.Hour)
	later := msg("s1", "a/1", false)
	later.DeliverAt = ns(1000)
	w.mustEnqueue(10, later)
	w.mustEnqueue(10, msg("o1", "a/1", true))
	w.mustEnqueue(10, msg("u1", "a/1", false))
	w.mustEnqueue(10, msg("o2", "a/1", true))
	w.mustEnqueue(10, msg("x1", "a/2", false))
	if r := w.failure(false, 11, fail("a/1", "u1", 0, 50)); r != nil {
		t.Fatal(r)
	}
	pending := func(actor string, max int) string {
		msgs, err := w.m.Queued(actor, max)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		return strings.Join(ids, " ")
	}
	if got := pending("a/1", 10); got != "o1 u1 o2 s1" {
		t.Fatalf("Queued, u1 backing off: %q", got)
	}
	if got := pending("a/1", 2); got != "o1 u1" {
		t.Fatalf("Queued with max 2: %q", got)
	}
	// o2 behind the head, u1 backing off, s1 scheduled, x1 of another
	// actor, and an id never seen: only the first three leave.
	n, rule, err := w.m.Handoff(12, "a/1", []string{"o2", "u1", "s1", "x1", "nope"})
	if n != 3 || rule != nil || err != nil {
		t.Fatalf("Handoff = %d, %v, %v; want 3", n, rule, err)
	}
	if st, err := w.m.Stats(); err != nil || len(st) != 1 || st[0].Pending != 2 || st[0].Scheduled != 0 {
		t.Fatalf("Stats after the handoff: %+v, %v; want 2 pending (o1, x1), none scheduled", st, err)
	}
	if w.release(2000, "a/1") != 0 {
		t.Fatal("the scheduled message handed off was released")
	}
	if got := pending("a/1", 10); got != "o1" {
		t.Fatalf("Queued after the handoff: %q", got)
	}
	if got := w.due("a/1", 100); got != "o1" {
		t.Fatalf("Due after the handoff: %q", got)
	}
	if n, rule, err := w.m.Handoff(13, "a/1", []string{"o1"}); n != 1 || rule != nil || err != nil {
		t.Fatalf("Handoff of the head = %d, %v, %v", n, rule, err)
	}
	if got := w.due("a/1", 100) + "|" + pending("a/2", 10); got != "|x1" {
		t.Fatalf("Due of a/1 | Queued of a/2: %q", got)
	}
	// The ids are remembered: enqueued again, they are duplicates.
	if acc := w.mustEnqueue(14, msg("o2", "a/1", true)); !acc.Duplicate {
		t.Fatalf("o2 enqueued after its handoff: %+v", acc)
	}
	if n, rule, err := w.m.Handoff(15, "a/1", []string{"o2"}); n != 0 || rule != nil || err != nil {
		t.Fatalf("a second Handoff = %d, %v, %v; want 0", n, rule, err)
	}
	if _, rule, _ := w.m.Handoff(15, "a/1", []string{""}); !errors.Is(rule, queue.ErrInvalid) {
		t.Fatalf("Handoff of an empty id: %v", rule)
	}
}

// TestReleaseAndDelay: a delayed message is scheduled until released,
// then joins the end of its queue with a new Seq; duplicates answer the
// first acceptance.
func TestReleaseAndDelay(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	d := msg("d", "a/1", true)
	d.DeliverAt = ns(50)
	acc := w.mustEnqueue(10, d)
	if acc.Seq != 1 || acc.AcceptedAt != ns(10) || acc.Duplicate {
		t.Fatalf("accepted %+v", acc)
	}
	e := msg("e", "a/1", true)
	e.DeliverAt = ns(40)
	w.mustEnqueue(10, e)
	w.mustEnqueue(20, msg("o", "a/1", true))
	if got := w.due("a/1", 100); got != "o" {
		t.Fatalf("due before release: %q", got)
	}
	if dup := w.mustEnqueue(30, msg("d", "b/1", false)); !dup.Duplicate || dup.Seq != 1 || dup.AcceptedAt != ns(10) {
		t.Fatalf("duplicate of a scheduled message: %+v", dup)
	}
	if n := w.release(45, "a/1"); n != 1 {
		t.Fatalf("released %d at 45", n)
	}
	if n := w.release(60, "a/1"); n != 1 {
		t.Fatalf("released %d at 60", n)
	}
	if err := w.ack(61, "a/1", "o", "e", "d"); err != nil {
		t.Fatalf("the released messages are not behind o in order e, d: %v", err)
	}
	if dup := w.mustEnqueue(62, msg("d", "a/1", false)); !dup.Duplicate || dup.Seq != 1 {
		t.Fatalf("duplicate of an acknowledged message: %+v", dup)
	}
}

// TestReminders: a reminder fires one message per Release however many
// periods were missed, moves to its first instant after now, a period of 0
// deletes it, and a fired id that is known is not enqueued again.
func TestReminders(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	set := func(name string, due, period int64) {
		if r, err := w.m.SetReminder(0, queue.Reminder{Actor: "a/1", Name: name, Method: "Tick", Payload: []byte(name),
			DueAt: ns(due), Period: time.Duration(period)}); r != nil || err != nil {
			t.Fatal(r, err)
		}
	}
	set("every10", 100, 10)
	set("once", 105, 0)
	set("later", 1000, 10)
	if n := w.release(99, "a/1"); n != 0 {
		t.Fatalf("fired %d before any was due", n)
	}
	if n := w.release(135, "a/1"); n != 2 {
		t.Fatalf("fired %d at 135, want 2", n)
	}
	msgs, _ := w.m.Due("a/1", 135, 10)
	if len(msgs) != 2 || msgs[0].ID != "reminder:a/1:every10:100" || msgs[1].ID != "reminder:a/1:once:105" ||
		msgs[0].Method != "Tick" || string(msgs[1].Payload) != "once" {
		t.Fatalf("fired %+v", msgs)
	}
	rs, _ := w.m.Reminders("a/1")
	if len(rs) != 2 || rs[0].Name != "every10" || rs[0].DueAt != ns(140) || rs[1].Name != "later" {
		t.Fatalf("reminders after firing: %+v", rs)
	}
	// The next firing's id is taken already: skipped, but the reminder moves on.
	w.mustEnqueue(136, msg("reminder:a/1:every10:140", "b/1", false))
	if n := w.release(140, "a/1"); n != 0 {
		t.Fatalf("fired %d for a known id", n)
	}
	if rs, _ := w.m.Reminders("a/1"); rs[0].DueAt != ns(150) {
		t.Fatalf("after a skipped firing: %+v", rs[0])
	}
	if r, _ := w.m.DeleteReminder(141, "a/1", "later"); r != nil {
		t.Fatal(r)
	}
	if rs, _ := w.m.Reminders("a/1"); len(rs) != 1 {
		t.Fatalf("after delete: %+v", rs)
	}
	// Replacing a reminder moves its timer.
	set("every10", 500, 0)
	if n := w.release(499, "a/1"); n != 0 {
		t.Fatalf("the replaced timer fired: %d", n)
	}
	if got := w.ready(1 << 40); got != "a/1@135 b/1@136" {
		t.Fatalf("ready: %q", got)
	}
}

// TestReadyAndWake: an actor's wake is the earliest of its due messages,
// scheduled messages and reminders; actors whose keys prefix each other
// keep apart; OnWake reports what a write gave.
func TestReadyAndWake(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	w.mustEnqueue(30, msg("x", "c/10", false))
	d := msg("y", "c/1", false)
	d.DeliverAt = ns(20)
	w.mustEnqueue(10, d)
	if r, err := w.m.SetReminder(11, queue.Reminder{Actor: "c", Name: "n", Method: "M", DueAt: ns(25)}); r != nil || err != nil {
		t.Fatal(r, err)
	}
	w.mustEnqueue(12, msg("z", "c/1\x00", true))
	if got := w.ready(100); got != "c/1\x00@12 c/1@20 c@25 c/10@30" {
		t.Fatalf("ready: %q", got)
	}
	if got := w.ready(20); got != "c/1\x00@12 c/1@20" {
		t.Fatalf("ready until 20: %q", got)
	}
	if rs, _ := w.m.Ready(100, 1); len(rs) != 1 || rs[0].Actor != "c/1\x00" {
		t.Fatalf("ready, max 1: %v", rs)
	}
	if got := w.due("c/1", 100); got != "" {
		t.Fatalf("c/1 has nothing due before release: %q", got)
	}
	if fmt.Sprint(w.woken) != "[{c/10 30} {c/1 20} {c 25} {c/1\x00 12}]" {
		t.Fatalf("woken: %v", w.woken)
	}
	if err := w.ack(40, "c/1\x00", "z"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.m.Wake("c/1\x00"); ok {
		t.Fatal("an actor with nothing left has a wake")
	}
	if got := w.ready(100); got != "c/1@20 c@25 c/10@30" {
		t.Fatalf("ready after the ack: %q", got)
	}
}

// TestRetention: an acknowledged id is a duplicate within the retention
// and accepted anew after it, pruned or not; a write prunes at most
// PruneBatch ids.
func TestRetention(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 100)
	n := queuesm.PruneBatch + 10
	for i := range n {
		id := fmt.Sprint("m", i)
		w.mustEnqueue(10, msg(id, "a/1", false))
		if err := w.ack(20, "a/1", id); err != nil {
			t.Fatal(err)
		}
	}
	if acc := w.mustEnqueue(119, msg("m0", "a/1", false)); !acc.Duplicate {
		t.Fatalf("within the retention: %+v", acc)
	}
	acc := w.mustEnqueue(120, msg("m1", "a/1", false)) // prunes PruneBatch
	if acc.Duplicate {
		t.Fatalf("after the retention: %+v", acc)
	}
	if got := strings.Count(w.mem.Dump(), "q.gone "); got != n-1-queuesm.PruneBatch {
		t.Fatalf("%d ids left to prune, want %d", got, n-1-queuesm.PruneBatch)
	}
	// m70 was not pruned, but has expired all the same.
	if acc := w.mustEnqueue(121, msg(fmt.Sprint("m", n-1), "a/1", false)); acc.Duplicate {
		t.Fatalf("an expired id not yet pruned is a duplicate: %+v", acc)
	}
}

// TestReleaseAndReplayPruneNothing: Release and Replay, whose now is the
// caller's, forget no ids even at a now past their retention; a write at
// the store's clock does.
func TestReleaseAndReplayPruneNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 100)
	w.mustEnqueue(10, msg("m0", "a/1", false))
	if err := w.ack(20, "a/1", "m0"); err != nil {
		t.Fatal(err)
	}
	w.release(1000, "a/1")
	if _, _, err := w.m.Replay(1000, queue.Filter{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(w.mem.Dump(), "q.gone "); got != 1 {
		t.Fatalf("%d gone ids after Release and Replay at a late now, want 1", got)
	}
	if acc := w.mustEnqueue(119, msg("m0", "a/1", false)); !acc.Duplicate {
		t.Fatalf("within the retention, after a late Release: %+v", acc)
	}
	w.mustEnqueue(120, msg("m1", "a/1", false))
	if got := strings.Count(w.mem.Dump(), "q.gone "); got != 0 {
		t.Fatalf("%d gone ids after an enqueue past the retention, want 0", got)
	}
}

// TestDeadLetters: each filter field of ListDead, Replay and Purge, and
// the dead letter's record.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	for i, a := range []string{"a/1", "a/2", "b/1", "ab/1", "a/1"} {
		id := fmt.Sprint("d", i)
		w.mustEnqueue(10, msg(id, a, i == 4))
		if r := w.failure(true, 50, queue.Failure{Actor: a, ID: id, Reason: "r", At: ns(int64(100 - i))}); r != nil {
			t.Fatal(r)
		}
	}
	list := func(f queue.Filter) string {
		ds, err := w.m.ListDead(f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		return strings.Join(ids, " ")
	}
	for _, tc := range []struct {
		f    queue.Filter
		want string
	}{
		{queue.Filter{}, "d4 d3 d2 d1 d0"},
		{queue.Filter{Type: "a"}, "d4 d1 d0"},
		{queue.Filter{Actor: "a/1"}, "d4 d0"},
		{queue.Filter{IDs: []string{"d0", "d3", "nope", "d0"}}, "d3 d0"},
		{queue.Filter{Before: ns(99)}, "d4 d3 d2"},
		{queue.Filter{Limit: 2}, "d4 d3"},
		{queue.Filter{Type: "a", Limit: 2, Before: ns(100)}, "d4 d1"},
		{queue.Filter{Type: "a", IDs: []string{"d2", "d1"}}, "d1"},
	} {
		if got := list(tc.f); got != tc.want {
			t.Errorf("ListDead(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	ds, _ := w.m.ListDead(queue.Filter{IDs: []string{"d0"}})
	if d := ds[0]; d.Attempts != 1 || d.LastError != "r" || d.DeadAt != ns(100) || d.Actor != "a/1" {
		t.Fatalf("dead letter %+v", d)
	}
	if n, r, err := w.m.Replay(200, queue.Filter{Actor: "a/1"}); n != 2 || r != nil || err != nil {
		t.Fatalf("Replay: %d, %v, %v", n, r, err)
	}
	msgs, _ := w.m.Due("a/1", 200, 10)
	if len(msgs) != 2 || msgs[0].ID != "d4" || msgs[0].Seq != 6 || msgs[0].Attempts != 0 || msgs[0].LastError != "" || msgs[0].NextAt != ns(200) {
		t.Fatalf("replayed: %+v", msgs)
	}
	if n, r, err := w.m.Purge(200, queue.Filter{Type: "b"}); n != 1 || r != nil || err != nil {
		t.Fatalf("Purge: %d, %v, %v", n, r, err)
	}
	if acc := w.mustEnqueue(201, msg("d2", "b/1", false)); !acc.Duplicate {
		t.Fatal("a purged id is forgotten at once")
	}
	if got := list(queue.Filter{}); got != "d3 d1" {
		t.Fatalf("left: %q", got)
	}
}

// TestStats: the counters per type and the oldest pending message.
func TestStats(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	w.mustEnqueue(10, msg("1", "a/1", false))
	w.mustEnqueue(5, msg("2", "a/2", true))
	d := msg("3", "a/1", false)
	d.DeliverAt = ns(100)
	w.mustEnqueue(12, d)
	w.mustEnqueue(13, msg("4", "b/1", false))
	w.mustEnqueue(14, msg("5", "noslash", false))
	if r := w.failure(true, 15, fail("b/1", "4", 0, 16)); r != nil {
		t.Fatal(r)
	}
	if r, _ := w.m.SetReminder(16, queue.Reminder{Actor: "b/2", Name: "n", Method: "M", DueAt: ns(20)}); r != nil {
		t.Fatal(r)
	}
	st, err := w.m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.Stats{{Type: "a", Pending: 2, Scheduled: 1, Oldest: ns(5)}, {Type: "b", Dead: 1, Reminders: 1},
		{Type: "noslash", Pending: 1, Oldest: ns(14)}}
	if !slices.Equal(st, want) {
		t.Fatalf("stats %+v\nwant %+v", st, want)
	}
	if err := w.ack(20, "a/2", "2"); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.m.Stats(); st[0].Oldest != ns(10) || st[0].Pending != 1 {
		t.Fatalf("after the ack: %+v", st[0])
	}
}
