package queuetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// Backend is what the suite tests: a queue.Store and the journal of the
// same actors, one value (one Close closes both).
type Backend interface {
	queue.Store
	journal.Journal
}

// Options configure the backend a subtest opens.
type Options struct {
	// Retention is how long acknowledged and purged ids must be
	// remembered; 0 means the backend's default.
	Retention time.Duration
}

// Run runs the conformance suite. open returns a new, empty backend
// configured by opts; Run calls it from the subtest's goroutine and closes
// what it returns.
func Run(t *testing.T, open func(t *testing.T, opts Options) Backend) {
	if open == nil {
		t.Fatal("queuetest: open is nil")
	}
	s := &suite{open: open}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Enqueue/Stamping", s.testStamping},
		{"Enqueue/Duplicate", s.testDuplicate},
		{"Enqueue/RetentionExpires", s.testRetention},
		{"Enqueue/Invalid", s.testInvalid},
		{"Due/Unordered", s.testDueUnordered},
		{"Due/Ordered", s.testDueOrdered},
		{"Retry", s.testRetry},
		{"DeadLetter", s.testDeadLetter},
		{"Ack/ThroughAppend", s.testAck},
		{"Ack/Ordered", s.testAckOrdered},
		{"Ack/FailedAppend", s.testAckFailedAppend},
		{"Outbox", s.testOutbox},
		{"Direct", s.testDirect},
		{"Delayed", s.testDelayed},
		{"Reminders", s.testReminders},
		{"Ready", s.testReady},
		{"DeadLetters/Filters", s.testDeadFilters},
		{"DeadLetters/ReplayAndPurge", s.testReplayPurge},
		{"Stats", s.testStats},
		{"Close", s.testClose},
		{"Concurrency", s.testConcurrency},
		{"Notifier", s.testNotifier},
	} {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	open func(t *testing.T, opts Options) Backend
}

func (s *suite) backend(t *testing.T, opts Options) Backend {
	t.Helper()
	b := s.open(t, opts)
	if b == nil {
		t.Fatal("queuetest: open returned nil")
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// --- helpers ---

// later is an instant every message accepted by the test is due at: the
// store stamps AcceptedAt with its own clock.
func later() time.Time { return time.Now().Add(time.Hour) }

// peer returns an actor of actor's type other than actor, in its shard
// if b is sharded (queue.Sharded): ids and Seq order are the shard's.
func peer(b Backend, actor string) string {
	typ, _, _ := strings.Cut(actor, "/")
	for i := 2; ; i++ {
		p := fmt.Sprintf("%s/%d", typ, i)
		if p == actor {
			continue
		}
		sh, ok := b.(queue.Sharded)
		if !ok || sh.Shard(p) == sh.Shard(actor) {
			return p
		}
	}
}

// shard is actor's shard in b (0 if b is not sharded).
func shard(b Backend, actor string) int {
	if sh, ok := b.(queue.Sharded); ok {
		return sh.Shard(actor)
	}
	return 0
}

func mk(id, actor string, ordered bool) queue.Message {
	return queue.Message{ID: id, Actor: actor, Method: "Do", Payload: []byte("p:" + id), Ordered: ordered}
}

func enqueue(t *testing.T, b Backend, m queue.Message) queue.Accepted {
	t.Helper()
	acc, err := b.Enqueue(t.Context(), m)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", m.ID, err)
	}
	return acc
}

func due(t *testing.T, b Backend, actor string, now time.Time) []queue.Message {
	t.Helper()
	msgs, err := b.Due(t.Context(), actor, now, 1000)
	if err != nil {
		t.Fatalf("Due(%q): %v", actor, err)
	}
	return msgs
}

func ids(msgs []queue.Message) string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return strings.Join(out, " ")
}

func wantDue(t *testing.T, b Backend, actor string, now time.Time, want string) {
	t.Helper()
	if got := ids(due(t, b, actor, now)); got != want {
		t.Fatalf("Due(%q) = [%s], want [%s]", actor, got, want)
	}
}

