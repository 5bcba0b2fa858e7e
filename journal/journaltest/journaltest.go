package journaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
)

// Harness tells Run how to get journals from the backend under test.
type Harness struct {
	// Open returns a new, empty journal. Run calls it once per subtest,
	// from the subtest's goroutine, and closes what it returns. Open may
	// register t.Cleanup functions (for example to remove files).
	Open func(t *testing.T) journal.Journal

	// Reopen returns a journal over the same storage as old, as a restarted
	// process would see it. Run has already closed old. nil means the
	// backend cannot survive a restart: the persistence subtests are
	// skipped, saying so.
	Reopen func(t *testing.T, old journal.Journal) journal.Journal
}

// Run runs the conformance suite against the backend h describes.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("journaltest: Harness.Open is nil")
	}
	s := &suite{h: h}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Append/Sequence", s.testSequence},
		{"Append/Stamping", s.testStamping},
		{"Append/StoredForm", s.testStoredForm},
		{"Append/Invalid", s.testInvalid},
		{"Fencing/Append", s.testFencingAppend},
		{"Fencing/BeforeConflict", s.testFencedBeforeConflict},
		{"Fencing/SnapshotAndTruncate", s.testFencingSnapshotTruncate},
		{"Conflict", s.testConflict},
		{"Read/Positions", s.testReadPositions},
		{"Read/UnknownActor", s.testUnknownActor},
		{"Snapshot", s.testSnapshot},
		{"Truncate", s.testTruncate},
		{"Concurrent/ManyActors", s.testManyActors},
		{"Concurrent/OneWinnerPerSeq", s.testOneWinnerPerSeq},
		{"Concurrent/RacingWriters", s.testRacingWriters},
		{"Context/AlreadyDone", s.testContextDone},
		{"Isolation", s.testIsolation},
		{"Close/ErrClosed", s.testClosed},
		{"Close/InFlight", s.testCloseInFlight},
		{"Persistence/Reopen", s.testReopen},
		{"Persistence/FencingSurvives", s.testReopenFencing},
	} {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct{ h Harness }

// open returns a fresh journal that is closed when the subtest ends.
func (s *suite) open(t *testing.T) journal.Journal {
	t.Helper()
	j := s.h.Open(t)
	if j == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// reopen closes j and returns the backend's journal over the same storage,
// closed when the subtest ends. It skips the subtest if the backend cannot
// be reopened.
func (s *suite) reopen(t *testing.T, j journal.Journal) journal.Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close before reopen: %v", err)
	}
	j2 := s.h.Reopen(t, j)
	if j2 == nil {
		t.Fatal("Harness.Reopen returned nil")
	}
	t.Cleanup(func() { _ = j2.Close() })
	return j2
}

func (s *suite) needReopen(t *testing.T) {
	t.Helper()
	if s.h.Reopen == nil {
		t.Skip("backend cannot survive a restart (Harness.Reopen is nil): persistence not applicable")
	}
}

// --- helpers ---

func payload(actor string, seq uint64) []byte { return fmt.Appendf(nil, "%s#%d", actor, seq) }

// entries returns n invocation entries whose payloads name the seqs they
// should get when appended after expectedSeq.
func entries(actor string, expectedSeq uint64, n int) []journal.Entry {
	es := make([]journal.Entry, n)
	for i := range es {
		es[i] = journal.Entry{Kind: journal.KindInvocation, Method: "m", Payload: payload(actor, expectedSeq+uint64(i)+1)}
	}
	return es
}

func mustAppend(t *testing.T, j journal.Journal, actor string, token, expectedSeq uint64, n int) uint64 {
	t.Helper()
	tail, err := j.Append(t.Context(), actor, token, expectedSeq, entries(actor, expectedSeq, n))
	if err != nil {
		t.Fatalf("Append(%q, token %d, expected %d, %d entries): %v", actor, token, expectedSeq, n, err)
	}
	if want := expectedSeq + uint64(n); tail != want {
		t.Fatalf("Append(%q, expected %d, %d entries) = tail %d, want %d", actor, expectedSeq, n, tail, want)
	}
	return tail
}

func mustRead(t *testing.T, j journal.Journal, actor string, from uint64) []journal.Entry {
	t.Helper()
	es, err := j.Read(t.Context(), actor, from)
	if err != nil {
		t.Fatalf("Read(%q, %d): %v", actor, from, err)
	}
	return es
}

func mustTail(t *testing.T, j journal.Journal, actor string) journal.Tail {
	t.Helper()
	tl, err := j.Tail(t.Context(), actor)
	if err != nil {
		t.Fatalf("Tail(%q): %v", actor, err)
	}
	return tl
}

func wantTail(t *testing.T, j journal.Journal, actor string, want journal.Tail) {
	t.Helper()
	if got := mustTail(t, j, actor); got != want {
		t.Fatalf("Tail(%q) = %+v, want %+v", actor, got, want)
	}
}