func find(t *testing.T, b Backend, actor, id string) queue.Message {
	t.Helper()
	for _, m := range due(t, b, actor, later().Add(1000*time.Hour)) {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("message %s is not due in %q", id, actor)
	return queue.Message{}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// ackEntries are KindMessageAck entries for ids.
func ackEntries(ids ...string) []journal.Entry {
	es := make([]journal.Entry, len(ids))
	for i, id := range ids {
		es[i] = journal.Entry{Kind: journal.KindMessageAck, IdempotencyKey: id}
	}
	return es
}

func tail(t *testing.T, b Backend, actor string) journal.Tail {
	t.Helper()
	tl, err := b.Tail(t.Context(), actor)
	if err != nil {
		t.Fatalf("Tail(%q): %v", actor, err)
	}
	return tl
}

// appendAt appends es to actor at its current tail with token 1.
func appendAt(t *testing.T, b Backend, actor string, es ...journal.Entry) error {
	t.Helper()
	_, err := b.Append(t.Context(), actor, 1, tail(t, b, actor).Seq, es)
	return err
}

func fail(actor, id string, attempts uint32, at, retryAt time.Time) queue.Failure {
	return queue.Failure{Actor: actor, ID: id, Attempts: attempts, Reason: "failed " + id, At: at, RetryAt: retryAt}
}

// --- subtests ---

func (s *suite) testStamping(t *testing.T) {
	b := s.backend(t, Options{})
	before := time.Now()
	m := mk("m1", "order/1", false)
	m.Headers = map[string]string{"b": "2", "a": "1"}
	m.CorrelationID, m.TraceParent = "corr", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m.Seq, m.Attempts, m.LastError, m.AcceptedAt, m.NextAt = 999, 7, "ignored", time.Unix(1, 0), time.Unix(2, 0)
	acc := enqueue(t, b, m)
	after := time.Now()
	if acc.ID != "m1" || acc.Duplicate || acc.Seq == 0 || acc.AcceptedAt.Before(before.Add(-time.Second)) || acc.AcceptedAt.After(after.Add(time.Second)) {
		t.Fatalf("Enqueue = %+v, want a new Seq and AcceptedAt the store's clock", acc)
	}
	got := find(t, b, "order/1", "m1")
	if got.Seq != acc.Seq || !got.AcceptedAt.Equal(acc.AcceptedAt) || got.Attempts != 0 || got.LastError != "" || !got.NextAt.Equal(acc.AcceptedAt) {
		t.Fatalf("stored %+v: the store did not stamp Seq %d, AcceptedAt %v, Attempts 0, NextAt = AcceptedAt", got, acc.Seq, acc.AcceptedAt)
	}
	if got.Method != "Do" || string(got.Payload) != "p:m1" || got.Headers["a"] != "1" || got.Headers["b"] != "2" || len(got.Headers) != 2 ||
		got.CorrelationID != m.CorrelationID || got.TraceParent != m.TraceParent || got.Ordered {
		t.Fatalf("stored %+v, sent %+v", got, m)
	}
	second := enqueue(t, b, mk("m2", peer(b, "order/1"), false))
	if second.Seq <= acc.Seq {
		t.Fatalf("Seq %d after %d: not increasing", second.Seq, acc.Seq)
	}
	// Not due before it was accepted.
	if msgs := due(t, b, "order/1", before.Add(-time.Minute)); len(msgs) != 0 {
		t.Fatalf("due before acceptance: %v", ids(msgs))
	}
}

func (s *suite) testDuplicate(t *testing.T) {
	b := s.backend(t, Options{})
	first := enqueue(t, b, mk("d", "a/1", false))
	other := mk("d", peer(b, "a/1"), true)
	other.Method = "Other"
	dup := enqueue(t, b, other)
	if !dup.Duplicate || dup.Seq != first.Seq || !dup.AcceptedAt.Equal(first.AcceptedAt) {
		t.Fatalf("second Enqueue = %+v, want the first acceptance %+v with Duplicate", dup, first)
	}
	wantDue(t, b, other.Actor, later(), "")
	if m := find(t, b, "a/1", "d"); m.Method != "Do" {
		t.Fatalf("the duplicate changed the message: %+v", m)
	}
	if err := appendAt(t, b, "a/1", ackEntries("d")...); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if dup := enqueue(t, b, mk("d", "a/1", false)); !dup.Duplicate || dup.Seq != first.Seq {
		t.Fatalf("Enqueue after the ack = %+v, want the first acceptance (within the retention)", dup)
	}
	wantDue(t, b, "a/1", later(), "")
	// Dead letters are remembered too.
	enqueue(t, b, mk("x", "a/1", false))
	if err := b.DeadLetter(t.Context(), fail("a/1", "x", 0, time.Now(), time.Time{})); err != nil {
		t.Fatal(err)
	}
	if dup := enqueue(t, b, mk("x", "a/1", false)); !dup.Duplicate {
		t.Fatalf("Enqueue of a dead letter's id = %+v, want Duplicate", dup)
	}
}

func (s *suite) testRetention(t *testing.T) {
	const retention = 300 * time.Millisecond
	b := s.backend(t, Options{Retention: retention})
	first := enqueue(t, b, mk("r", "a/1", false))
	// Measured from before the ack: the store stamps the ack somewhere
	// between this instant and the append's return (a replicated store,
	// before its commit's round trip), so less than the retention since
	// this instant is certainly within the retention of the ack.
	acked := time.Now()
	if err := appendAt(t, b, "a/1", ackEntries("r")...); err != nil {
		t.Fatal(err)
	}
	if dup := enqueue(t, b, mk("r", "a/1", false)); !dup.Duplicate && time.Since(acked) < retention {
		t.Fatalf("Enqueue right after the ack = %+v, want Duplicate", dup)
	}
	time.Sleep(retention)
	deadline := time.Now().Add(10 * time.Second)
	for {
		acc := enqueue(t, b, mk("r", "a/1", false))
		if !acc.Duplicate {
			if acc.Seq == first.Seq {
				t.Fatalf("accepted anew with the old Seq %d", acc.Seq)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("id still a duplicate %v after its ack, retention %v", time.Since(acked), retention)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantDue(t, b, "a/1", later(), "r")
}

func (s *suite) testInvalid(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	for name, edit := range map[string]func(*queue.Message){
		"empty id":        func(m *queue.Message) { m.ID = "" },
		"long id":         func(m *queue.Message) { m.ID = strings.Repeat("i", queue.MaxIDLen+1) },
		"empty actor":     func(m *queue.Message) { m.Actor = "" },
		"long actor":      func(m *queue.Message) { m.Actor = strings.Repeat("a", queue.MaxActorLen+1) },
		"empty method":    func(m *queue.Message) { m.Method = "" },
		"far DeliverAt":   func(m *queue.Message) { m.DeliverAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"early DeliverAt": func(m *queue.Message) { m.DeliverAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		m := mk("x", "a/1", false)
		edit(&m)
		_, err := b.Enqueue(ctx, m)
		wantErr(t, "Enqueue with "+name, err, queue.ErrInvalid)
	}
	longest := mk(strings.Repeat("i", queue.MaxIDLen), strings.Repeat("a", queue.MaxActorLen), false)
	if _, err := b.Enqueue(ctx, longest); err != nil {
		t.Fatalf("Enqueue at the limits: %v", err)
	}
	for name, r := range map[string]queue.Reminder{
		"no name":         {Actor: "a/1", Method: "m", DueAt: time.Now()},
		"long name":       {Actor: "a/1", Name: strings.Repeat("n", queue.MaxNameLen+1), Method: "m", DueAt: time.Now()},
		"no actor":        {Name: "n", Method: "m", DueAt: time.Now()},
		"no method":       {Actor: "a/1", Name: "n", DueAt: time.Now()},
		"negative period": {Actor: "a/1", Name: "n", Method: "m", DueAt: time.Now(), Period: -time.Second},
	} {
		wantErr(t, "SetReminder with "+name, b.SetReminder(ctx, r), queue.ErrInvalid)
	}
	if st, err := b.Stats(ctx); err != nil || len(st) != 1 || st[0].Pending != 1 {
		t.Fatalf("Stats after invalid calls: %+v, %v; want only the message at the limits", st, err)
	}
}

func (s *suite) testDueUnordered(t *testing.T) {
	b := s.backend(t, Options{})
	for _, id := range []string{"u1", "u2", "u3", "u4"} {
		enqueue(t, b, mk(id, "a/1", false))
	}
	wantDue(t, b, "a/1", later(), "u1 u2 u3 u4")
	if msgs, err := b.Due(t.Context(), "a/1", later(), 2); err != nil || ids(msgs) != "u1 u2" {
		t.Fatalf("Due with max 2 = [%s], %v", ids(msgs), err)
	}
	base := later()
	if err := b.Retry(t.Context(), fail("a/1", "u1", 0, base, base.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := b.Retry(t.Context(), fail("a/1", "u2", 0, base, base.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	// A failing unordered message holds back nothing.
	wantDue(t, b, "a/1", base, "u3 u4")
	wantDue(t, b, "a/1", base.Add(time.Minute), "u3 u4 u2")
	wantDue(t, b, "a/1", base.Add(2*time.Minute), "u3 u4 u2 u1")
	wantDue(t, b, "a/2", base.Add(time.Hour), "")
	// Due changes nothing.
	wantDue(t, b, "a/1", base.Add(2*time.Minute), "u3 u4 u2 u1")
}

func (s *suite) testDueOrdered(t *testing.T) {
	b := s.backend(t, Options{})
	enqueue(t, b, mk("o1", "a/1", true))
	enqueue(t, b, mk("u1", "a/1", false))
	enqueue(t, b, mk("o2", "a/1", true))
	enqueue(t, b, mk("o3", "a/1", true))
	wantDue(t, b, "a/1", later(), "o1 u1")
	base := later()
	// A message behind the head stays behind it, whatever its NextAt.
	if err := b.Retry(t.Context(), fail("a/1", "o3", 0, base, base.Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	wantDue(t, b, "a/1", base, "o1 u1")
	if err := b.Retry(t.Context(), fail("a/1", "o1", 0, base, base.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	// The head in backoff blocks the ordered messages behind it, not the others.
	wantDue(t, b, "a/1", base, "u1")
	wantDue(t, b, "a/1", base.Add(time.Minute), "u1 o1")
	if err := b.DeadLetter(t.Context(), fail("a/1", "o1", 1, base, time.Time{})); err != nil {
		t.Fatal(err)
	}
	wantDue(t, b, "a/1", base, "u1 o2")
	if err := appendAt(t, b, "a/1", ackEntries("o2")...); err != nil {
		t.Fatal(err)
	}
	if m := find(t, b, "a/1", "o3"); m.Attempts != 1 || !m.NextAt.Equal(base.Add(-2*time.Hour)) {
		t.Fatalf("o3 as the head: %+v", m)
	}
	wantDue(t, b, "a/1", base, "o3 u1")
}

func (s *suite) testRetry(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	enqueue(t, b, mk("m", "a/1", false))
	base := later()
	if err := b.Retry(ctx, fail("a/1", "m", 0, base, base.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	m := find(t, b, "a/1", "m")
	if m.Attempts != 1 || m.LastError != "failed m" || !m.NextAt.Equal(base.Add(time.Minute)) {
		t.Fatalf("after Retry: %+v", m)
	}
	wantErr(t, "Retry with a stale count", b.Retry(ctx, fail("a/1", "m", 0, base, base)), queue.ErrStale)
	wantErr(t, "Retry of an unknown id", b.Retry(ctx, fail("a/1", "nope", 0, base, base)), queue.ErrNotFound)
	wantErr(t, "Retry in another actor", b.Retry(ctx, fail("a/2", "m", 1, base, base)), queue.ErrNotFound)
	if m2 := find(t, b, "a/1", "m"); m2.Attempts != 1 || !m2.NextAt.Equal(m.NextAt) {
		t.Fatalf("a rejected Retry changed the message: %+v", m2)
	}
	if err := b.Retry(ctx, fail("a/1", "m", 1, base, base.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := appendAt(t, b, "a/1", ackEntries("m")...); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Retry of an acknowledged message", b.Retry(ctx, fail("a/1", "m", 2, base, base)), queue.ErrNotFound)
}

func (s *suite) testDeadLetter(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	enqueue(t, b, mk("m", "a/1", false))
	at := time.Now().Add(time.Minute)
	wantErr(t, "DeadLetter with a stale count", b.DeadLetter(ctx, fail("a/1", "m", 3, at, time.Time{})), queue.ErrStale)
	wantErr(t, "DeadLetter of an unknown id", b.DeadLetter(ctx, fail("a/1", "nope", 0, at, time.Time{})), queue.ErrNotFound)
	if err := b.DeadLetter(ctx, fail("a/1", "m", 0, at, time.Time{})); err != nil {
		t.Fatal(err)
	}
	wantDue(t, b, "a/1", later(), "")
	ds, err := b.ListDead(ctx, queue.Filter{})
	if err != nil || len(ds) != 1 {
		t.Fatalf("ListDead = %v, %v", ds, err)
	}
	if d := ds[0]; d.ID != "m" || d.Attempts != 1 || d.LastError != "failed m" || !d.DeadAt.Equal(at) || string(d.Payload) != "p:m" {
		t.Fatalf("dead letter %+v", d)
	}
	wantErr(t, "DeadLetter of a dead letter", b.DeadLetter(ctx, fail("a/1", "m", 1, at, time.Time{})), queue.ErrNotFound)
}

func (s *suite) testAck(t *testing.T) {
	b := s.backend(t, Options{})
	enqueue(t, b, mk("m", "a/1", false))
	enqueue(t, b, mk("n", "a/1", false))
	es := append([]journal.Entry{{Kind: journal.KindInvocation, Method: "Do"}}, ackEntries("m")...)
	if err := appendAt(t, b, "a/1", es...); err != nil {
		t.Fatalf("append with an ack: %v", err)
	}
	wantDue(t, b, "a/1", later(), "n")
	before := tail(t, b, "a/1")
	for what, es := range map[string][]journal.Entry{
		"a second ack":              ackEntries("m"),
		"an unknown id":             ackEntries("zz"),
		"one id twice":              ackEntries("n", "n"),
		"an ack among other writes": append(ackEntries("n"), ackEntries("m")...),
	} {
		wantErr(t, "append of "+what, appendAt(t, b, "a/1", es...), journal.ErrAck)
		if got := tail(t, b, "a/1"); got != before {
			t.Fatalf("a failed append of %s moved the tail from %+v to %+v", what, before, got)
		}
	}
	wantDue(t, b, "a/1", later(), "n")
	// Another actor's message is not pending in a/2's queue.
	wantErr(t, "ack in another actor", appendAt(t, b, "a/2", ackEntries("n")...), journal.ErrAck)
	if got := tail(t, b, "a/2"); got.Seq != 0 {
		t.Fatalf("a failed append wrote to a/2: %+v", got)
	}
	// Scheduled and dead messages are not pending.
	d := mk("later", "a/1", false)
	d.DeliverAt = time.Now().Add(time.Hour)
	enqueue(t, b, d)
	wantErr(t, "ack of a scheduled message", appendAt(t, b, "a/1", ackEntries("later")...), journal.ErrAck)
	if err := b.DeadLetter(t.Context(), fail("a/1", "n", 0, time.Now(), time.Time{})); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "ack of a dead letter", appendAt(t, b, "a/1", ackEntries("n")...), journal.ErrAck)
	es, err := b.Read(t.Context(), "a/1", 1)
	if err != nil || len(es) != 2 || es[1].Kind != journal.KindMessageAck || es[1].IdempotencyKey != "m" {
		t.Fatalf("journal after the acks: %+v, %v", es, err)
	}
}

// directEntry is a KindMessageDirect entry: the turn that applied message
// id, with the turn's changes as its payload.
func directEntry(id string) journal.Entry {
	return journal.Entry{Kind: journal.KindMessageDirect, Method: "Do", IdempotencyKey: id, Payload: []byte("changes of " + id)}
}

// testDirect: a message applied on acceptance by an append (the turn's
// KindMessageDirect entry) leaves no trace in the queues but its id, which
// a later Enqueue answers as a duplicate; it is refused (ErrAck) when the
// id is known or when an ordered message of the actor is pending, and
// refused as invalid without an id or with two in one append. The entry
// reads back as written. A refused append writes nothing.
func (s *suite) testDirect(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	if err := appendAt(t, b, "a/1", directEntry("d1")); err != nil {
		t.Fatalf("append with a direct message: %v", err)
	}
	wantDue(t, b, "a/1", later(), "")
	if st, err := b.Stats(ctx); err != nil || len(st) != 0 {
		t.Fatalf("Stats after a direct message = %+v, %v; want nothing pending", st, err)
	}
	if dup := enqueue(t, b, mk("d1", "a/1", true)); !dup.Duplicate || dup.Seq != 0 {
		t.Fatalf("Enqueue of a direct message's id = %+v, want a duplicate with Seq 0", dup)
	}
	before := tail(t, b, "a/1")
	wantErr(t, "a direct message with a known id", appendAt(t, b, "a/1", directEntry("d1")), journal.ErrAck)
	wantErr(t, "a known id is queue.ErrKnownID", appendAt(t, b, "a/1", directEntry("d1")), queue.ErrKnownID)
	first := enqueue(t, b, mk("q1", "a/1", true))
	wantErr(t, "a direct message behind a pending ordered one", appendAt(t, b, "a/1", directEntry("d2")), queue.ErrNotHead)
	enqueue(t, b, mk("u0", "a/2", false))
	if err := appendAt(t, b, "a/2", directEntry("u1")); err != nil {
		t.Fatalf("a direct message past a pending unordered one: %v", err)
	}
	if got := tail(t, b, "a/1"); got != before {
		t.Fatalf("tail %+v after refused direct appends from %+v: they wrote", got, before)
	}
	noID := directEntry("")
	wantErr(t, "a direct entry without an id", appendAt(t, b, "a/1", noID), journal.ErrInvalid)
	wantErr(t, "two direct entries in one append", appendAt(t, b, "a/3", directEntry("x1"), directEntry("x2")), journal.ErrInvalid)
	if got := tail(t, b, "a/1"); got != before {
		t.Fatalf("invalid direct appends moved the tail from %+v to %+v", before, got)
	}
	if got := tail(t, b, "a/3"); got.Seq != 0 {
		t.Fatalf("an invalid direct append wrote: tail %+v", got)
	}
	// Once the ordered message is acknowledged, a direct one goes
	// through again; the queue was left as it was.
	wantDue(t, b, "a/1", later(), "q1")
	if err := appendAt(t, b, "a/1", ackEntries(first.ID)...); err != nil {
		t.Fatal(err)
	}
	if err := appendAt(t, b, "a/1", directEntry("d2")); err != nil {
		t.Fatalf("a direct message with nothing pending: %v", err)
	}
	for _, m := range []queue.Message{mk("u1", "a/2", false), mk("d2", "a/1", true)} {
		if dup := enqueue(t, b, m); !dup.Duplicate {
			t.Fatalf("Enqueue of %s = %+v, want a duplicate", m.ID, dup)
		}
	}
	es, err := b.Read(ctx, "a/1", 1)
	if err != nil || len(es) != 3 {
		t.Fatalf("journal after the direct appends: %+v, %v", es, err)
	}
	if e := es[0]; e.Kind != journal.KindMessageDirect || e.IdempotencyKey != "d1" || e.Method != "Do" || string(e.Payload) != "changes of d1" {
		t.Fatalf("direct entry read back as %+v", e)
	}
	if es[1].Kind != journal.KindMessageAck || es[2].IdempotencyKey != "d2" {
		t.Fatalf("journal after the direct appends: %+v", es)
	}
}

func (s *suite) testAckOrdered(t *testing.T) {
	b := s.backend(t, Options{})
	for _, id := range []string{"o1", "o2", "o3"} {
		enqueue(t, b, mk(id, "a/1", true))
	}
	enqueue(t, b, mk("u", "a/1", false))
	wantErr(t, "ack of an ordered message behind the head", appendAt(t, b, "a/1", ackEntries("o2")...), journal.ErrAck)
	wantErr(t, "acks out of order", appendAt(t, b, "a/1", ackEntries("o2", "o1")...), journal.ErrAck)
	if err := appendAt(t, b, "a/1", ackEntries("u")...); err != nil {
		t.Fatalf("an unordered message is acknowledged past the ordered head: %v", err)
	}
	if err := appendAt(t, b, "a/1", ackEntries("o1", "o2")...); err != nil {
		t.Fatalf("two ordered acks in order in one append: %v", err)
	}
	wantDue(t, b, "a/1", later(), "o3")
}

func (s *suite) testAckFailedAppend(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	enqueue(t, b, mk("m", "a/1", false))
	if _, err := b.Append(ctx, "a/1", 5, 0, []journal.Entry{{Kind: journal.KindInvocation}}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Append(ctx, "a/1", 4, 1, ackEntries("m"))
	wantErr(t, "fenced append with an ack", err, journal.ErrFenced)
	_, err = b.Append(ctx, "a/1", 5, 0, ackEntries("m"))
	wantErr(t, "conflicting append with an ack", err, journal.ErrConflict)
	// The journal's rules come first: a fenced append of a bad ack is fenced.
	_, err = b.Append(ctx, "a/1", 4, 1, ackEntries("nope"))
	wantErr(t, "fenced append with a bad ack", err, journal.ErrFenced)
	wantDue(t, b, "a/1", later(), "m")
	if _, err := b.Append(ctx, "a/1", 5, 1, ackEntries("m")); err != nil {
		t.Fatalf("the message was acknowledged by a failed append: %v", err)
	}
}

func (s *suite) testOutbox(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	send := func(m queue.Message) journal.Entry {
		return journal.Entry{Kind: journal.KindMessageSend, IdempotencyKey: m.ID, Payload: queue.MarshalMessage(m)}
	}
	enqueue(t, b, mk("in", "a/1", false))
	out := mk("out", "b/1", true)
	out.Seq, out.Attempts = 77, 3 // stamped by the store, ignored
	if err := appendAt(t, b, "a/1", append(ackEntries("in"), send(out), send(mk("out2", "b/1", false)))...); err != nil {
		t.Fatalf("append with sends: %v", err)
	}
	wantDue(t, b, "b/1", later(), "out out2")
	if m := find(t, b, "b/1", "out"); m.Attempts != 0 || m.Seq == 77 || !m.Ordered || string(m.Payload) != "p:out" {
		t.Fatalf("sent message stored as %+v", m)
	}
	// A duplicate send is skipped, the append succeeds.
	dup := mk("out", "c/1", false)
	if err := appendAt(t, b, "a/1", send(dup)); err != nil {
		t.Fatalf("append with a duplicate send: %v", err)
	}
	wantDue(t, b, "c/1", later(), "")
	// A failed append sends nothing.
	_, err := b.Append(ctx, "a/1", 1, 0, []journal.Entry{send(mk("lost", "c/1", false))})
	wantErr(t, "conflicting append with a send", err, journal.ErrConflict)
	wantErr(t, "append with a send and a bad ack", appendAt(t, b, "a/1", send(mk("lost", "c/1", false)), ackEntries("nope")[0]), journal.ErrAck)
	before := tail(t, b, "a/1")
	for what, e := range map[string]journal.Entry{
		"a payload that does not decode": {Kind: journal.KindMessageSend, IdempotencyKey: "lost", Payload: []byte("junk")},
		"an invalid message":             send(mk("lost", "", false)),
		"another id than its key":        {Kind: journal.KindMessageSend, IdempotencyKey: "other", Payload: queue.MarshalMessage(mk("lost", "c/1", false))},
	} {
		wantErr(t, "append of "+what, appendAt(t, b, "a/1", e), journal.ErrInvalid)
	}
	if got := tail(t, b, "a/1"); got != before {
		t.Fatalf("failed appends moved the tail from %+v to %+v", before, got)
	}
	wantDue(t, b, "c/1", later(), "")
	if acc := enqueue(t, b, mk("lost", "c/1", false)); acc.Duplicate {
		t.Fatal("a send of a failed append was stored")
	}
}

func (s *suite) testDelayed(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	at := time.Now().Add(time.Hour)
	enqueue(t, b, mk("o1", "a/1", true))
	d := mk("d", "a/1", true)
	d.DeliverAt = at
	accD := enqueue(t, b, d)
	enqueue(t, b, mk("o2", "a/1", true))
	if m := due(t, b, "a/1", at.Add(time.Hour)); ids(m) != "o1" {
		t.Fatalf("Due with a scheduled message = [%s], want [o1]", ids(m))
	}
	if st, _ := b.Stats(ctx); len(st) != 1 || st[0].Scheduled != 1 || st[0].Pending != 2 {
		t.Fatalf("Stats: %+v, want 1 scheduled and 2 pending", st)
	}
	if n, err := b.Release(ctx, "a/1", at.Add(-time.Nanosecond)); n != 0 || err != nil {
		t.Fatalf("Release before DeliverAt = %d, %v", n, err)
	}
	if n, err := b.Release(ctx, "a/1", at); n != 1 || err != nil {
		t.Fatalf("Release at DeliverAt = %d, %v", n, err)
	}
	if n, err := b.Release(ctx, "a/1", at.Add(time.Hour)); n != 0 || err != nil {
		t.Fatalf("second Release = %d, %v", n, err)
	}
	// The delayed message joined the end of the ordered queue.
	if err := appendAt(t, b, "a/1", ackEntries("o1", "o2")...); err != nil {
		t.Fatalf("acks of o1, o2 before the released message: %v", err)
	}
	m := find(t, b, "a/1", "d")
	if m.Seq <= accD.Seq || !m.NextAt.Equal(at) || !m.AcceptedAt.Equal(accD.AcceptedAt) {
		t.Fatalf("released %+v: want a Seq above %d and NextAt %v", m, accD.Seq, at)
	}
	if dup := enqueue(t, b, d); !dup.Duplicate || dup.Seq != accD.Seq {
		t.Fatalf("duplicate of a released message = %+v, want the first acceptance", dup)
	}
	// A DeliverAt in the past is not a delay.
	p := mk("past", "a/2", false)
	p.DeliverAt = time.Now().Add(-time.Hour)
	acc := enqueue(t, b, p)
	if m := find(t, b, "a/2", "past"); !m.NextAt.Equal(acc.AcceptedAt) {
		t.Fatalf("NextAt %v, want AcceptedAt %v", m.NextAt, acc.AcceptedAt)
	}
}

func (s *suite) testReminders(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	t0 := time.Now().Add(time.Hour).Truncate(time.Second)
	set := func(name string, due time.Time, period time.Duration) {
		t.Helper()
		if err := b.SetReminder(ctx, queue.Reminder{Actor: "a/1", Name: name, Method: "Tick", Payload: []byte(name), Ordered: true, DueAt: due, Period: period}); err != nil {
			t.Fatalf("SetReminder(%s): %v", name, err)
		}
	}
	set("tick", t0, 10*time.Second)
	set("once", t0.Add(time.Second), 0)
	set("gone", t0, time.Second)
	if err := b.DeleteReminder(ctx, "a/1", "gone"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteReminder of a missing one", b.DeleteReminder(ctx, "a/1", "gone"), queue.ErrNotFound)
	rs, err := b.Reminders(ctx, "a/1")
	if err != nil || len(rs) != 2 || rs[0].Name != "once" || rs[1].Name != "tick" || !rs[1].DueAt.Equal(t0) || rs[1].Period != 10*time.Second {
		t.Fatalf("Reminders = %+v, %v", rs, err)
	}
	if n, err := b.Release(ctx, "a/1", t0.Add(-time.Nanosecond)); n != 0 || err != nil {
		t.Fatalf("Release before due = %d, %v", n, err)
	}
	// 35 s late: tick missed 4 firings, fires once and moves to t0+40s.
	if n, err := b.Release(ctx, "a/1", t0.Add(35*time.Second)); n != 2 || err != nil {
		t.Fatalf("Release = %d, %v; want 2", n, err)
	}
	tickID := fmt.Sprintf("reminder:a/1:tick:%d", t0.UnixNano())
	onceID := fmt.Sprintf("reminder:a/1:once:%d", t0.Add(time.Second).UnixNano())
	msgs := due(t, b, "a/1", t0.Add(time.Hour))
	if ids(msgs) != tickID || msgs[0].Method != "Tick" || string(msgs[0].Payload) != "tick" || !msgs[0].Ordered {
		t.Fatalf("Due after firing = %+v, want the ordered head %s", msgs, tickID)
	}
	if err := appendAt(t, b, "a/1", ackEntries(tickID, onceID)...); err != nil {
		t.Fatalf("acks of the fired messages in order: %v", err)
	}
	rs, _ = b.Reminders(ctx, "a/1")
	if len(rs) != 1 || rs[0].Name != "tick" || !rs[0].DueAt.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("Reminders after firing = %+v: want once deleted, tick due at t0+40s", rs)
	}
	// A fired id the store knows is skipped; the reminder moves on.
	enqueue(t, b, mk(fmt.Sprintf("reminder:a/1:tick:%d", t0.Add(40*time.Second).UnixNano()), peer(b, "a/1"), false))
	if n, err := b.Release(ctx, "a/1", t0.Add(45*time.Second)); n != 0 || err != nil {
		t.Fatalf("Release of a known id = %d, %v; want 0", n, err)
	}
	if rs, _ = b.Reminders(ctx, "a/1"); !rs[0].DueAt.Equal(t0.Add(50 * time.Second)) {
		t.Fatalf("after a skipped firing: %+v", rs[0])
	}
	// Replacing a reminder replaces its schedule.
	set("tick", t0.Add(time.Hour), 0)
	if n, _ := b.Release(ctx, "a/1", t0.Add(55*time.Second)); n != 0 {
		t.Fatalf("the replaced schedule fired %d", n)
	}
	if rs, _ = b.Reminders(ctx, "a/2"); len(rs) != 0 {
		t.Fatalf("another actor's reminders: %+v", rs)
	}
}

func (s *suite) testReady(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	base := time.Now().Add(time.Hour)
	enqueue(t, b, mk("now", "a/10", false))
	d := mk("d", "a/1", false)
	d.DeliverAt = base.Add(2 * time.Minute)
	enqueue(t, b, d)
	if err := b.SetReminder(ctx, queue.Reminder{Actor: "a/2", Name: "r", Method: "m", DueAt: base.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, mk("head", "a/3", true))
	enqueue(t, b, mk("behind", "a/3", true))
	if err := b.Retry(ctx, fail("a/3", "head", 0, base, base.Add(3*time.Minute))); err != nil {
		t.Fatal(err)
	}
	rs, err := b.Ready(ctx, base.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Actor)
	}
	if strings.Join(got, " ") != "a/10 a/2 a/1 a/3" || !rs[1].At.Equal(base.Add(time.Minute)) || !rs[2].At.Equal(d.DeliverAt) || !rs[3].At.Equal(base.Add(3*time.Minute)) {
		t.Fatalf("Ready = %+v", rs)
	}
	if rs, _ := b.Ready(ctx, base.Add(time.Minute), 100); len(rs) != 2 {
		t.Fatalf("Ready until base+1m = %+v, want a/10 and a/2", rs)
	}
	if rs, _ := b.Ready(ctx, base.Add(time.Hour), 1); len(rs) != 1 || rs[0].Actor != "a/10" {
		t.Fatalf("Ready with max 1 = %+v", rs)
	}
	if err := appendAt(t, b, "a/10", ackEntries("now")...); err != nil {
		t.Fatal(err)
	}
	if rs, _ := b.Ready(ctx, base.Add(time.Hour), 100); len(rs) != 3 || rs[0].Actor != "a/2" {
		t.Fatalf("Ready after a/10's ack = %+v", rs)
	}
}

// deadSet makes dead letters d0..d4 of a/1, a/2, b/1, ab/1, a/1, dead at
// base-0s, -1s, ... -4s (d4 the oldest).
func deadSet(t *testing.T, b Backend, base time.Time) {
	t.Helper()
	for i, a := range []string{"a/1", "a/2", "b/1", "ab/1", "a/1"} {
		id := fmt.Sprint("d", i)
		enqueue(t, b, mk(id, a, i == 4))
		if err := b.DeadLetter(t.Context(), fail(a, id, 0, base.Add(-time.Duration(i)*time.Second), time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *suite) testDeadFilters(t *testing.T) {
	b := s.backend(t, Options{})
	base := time.Now()
	deadSet(t, b, base)
	for _, tc := range []struct {
		f    queue.Filter
		want string
	}{
		{queue.Filter{}, "d4 d3 d2 d1 d0"},
		{queue.Filter{Type: "a"}, "d4 d1 d0"},
		{queue.Filter{Actor: "a/1"}, "d4 d0"},
		{queue.Filter{IDs: []string{"d0", "d3", "unknown"}}, "d3 d0"},
		{queue.Filter{Before: base.Add(-time.Second)}, "d4 d3 d2"},
		{queue.Filter{Limit: 2}, "d4 d3"},
		{queue.Filter{Type: "a", Before: base, Limit: 2}, "d4 d1"},
	} {
		ds, err := b.ListDead(t.Context(), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("ListDead(%+v) = %v, want [%s]", tc.f, got, tc.want)
		}
	}
}

func (s *suite) testReplayPurge(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	base := time.Now()
	deadSet(t, b, base)
	enqueue(t, b, mk("o", "a/1", true))
	at := base.Add(time.Hour)
	if n, err := b.Replay(ctx, queue.Filter{Actor: "a/1"}, at); n != 2 || err != nil {
		t.Fatalf("Replay of a/1 = %d, %v", n, err)
	}
	msgs := due(t, b, "a/1", at)
	if ids(msgs) != "o d0" {
		t.Fatalf("Due after the replay = [%s], want [o d0] (replayed d4 joins the end of the ordered queue)", ids(msgs))
	}
	if m := msgs[1]; m.Attempts != 0 || m.LastError != "" || !m.NextAt.Equal(at) {
		t.Fatalf("replayed %+v: want Attempts 0, no LastError, NextAt %v", m, at)
	}
	if err := appendAt(t, b, "a/1", ackEntries("o", "d4")...); err != nil {
		t.Fatalf("acks of o then the replayed d4: %v", err)
	}
	if n, err := b.Replay(ctx, queue.Filter{IDs: []string{"d3"}, Limit: 5}, at); n != 1 || err != nil {
		t.Fatalf("Replay by id = %d, %v", n, err)
	}
	wantDue(t, b, "ab/1", at, "d3")
	if n, err := b.Purge(ctx, queue.Filter{Type: "b"}); n != 1 || err != nil {
		t.Fatalf("Purge of type b = %d, %v", n, err)
	}
	if dup := enqueue(t, b, mk("d2", "b/1", false)); !dup.Duplicate {
		t.Fatal("a purged id was forgotten at once")
	}
	if n, err := b.Purge(ctx, queue.Filter{Before: base.Add(-2 * time.Second)}); n != 0 || err != nil {
		t.Fatalf("Purge of nothing = %d, %v", n, err)
	}
	if n, err := b.Purge(ctx, queue.Filter{}); n != 1 || err != nil {
		t.Fatalf("Purge of the rest = %d, %v", n, err)
	}
	if ds, _ := b.ListDead(ctx, queue.Filter{}); len(ds) != 0 {
		t.Fatalf("dead letters left: %+v", ds)
	}
}

func (s *suite) testStats(t *testing.T) {
	b := s.backend(t, Options{})
	ctx := t.Context()
	if st, err := b.Stats(ctx); err != nil || len(st) != 0 {
		t.Fatalf("Stats of an empty store = %+v, %v", st, err)
	}
	first := enqueue(t, b, mk("1", "b/1", false))
	enqueue(t, b, mk("2", "b/2", true))
	d := mk("3", "b/1", false)
	d.DeliverAt = time.Now().Add(time.Hour)
	enqueue(t, b, d)
	enqueue(t, b, mk("4", "a/1", false))
	if err := b.DeadLetter(ctx, fail("a/1", "4", 0, time.Now(), time.Time{})); err != nil {
		t.Fatal(err)
	}
	if err := b.SetReminder(ctx, queue.Reminder{Actor: "a/1", Name: "r", Method: "m", DueAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0] != (queue.Stats{Type: "a", Dead: 1, Reminders: 1}) ||
		st[1].Type != "b" || st[1].Pending != 2 || st[1].Scheduled != 1 || !st[1].Oldest.Equal(first.AcceptedAt) {
		t.Fatalf("Stats = %+v", st)
	}
	if err := appendAt(t, b, "b/1", ackEntries("1")...); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Stats(ctx); st[1].Pending != 1 || st[1].Oldest.Before(first.AcceptedAt) {
		t.Fatalf("Stats after the ack = %+v", st)
	}
}

func (s *suite) testClose(t *testing.T) {
	b := s.open(t, Options{})
	if b == nil {
		t.Fatal("queuetest: open returned nil")
	}
	enqueue(t, b, mk("m", "a/1", false))
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	now := time.Now()
	_, err := b.Enqueue(ctx, mk("n", "a/1", false))
	wantErr(t, "Enqueue after Close", err, queue.ErrClosed)
	_, err = b.Due(ctx, "a/1", now, 10)
	wantErr(t, "Due after Close", err, queue.ErrClosed)
	_, err = b.Release(ctx, "a/1", now)
	wantErr(t, "Release after Close", err, queue.ErrClosed)
	_, err = b.Ready(ctx, now, 10)
	wantErr(t, "Ready after Close", err, queue.ErrClosed)
	wantErr(t, "Retry after Close", b.Retry(ctx, fail("a/1", "m", 0, now, now)), queue.ErrClosed)
	wantErr(t, "DeadLetter after Close", b.DeadLetter(ctx, fail("a/1", "m", 0, now, now)), queue.ErrClosed)
	_, err = b.ListDead(ctx, queue.Filter{})
	wantErr(t, "ListDead after Close", err, queue.ErrClosed)
	_, err = b.Replay(ctx, queue.Filter{}, now)
	wantErr(t, "Replay after Close", err, queue.ErrClosed)
	_, err = b.Purge(ctx, queue.Filter{})
	wantErr(t, "Purge after Close", err, queue.ErrClosed)
	wantErr(t, "SetReminder after Close", b.SetReminder(ctx, queue.Reminder{Actor: "a/1", Name: "n", Method: "m", DueAt: now}), queue.ErrClosed)
	wantErr(t, "DeleteReminder after Close", b.DeleteReminder(ctx, "a/1", "n"), queue.ErrClosed)
	_, err = b.Reminders(ctx, "a/1")
	wantErr(t, "Reminders after Close", err, queue.ErrClosed)
	_, err = b.Stats(ctx)
	wantErr(t, "Stats after Close", err, queue.ErrClosed)
	_, err = b.Append(ctx, "a/1", 1, 0, ackEntries("m"))
	wantErr(t, "Append after Close", err, journal.ErrClosed)
}

func (s *suite) testConcurrency(t *testing.T) {
	b := s.backend(t, Options{})
	const workers, perWorker = 8, 40
	actors := []string{"c/1", "c/2", "c/3"}
	var (
		mu   sync.Mutex
		accs = map[string][]queue.Accepted{}
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Each id is sent by two workers, to the same actor.
				id := fmt.Sprint("m", (w/2)*perWorker+i)
				acc, err := b.Enqueue(t.Context(), mk(id, actors[i%len(actors)], i%2 == 0))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				accs[id] = append(accs[id], acc)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Enqueue: %v", err)
	}
	type shardSeq struct {
		shard int
		seq   uint64
	}
	seqs := map[shardSeq]bool{}
	for id, as := range accs {
		if len(as) != 2 || as[0].Duplicate == as[1].Duplicate || as[0].Seq != as[1].Seq || !as[0].AcceptedAt.Equal(as[1].AcceptedAt) {
			t.Fatalf("id %s accepted as %+v: want one acceptance and one duplicate of it", id, as)
		}
		var i int
		fmt.Sscan(strings.TrimPrefix(id, "m"), &i)
		k := shardSeq{shard(b, actors[i%perWorker%len(actors)]), as[0].Seq}
		if seqs[k] {
			t.Fatalf("Seq %d given twice in shard %d", k.seq, k.shard)
		}
		seqs[k] = true
	}
	for _, a := range actors {
		if n := len(slices.DeleteFunc(due(t, b, a, later()), func(m queue.Message) bool { return !m.Ordered })); n != 1 {
			t.Fatalf("%d ordered messages due at once in %q, want the head alone", n, a)
		}
	}
	st, _ := b.Stats(t.Context())
	if want := workers / 2 * perWorker; len(st) != 1 || st[0].Pending != want {
		t.Fatalf("Stats = %+v, want %d pending", st, want)
	}
	// Concurrent acks of the same message: exactly one succeeds.
	enqueue(t, b, mk("race", "r/1", false))
	var wins sync.WaitGroup
	results := make([]error, 6)
	for i := range results {
		wins.Go(func() {
			tl, err := b.Tail(t.Context(), "r/1")
			if err == nil {
				_, err = b.Append(t.Context(), "r/1", 1, tl.Seq, ackEntries("race"))
			}
			results[i] = err
		})
	}
	wins.Wait()
	if ok := slices.IndexFunc(results, func(e error) bool { return e == nil }); ok < 0 || slices.ContainsFunc(results[ok+1:], func(e error) bool { return e == nil }) {
		t.Fatalf("concurrent acks: %v, want exactly one success", results)
	}
	for _, err := range results {
		if err != nil && !errors.Is(err, journal.ErrAck) && !errors.Is(err, journal.ErrConflict) {
			t.Fatalf("a losing ack failed with %v, want ErrAck or ErrConflict", err)
		}
	}
}

func (s *suite) testNotifier(t *testing.T) {
	b := s.backend(t, Options{})
	n, ok := b.(queue.Notifier)
	if !ok {
		t.Skip("the backend is not a queue.Notifier")
	}
	type note struct {
		actor string
		at    time.Time
	}
	notes := make(chan note, 100)
	n.Notify(func(actor string, at time.Time) {
		select {
		case notes <- note{actor, at}:
		default:
		}
	})
	wait := func(actor string, at time.Time) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got := <-notes:
				if got.actor == actor && !got.at.After(at) {
					return
				}
			case <-deadline:
				t.Fatalf("no notification for %q at or before %v", actor, at)
			}
		}
	}
	acc := enqueue(t, b, mk("m", "n/1", false))
	wait("n/1", acc.AcceptedAt)
	at := time.Now().Add(time.Hour)
	if err := b.SetReminder(t.Context(), queue.Reminder{Actor: "n/2", Name: "r", Method: "m", DueAt: at}); err != nil {
		t.Fatal(err)
	}
	wait("n/2", at)
	if err := b.Retry(t.Context(), fail("n/1", "m", 0, at, at)); err != nil {
		t.Fatal(err)
	}
	wait("n/1", at)
}