// wantLog checks that Read(actor, from) returns exactly the entries
// from..to made by entries(), stamped with Actor and a token.
func wantLog(t *testing.T, j journal.Journal, actor string, from, to uint64) {
	t.Helper()
	got := mustRead(t, j, actor, from)
	if want := int(to - from + 1); from > to && len(got) != 0 || from <= to && len(got) != want {
		t.Fatalf("Read(%q, %d) returned %d entries, want seqs %d..%d", actor, from, len(got), from, to)
	}
	for i, e := range got {
		seq := from + uint64(i)
		if e.Seq != seq || e.Actor != actor || !bytes.Equal(e.Payload, payload(actor, seq)) {
			t.Fatalf("Read(%q, %d)[%d] = seq %d actor %q payload %q, want seq %d actor %q payload %q",
				actor, from, i, e.Seq, e.Actor, e.Payload, seq, actor, payload(actor, seq))
		}
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// --- subtests ---

func (s *suite) testSequence(t *testing.T) {
	j := s.open(t)
	var tail uint64
	for _, n := range []int{1, 3, 1, 5} {
		tail = mustAppend(t, j, "a", 1, tail, n)
	}
	wantLog(t, j, "a", 1, 10)
	wantTail(t, j, "a", journal.Tail{Seq: 10, Token: 1})
	// Another actor has its own sequence.
	mustAppend(t, j, "b", 1, 0, 2)
	wantLog(t, j, "b", 1, 2)
	wantTail(t, j, "a", journal.Tail{Seq: 10, Token: 1})
}

func (s *suite) testStamping(t *testing.T) {
	j := s.open(t)
	es := []journal.Entry{
		{Seq: 99, Actor: "someone-else", Token: 42, Payload: []byte("x")},
		{Seq: 0, Actor: "", Token: 0, Payload: []byte("y")},
	}
	if _, err := j.Append(t.Context(), "a", 7, 0, es); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got := mustRead(t, j, "a", 0)
	if len(got) != 2 {
		t.Fatalf("Read returned %d entries, want 2", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || e.Actor != "a" || e.Token != 7 {
			t.Errorf("entry %d: Seq %d Actor %q Token %d, want Seq %d Actor %q Token 7", i, e.Seq, e.Actor, e.Token, i+1, "a")
		}
	}
	// The caller's entries are not modified.
	if es[0].Seq != 99 || es[0].Actor != "someone-else" || es[0].Token != 42 {
		t.Errorf("Append modified the caller's entry: %+v", es[0])
	}
}

func (s *suite) testStoredForm(t *testing.T) {
	j := s.open(t)
	paris := time.FixedZone("UTC+2", 2*3600)
	now := time.Now() // carries a monotonic reading
	cases := []struct {
		name string
		in   journal.Entry
		want journal.Entry // Seq, Actor and Token are filled in below
	}{
		{
			name: "all fields",
			in: journal.Entry{Kind: journal.KindInvocation, Method: "Deposit", Payload: []byte{0, 1, 2, 255},
				Time: time.Date(2026, 11, 26, 10, 0, 0, 123456789, paris), CorrelationID: "corr-1",
				TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", IdempotencyKey: "idem-1"},
			want: journal.Entry{Kind: journal.KindInvocation, Method: "Deposit", Payload: []byte{0, 1, 2, 255},
				Time: time.Date(2026, 11, 26, 8, 0, 0, 123456789, time.UTC), CorrelationID: "corr-1",
				TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", IdempotencyKey: "idem-1"},
		},
		{name: "zero entry", in: journal.Entry{}, want: journal.Entry{}},
		{name: "empty payload is nil", in: journal.Entry{Kind: journal.KindStateOp, Payload: []byte{}}, want: journal.Entry{Kind: journal.KindStateOp}},
		{name: "monotonic time", in: journal.Entry{Kind: journal.KindInvocation, Time: now, IdempotencyKey: "msg-9"},
			want: journal.Entry{Kind: journal.KindInvocation, Time: time.Unix(0, now.UnixNano()).UTC(), IdempotencyKey: "msg-9"}},
		{name: "unix epoch is not zero time", in: journal.Entry{Kind: journal.KindSnapshotMarker, Time: time.Unix(0, 0)},
			want: journal.Entry{Kind: journal.KindSnapshotMarker, Time: time.Unix(0, 0).UTC()}},
		{name: "unknown kind kept", in: journal.Entry{Kind: 200, Method: "ünïcode ✓"}, want: journal.Entry{Kind: 200, Method: "ünïcode ✓"}},
		{name: "large payload", in: journal.Entry{Payload: bytes.Repeat([]byte("p"), 1<<20)}, want: journal.Entry{Payload: bytes.Repeat([]byte("p"), 1<<20)}},
	}
	var tail uint64
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			tail, err = j.Append(t.Context(), "form", 3, tail, []journal.Entry{tc.in})
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			got := mustRead(t, j, "form", tail)
			if len(got) != 1 {
				t.Fatalf("Read returned %d entries, want 1", len(got))
			}
			want := tc.want
			want.Seq, want.Actor, want.Token = tail, "form", 3
			if diff := diffEntry(got[0], want); diff != "" {
				t.Fatalf("stored entry differs: %s", diff)
			}
		})
	}
}

// diffEntry compares two entries exactly, including Time's location and
// the nil-ness of Payload; "" if equal.
func diffEntry(got, want journal.Entry) string {
	var d []string
	if got.Seq != want.Seq || got.Kind != want.Kind || got.Actor != want.Actor || got.Method != want.Method ||
		got.CorrelationID != want.CorrelationID || got.TraceID != want.TraceID || got.Token != want.Token ||
		got.IdempotencyKey != want.IdempotencyKey {
		d = append(d, fmt.Sprintf("scalars: got {Seq:%d Kind:%d Actor:%q Method:%q Corr:%q Trace:%q Token:%d Idem:%q}, want {Seq:%d Kind:%d Actor:%q Method:%q Corr:%q Trace:%q Token:%d Idem:%q}",
			got.Seq, got.Kind, got.Actor, got.Method, got.CorrelationID, got.TraceID, got.Token, got.IdempotencyKey,
			want.Seq, want.Kind, want.Actor, want.Method, want.CorrelationID, want.TraceID, want.Token, want.IdempotencyKey))
	}
	if !bytes.Equal(got.Payload, want.Payload) || (got.Payload == nil) != (want.Payload == nil) {
		d = append(d, fmt.Sprintf("payload: got %d bytes (nil %v), want %d bytes (nil %v)", len(got.Payload), got.Payload == nil, len(want.Payload), want.Payload == nil))
	}
	if got.Time != want.Time { // == also compares location and monotonic reading
		d = append(d, fmt.Sprintf("time: got %v (%v), want %v (%v)", got.Time, got.Time.Location(), want.Time, want.Time.Location()))
	}
	return strings.Join(d, "; ")
}

func (s *suite) testInvalid(t *testing.T) {
	j := s.open(t)
	mustAppend(t, j, "a", 1, 0, 1)
	cases := []struct {
		name    string
		actor   string
		entries []journal.Entry
	}{
		{"empty actor", "", entries("", 0, 1)},
		{"actor too long", strings.Repeat("x", journal.MaxActorLen+1), entries("x", 0, 1)},
		{"nil entries", "a", nil},
		{"empty entries", "a", []journal.Entry{}},
		{"time before 1678", "a", []journal.Entry{{Time: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"time after 2262", "a", []journal.Entry{{Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := j.Append(t.Context(), tc.actor, 1, 1, tc.entries)
			wantErr(t, "Append", err, journal.ErrInvalid)
			wantTail(t, j, "a", journal.Tail{Seq: 1, Token: 1})
		})
	}
	// The longest valid actor key works.
	long := strings.Repeat("k", journal.MaxActorLen)
	mustAppend(t, j, long, 1, 0, 1)
	wantLog(t, j, long, 1, 1)
	// Other methods reject an empty actor too.
	_, err := j.Read(t.Context(), "", 0)
	wantErr(t, "Read(\"\")", err, journal.ErrInvalid)
	_, err = j.Tail(t.Context(), "")
	wantErr(t, "Tail(\"\")", err, journal.ErrInvalid)
	_, _, err = j.LoadSnapshot(t.Context(), "")
	wantErr(t, "LoadSnapshot(\"\")", err, journal.ErrInvalid)
	wantErr(t, "SaveSnapshot(\"\")", j.SaveSnapshot(t.Context(), "", 1, journal.Snapshot{}), journal.ErrInvalid)
	wantErr(t, "Truncate(\"\")", j.Truncate(t.Context(), "", 1, 0), journal.ErrInvalid)
}

func (s *suite) testFencingAppend(t *testing.T) {
	j := s.open(t)
	steps := []struct {
		name    string
		token   uint64
		wantErr error
		want    journal.Tail // after the step
	}{
		{"first writer", 5, nil, journal.Tail{Seq: 1, Token: 5}},
		{"lower token rejected", 4, journal.ErrFenced, journal.Tail{Seq: 1, Token: 5}},
		{"zero token rejected", 0, journal.ErrFenced, journal.Tail{Seq: 1, Token: 5}},
		{"equal token accepted", 5, nil, journal.Tail{Seq: 2, Token: 5}},
		{"higher token raises", 9, nil, journal.Tail{Seq: 3, Token: 9}},
		{"previous holder now fenced", 5, journal.ErrFenced, journal.Tail{Seq: 3, Token: 9}},
		{"new holder continues", 9, nil, journal.Tail{Seq: 4, Token: 9}},
	}
	for _, st := range steps {
		before := mustTail(t, j, "a")
		_, err := j.Append(t.Context(), "a", st.token, before.Seq, entries("a", before.Seq, 1))
		if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: Append(token %d) err = %v, want %v", st.name, st.token, err, st.wantErr)
		}
		wantTail(t, j, "a", st.want)
	}
	wantLog(t, j, "a", 1, 4)
	for _, e := range mustRead(t, j, "a", 0) {
		if want := map[uint64]uint64{1: 5, 2: 5, 3: 9, 4: 9}[e.Seq]; e.Token != want {
			t.Errorf("entry %d has Token %d, want %d", e.Seq, e.Token, want)
		}
	}
	// Tokens are per actor.
	mustAppend(t, j, "b", 1, 0, 1)
}

func (s *suite) testFencedBeforeConflict(t *testing.T) {
	j := s.open(t)
	mustAppend(t, j, "a", 5, 0, 2)
	for _, expected := range []uint64{0, 1, 2, 3} {
		_, err := j.Append(t.Context(), "a", 4, expected, entries("a", expected, 1))
		wantErr(t, fmt.Sprintf("Append(token 4, expected %d)", expected), err, journal.ErrFenced)
		if errors.Is(err, journal.ErrConflict) {
			t.Fatalf("fenced append also reports ErrConflict: %v", err)
		}
	}
	// A higher token with a wrong expectedSeq conflicts and does not raise
	// the token.
	_, err := j.Append(t.Context(), "a", 6, 1, entries("a", 1, 1))
	wantErr(t, "Append(token 6, expected 1)", err, journal.ErrConflict)
	wantTail(t, j, "a", journal.Tail{Seq: 2, Token: 5})
}

func (s *suite) testFencingSnapshotTruncate(t *testing.T) {
	j := s.open(t)
	ctx := t.Context()
	mustAppend(t, j, "a", 5, 0, 4)
	if err := j.SaveSnapshot(ctx, "a", 5, journal.Snapshot{Seq: 2, Data: []byte("s2")}); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	// Lower tokens are fenced, with no effect.
	wantErr(t, "SaveSnapshot(token 4)", j.SaveSnapshot(ctx, "a", 4, journal.Snapshot{Seq: 3, Data: []byte("s3")}), journal.ErrFenced)
	wantErr(t, "Truncate(token 4)", j.Truncate(ctx, "a", 4, 2), journal.ErrFenced)
	// Fencing is checked before validity.
	wantErr(t, "SaveSnapshot(token 4, beyond tail)", j.SaveSnapshot(ctx, "a", 4, journal.Snapshot{Seq: 99}), journal.ErrFenced)
	wantErr(t, "Truncate(token 4, beyond snapshot)", j.Truncate(ctx, "a", 4, 99), journal.ErrFenced)
	if snap, ok, err := j.LoadSnapshot(ctx, "a"); err != nil || !ok || snap.Seq != 2 || string(snap.Data) != "s2" {
		t.Fatalf("after fenced SaveSnapshot: LoadSnapshot = %+v, %v, %v; want seq 2 %q", snap, ok, err, "s2")
	}
	wantLog(t, j, "a", 1, 4)

	// A successful SaveSnapshot raises the token: appends under the old
	// token are now fenced.
	if err := j.SaveSnapshot(ctx, "a", 7, journal.Snapshot{Seq: 3, Data: []byte("s3")}); err != nil {
		t.Fatalf("SaveSnapshot(token 7): %v", err)
	}
	wantTail(t, j, "a", journal.Tail{Seq: 4, Token: 7})
	_, err := j.Append(ctx, "a", 5, 4, entries("a", 4, 1))
	wantErr(t, "Append(token 5) after snapshot with token 7", err, journal.ErrFenced)

	// So does a successful Truncate, even one that removes nothing.
	if err := j.Truncate(ctx, "a", 8, 0); err != nil {
		t.Fatalf("Truncate(token 8, through 0): %v", err)
	}
	wantTail(t, j, "a", journal.Tail{Seq: 4, Token: 8})
	_, err = j.Append(ctx, "a", 7, 4, entries("a", 4, 1))
	wantErr(t, "Append(token 7) after truncate with token 8", err, journal.ErrFenced)
	wantErr(t, "SaveSnapshot(token 7) after truncate with token 8", j.SaveSnapshot(ctx, "a", 7, journal.Snapshot{Seq: 4}), journal.ErrFenced)
	wantLog(t, j, "a", 1, 4)
	mustAppend(t, j, "a", 8, 4, 1)
}

func (s *suite) testConflict(t *testing.T) {
	j := s.open(t)
	_, err := j.Append(t.Context(), "a", 1, 1, entries("a", 1, 1))
	wantErr(t, "Append(expected 1) to an empty log", err, journal.ErrConflict)
	wantTail(t, j, "a", journal.Tail{})
	mustAppend(t, j, "a", 1, 0, 3)
	for _, expected := range []uint64{0, 1, 2, 4, 100} {
		_, err := j.Append(t.Context(), "a", 1, expected, entries("a", expected, 2))
		wantErr(t, fmt.Sprintf("Append(expected %d) with tail 3", expected), err, journal.ErrConflict)
	}
	wantTail(t, j, "a", journal.Tail{Seq: 3, Token: 1})
	wantLog(t, j, "a", 1, 3)
}

func (s *suite) testReadPositions(t *testing.T) {
	j := s.open(t)
	mustAppend(t, j, "a", 1, 0, 10)
	mustAppend(t, j, "ab", 1, 0, 3) // a neighbouring key must not leak into "a"
	mustAppend(t, j, "\x00", 1, 0, 1)
	for _, tc := range []struct {
		from  uint64
		first uint64 // first seq returned; none if > 10
	}{
		{0, 1}, {1, 1}, {4, 4}, {9, 9}, {10, 10}, {11, 11}, {1 << 62, 1 << 62}, {^uint64(0), ^uint64(0)},
	} {
		got := mustRead(t, j, "a", tc.from)
		if want := max(0, 10-int64(min(tc.first, 11))+1); int64(len(got)) != want {
			t.Fatalf("Read(a, %d) returned %d entries, want %d", tc.from, len(got), want)
		}
		for i, e := range got {
			if seq := tc.first + uint64(i); e.Seq != seq || e.Actor != "a" || !bytes.Equal(e.Payload, payload("a", seq)) {
				t.Fatalf("Read(a, %d)[%d] = seq %d actor %q, want seq %d actor a", tc.from, i, e.Seq, e.Actor, seq)
			}
		}
	}
}

func (s *suite) testUnknownActor(t *testing.T) {
	j := s.open(t)
	mustAppend(t, j, "known", 1, 0, 1)
	if es := mustRead(t, j, "unknown", 0); len(es) != 0 {
		t.Fatalf("Read(unknown) = %d entries, want none", len(es))
	}
	wantTail(t, j, "unknown", journal.Tail{})
	snap, ok, err := j.LoadSnapshot(t.Context(), "unknown")
	if err != nil || ok {
		t.Fatalf("LoadSnapshot(unknown) = %+v, %v, %v; want ok false, nil error", snap, ok, err)
	}
	// Reading an unknown actor does not create it.
	wantTail(t, j, "unknown", journal.Tail{})
}

func (s *suite) testSnapshot(t *testing.T) {
	j := s.open(t)
	ctx := t.Context()
	mustAppend(t, j, "a", 3, 0, 6)
	load := func(wantSeq uint64, wantData string) {
		t.Helper()
		snap, ok, err := j.LoadSnapshot(ctx, "a")
		if err != nil || !ok {
			t.Fatalf("LoadSnapshot = %v, %v; want a snapshot", ok, err)
		}
		if snap.Seq != wantSeq || snap.Token != 3 || string(snap.Data) != wantData {
			t.Fatalf("LoadSnapshot = {Seq:%d Token:%d Data:%q}, want {Seq:%d Token:3 Data:%q}", snap.Seq, snap.Token, snap.Data, wantSeq, wantData)
		}
	}
	if _, ok, err := j.LoadSnapshot(ctx, "a"); ok || err != nil {
		t.Fatalf("LoadSnapshot before any save = %v, %v; want none", ok, err)
	}
	steps := []struct {
		name    string
		snap    journal.Snapshot
		wantErr error
		wantSeq uint64
		want    string
	}{
		{"save (token stamped)", journal.Snapshot{Seq: 2, Token: 99, Data: []byte("two")}, nil, 2, "two"},
		{"replace with newer", journal.Snapshot{Seq: 4, Data: []byte("four")}, nil, 4, "four"},
		{"replace at same seq", journal.Snapshot{Seq: 4, Data: []byte("four again")}, nil, 4, "four again"},
		{"older rejected", journal.Snapshot{Seq: 3, Data: []byte("three")}, journal.ErrInvalid, 4, "four again"},
		{"beyond tail rejected", journal.Snapshot{Seq: 7, Data: []byte("seven")}, journal.ErrInvalid, 4, "four again"},
		{"at tail", journal.Snapshot{Seq: 6, Data: []byte("six")}, nil, 6, "six"},
		{"empty data", journal.Snapshot{Seq: 6}, nil, 6, ""},
	}
	for _, st := range steps {
		err := j.SaveSnapshot(ctx, "a", 3, st.snap)
		if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: SaveSnapshot(%d) err = %v, want %v", st.name, st.snap.Seq, err, st.wantErr)
		}
		load(st.wantSeq, st.want)
	}
	// Snapshots do not change the log or the tail.
	wantLog(t, j, "a", 1, 6)
	wantTail(t, j, "a", journal.Tail{Seq: 6, Token: 3})
	// An actor never written can only be snapshotted at seq 0.
	wantErr(t, "SaveSnapshot(fresh, 1)", j.SaveSnapshot(ctx, "fresh", 1, journal.Snapshot{Seq: 1}), journal.ErrInvalid)
}

func (s *suite) testTruncate(t *testing.T) {
	j := s.open(t)
	ctx := t.Context()
	mustAppend(t, j, "a", 1, 0, 10)
	wantErr(t, "Truncate without snapshot", j.Truncate(ctx, "a", 1, 1), journal.ErrInvalid)
	if err := j.Truncate(ctx, "a", 1, 0); err != nil {
		t.Fatalf("Truncate(0) without snapshot: %v", err)
	}
	wantLog(t, j, "a", 1, 10)
	if err := j.SaveSnapshot(ctx, "a", 1, journal.Snapshot{Seq: 5, Data: []byte("s")}); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	steps := []struct {
		name      string
		through   uint64
		wantErr   error
		wantFirst uint64 // first seq Read(0) returns after the step
	}{
		{"beyond snapshot rejected", 6, journal.ErrInvalid, 1},
		{"beyond tail rejected", 11, journal.ErrInvalid, 1},
		{"partial", 3, nil, 4},
		{"same range again is a no-op", 3, nil, 4},
		{"lower range is a no-op", 2, nil, 4},
		{"up to the snapshot", 5, nil, 6},
	}
	for _, st := range steps {
		err := j.Truncate(ctx, "a", 1, st.through)
		if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: Truncate(%d) err = %v, want %v", st.name, st.through, err, st.wantErr)
		}
		wantLog(t, j, "a", st.wantFirst, 10)
		if got := mustRead(t, j, "a", 0); len(got) == 0 || got[0].Seq != st.wantFirst {
			t.Fatalf("%s: Read(0) starts at %v, want seq %d", st.name, got, st.wantFirst)
		}
		wantTail(t, j, "a", journal.Tail{Seq: 10, Token: 1})
	}
	// Reading from inside the truncated range starts at the first survivor.
	if got := mustRead(t, j, "a", 2); len(got) != 5 || got[0].Seq != 6 {
		t.Fatalf("Read(2) after truncating through 5 = %d entries, want 6..10", len(got))
	}
	// Appends continue after the tail.
	mustAppend(t, j, "a", 1, 10, 2)
	wantLog(t, j, "a", 6, 12)

	// Truncate everything: the tail survives an empty log.
	if err := j.SaveSnapshot(ctx, "a", 1, journal.Snapshot{Seq: 12, Data: []byte("all")}); err != nil {
		t.Fatalf("SaveSnapshot(12): %v", err)
	}
	if err := j.Truncate(ctx, "a", 1, 12); err != nil {
		t.Fatalf("Truncate(12): %v", err)
	}
	if got := mustRead(t, j, "a", 0); len(got) != 0 {
		t.Fatalf("Read after truncating everything = %d entries, want none", len(got))
	}
	wantTail(t, j, "a", journal.Tail{Seq: 12, Token: 1})
	_, err := j.Append(ctx, "a", 1, 0, entries("a", 0, 1))
	wantErr(t, "Append(expected 0) after truncating everything", err, journal.ErrConflict)
	mustAppend(t, j, "a", 1, 12, 1)
	wantLog(t, j, "a", 13, 13)
	if snap, ok, err := j.LoadSnapshot(ctx, "a"); err != nil || !ok || snap.Seq != 12 {
		t.Fatalf("LoadSnapshot after truncate = %+v, %v, %v; want seq 12", snap, ok, err)
	}
}

func (s *suite) testManyActors(t *testing.T) {
	j := s.open(t)
	const actors, appends = 32, 50
	errs := make(chan error, actors)
	var wg sync.WaitGroup
	for g := range actors {
		wg.Go(func() {
			actor := fmt.Sprintf("actor-%02d", g)
			var tail uint64
			for range appends {
				next, err := j.Append(t.Context(), actor, uint64(g+1), tail, entries(actor, tail, 1))
				if err != nil {
					errs <- fmt.Errorf("%s: Append(expected %d): %w", actor, tail, err)
					return
				}
				tail = next
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for g := range actors {
		actor := fmt.Sprintf("actor-%02d", g)
		wantLog(t, j, actor, 1, appends)
		wantTail(t, j, actor, journal.Tail{Seq: appends, Token: uint64(g + 1)})
	}
}

// testOneWinnerPerSeq starts many appends with the same expectedSeq at once,
// round after round: exactly one must win each round.
func (s *suite) testOneWinnerPerSeq(t *testing.T) {
	j := s.open(t)
	const writers, rounds = 16, 20
	for round := range uint64(rounds) {
		start := make(chan struct{})
		results := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				<-start
				_, results[w] = j.Append(t.Context(), "hot", 1, round, []journal.Entry{{Payload: fmt.Appendf(nil, "w%d", w)}})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range results {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won seq %d", round, winner, w, round+1)
			case err == nil:
				winner = w
			case !errors.Is(err, journal.ErrConflict):
				t.Fatalf("round %d: writer %d: %v, want nil or ErrConflict", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won seq %d", round, round+1)
		}
		got := mustRead(t, j, "hot", round+1)
		if len(got) != 1 || string(got[0].Payload) != fmt.Sprintf("w%d", winner) {
			t.Fatalf("round %d: stored %v, want the winner w%d's entry", round, got, winner)
		}
	}
	wantTail(t, j, "hot", journal.Tail{Seq: rounds, Token: 1})
}

// testRacingWriters runs writers that each read the tail and append after
// it, retrying on conflicts, until the log is long enough. Every seq must
// be won by exactly one writer, and the log must hold exactly the winners'
// entries, without gaps.
func (s *suite) testRacingWriters(t *testing.T) {
	j := s.open(t)
	const writers, total = 8, 200
	var mu sync.Mutex
	won := map[uint64]string{} // seq -> payload of its winner
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := 0; ; n++ {
				tl, err := j.Tail(t.Context(), "race")
				if err != nil {
					errs <- err
					return
				}
				if tl.Seq >= total {
					return
				}
				p := fmt.Sprintf("w%d-n%d", w, n)
				tail, err := j.Append(t.Context(), "race", 1, tl.Seq, []journal.Entry{{Payload: []byte(p)}})
				switch {
				case errors.Is(err, journal.ErrConflict):
					continue
				case err != nil:
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				prev, dup := won[tail]
				won[tail] = p
				mu.Unlock()
				if dup || tail != tl.Seq+1 {
					errs <- fmt.Errorf("seq %d won by %q and %q (tail %d after expecting %d)", tail, prev, p, tail, tl.Seq)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustRead(t, j, "race", 0)
	if len(got) != len(won) {
		t.Fatalf("log holds %d entries, %d appends succeeded", len(got), len(won))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || string(e.Payload) != won[e.Seq] {
			t.Fatalf("entry %d: seq %d payload %q, want seq %d payload %q", i, e.Seq, e.Payload, i+1, won[uint64(i+1)])
		}
	}
}

func (s *suite) testContextDone(t *testing.T) {
	j := s.open(t)
	mustAppend(t, j, "a", 2, 0, 3)
	if err := j.SaveSnapshot(t.Context(), "a", 2, journal.Snapshot{Seq: 1, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"deadline", expired, context.DeadlineExceeded}} {
		t.Run(c.name, func(t *testing.T) {
			_, err := j.Append(c.ctx, "a", 3, 3, entries("a", 3, 1))
			wantErr(t, "Append", err, c.want)
			wantErr(t, "SaveSnapshot", j.SaveSnapshot(c.ctx, "a", 3, journal.Snapshot{Seq: 3}), c.want)
			wantErr(t, "Truncate", j.Truncate(c.ctx, "a", 3, 1), c.want)
			_, err = j.Read(c.ctx, "a", 0)
			wantErr(t, "Read", err, c.want)
			_, err = j.Tail(c.ctx, "a")
			wantErr(t, "Tail", err, c.want)
			_, _, err = j.LoadSnapshot(c.ctx, "a")
			wantErr(t, "LoadSnapshot", err, c.want)
			// None of them had an effect.
			wantTail(t, j, "a", journal.Tail{Seq: 3, Token: 2})
			wantLog(t, j, "a", 1, 3)
			if snap, ok, err := j.LoadSnapshot(t.Context(), "a"); err != nil || !ok || snap.Seq != 1 || snap.Token != 2 {
				t.Fatalf("LoadSnapshot = %+v, %v, %v; want the seq 1 snapshot", snap, ok, err)
			}
		})
	}
}

func (s *suite) testIsolation(t *testing.T) {
	j := s.open(t)
	ctx := t.Context()
	p := []byte("original")
	es := []journal.Entry{{Payload: p}}
	if _, err := j.Append(ctx, "a", 1, 0, es); err != nil {
		t.Fatal(err)
	}
	copy(p, "MUTATED!")
	es[0].Payload = []byte("replaced")
	got := mustRead(t, j, "a", 0)
	if string(got[0].Payload) != "original" {
		t.Fatalf("mutating the appended slice changed the stored payload to %q", got[0].Payload)
	}
	copy(got[0].Payload, "READOUT!")
	got[0].Method = "changed"
	if again := mustRead(t, j, "a", 0); string(again[0].Payload) != "original" || again[0].Method != "" {
		t.Fatalf("mutating a Read result changed the stored entry to %+v", again[0])
	}

	d := []byte("snapshot")
	if err := j.SaveSnapshot(ctx, "a", 1, journal.Snapshot{Seq: 1, Data: d}); err != nil {
		t.Fatal(err)
	}
	copy(d, "MUTATED!")
	snap, _, err := j.LoadSnapshot(ctx, "a")
	if err != nil || string(snap.Data) != "snapshot" {
		t.Fatalf("mutating the saved slice changed the snapshot to %q (%v)", snap.Data, err)
	}
	copy(snap.Data, "READOUT!")
	if again, _, _ := j.LoadSnapshot(ctx, "a"); string(again.Data) != "snapshot" {
		t.Fatalf("mutating a loaded snapshot changed the stored one to %q", again.Data)
	}
}

func (s *suite) testClosed(t *testing.T) {
	j := s.open(t)
	ctx := t.Context()
	mustAppend(t, j, "a", 1, 0, 1)
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := j.Append(ctx, "a", 1, 1, entries("a", 1, 1))
	wantErr(t, "Append after Close", err, journal.ErrClosed)
	_, err = j.Read(ctx, "a", 0)
	wantErr(t, "Read after Close", err, journal.ErrClosed)
	_, err = j.Tail(ctx, "a")
	wantErr(t, "Tail after Close", err, journal.ErrClosed)
	wantErr(t, "SaveSnapshot after Close", j.SaveSnapshot(ctx, "a", 1, journal.Snapshot{Seq: 1}), journal.ErrClosed)
	_, _, err = j.LoadSnapshot(ctx, "a")
	wantErr(t, "LoadSnapshot after Close", err, journal.ErrClosed)
	wantErr(t, "Truncate after Close", j.Truncate(ctx, "a", 1, 0), journal.ErrClosed)
}

// testCloseInFlight closes the journal under concurrent appenders: each
// append either succeeds or fails with ErrClosed, and, if the backend can be
// reopened, every successful one is there afterwards.
func (s *suite) testCloseInFlight(t *testing.T) {
	j := s.open(t)
	const writers = 8
	tails := make([]uint64, writers)
	errs := make([]error, writers)
	started := make(chan struct{}, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			actor := fmt.Sprintf("w%d", w)
			for i := 0; ; i++ {
				tail, err := j.Append(t.Context(), actor, 1, tails[w], entries(actor, tails[w], 1))
				if err != nil {
					errs[w] = err
					return
				}
				tails[w] = tail
				if i == 2 {
					started <- struct{}{}
				}
			}
		})
	}
	for range writers {
		<-started
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close under load: %v", err)
	}
	wg.Wait()
	for w, err := range errs {
		if !errors.Is(err, journal.ErrClosed) {
			t.Errorf("writer %d stopped with %v, want ErrClosed", w, err)
		}
	}
	if s.h.Reopen == nil {
		return
	}
	j2 := s.reopen(t, j)
	for w, tail := range tails {
		actor := fmt.Sprintf("w%d", w)
		wantLog(t, j2, actor, 1, tail)
		wantTail(t, j2, actor, journal.Tail{Seq: tail, Token: 1})
	}
}

func (s *suite) testReopen(t *testing.T) {
	s.needReopen(t)
	j := s.open(t)
	ctx := t.Context()
	mustAppend(t, j, "a", 3, 0, 5)
	mustAppend(t, j, "b", 1, 0, 2)
	mustAppend(t, j, "b", 4, 2, 1)
	if err := j.SaveSnapshot(ctx, "a", 3, journal.Snapshot{Seq: 4, Data: []byte("snap-a")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Truncate(ctx, "a", 3, 2); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 11, 26, 12, 0, 0, 1, time.UTC)
	if _, err := j.Append(ctx, "c", 9, 0, []journal.Entry{{Kind: journal.KindInvocation, Method: "M", Time: when,
		CorrelationID: "c1", TraceID: "t1", IdempotencyKey: "k1", Payload: []byte("p")}}); err != nil {
		t.Fatal(err)
	}
	if err := j.Truncate(ctx, "d", 6, 0); err != nil { // token only, no entries
		t.Fatal(err)
	}

	j = s.reopen(t, j)
	wantLog(t, j, "a", 3, 5)
	if got := mustRead(t, j, "a", 0); len(got) != 3 {
		t.Fatalf("after reopen, Read(a, 0) = %d entries, want 3 (1..2 truncated)", len(got))
	}
	wantTail(t, j, "a", journal.Tail{Seq: 5, Token: 3})
	wantLog(t, j, "b", 1, 3)
	wantTail(t, j, "b", journal.Tail{Seq: 3, Token: 4})
	wantTail(t, j, "d", journal.Tail{Seq: 0, Token: 6})
	snap, ok, err := j.LoadSnapshot(ctx, "a")
	if err != nil || !ok || snap.Seq != 4 || snap.Token != 3 || string(snap.Data) != "snap-a" {
		t.Fatalf("after reopen, LoadSnapshot(a) = %+v, %v, %v", snap, ok, err)
	}
	got := mustRead(t, j, "c", 0)
	want := journal.Entry{Seq: 1, Kind: journal.KindInvocation, Actor: "c", Method: "M", Payload: []byte("p"), Time: when,
		CorrelationID: "c1", TraceID: "t1", Token: 9, IdempotencyKey: "k1"}
	if len(got) != 1 {
		t.Fatalf("after reopen, Read(c) = %d entries, want 1", len(got))
	}
	if d := diffEntry(got[0], want); d != "" {
		t.Fatalf("after reopen, entry differs: %s", d)
	}
	// Writing continues where it stopped, and survives a second reopen.
	mustAppend(t, j, "a", 3, 5, 2)
	j = s.reopen(t, j)
	wantLog(t, j, "a", 3, 7)
	// Rules still hold against the reopened state.
	wantErr(t, "Truncate beyond snapshot after reopen", j.Truncate(ctx, "a", 3, 5), journal.ErrInvalid)
	wantErr(t, "older snapshot after reopen", j.SaveSnapshot(ctx, "a", 3, journal.Snapshot{Seq: 3}), journal.ErrInvalid)
}

func (s *suite) testReopenFencing(t *testing.T) {
	s.needReopen(t)
	j := s.open(t)
	mustAppend(t, j, "a", 10, 0, 1)
	j = s.reopen(t, j)
	_, err := j.Append(t.Context(), "a", 9, 1, entries("a", 1, 1))
	wantErr(t, "Append(token 9) after reopen", err, journal.ErrFenced)
	mustAppend(t, j, "a", 10, 1, 1)
}
