package pgjournal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
)

// payloadOf is what a writer appends as seq of actor, so that every
// stored entry can be checked.
func payloadOf(actor string, seq uint64) []byte {
	return fmt.Appendf(nil, "%s#%d#%s", actor, seq, strings.Repeat("x", 64))
}

// entriesAt are the n entries a writer appends after tail.
func entriesAt(actor string, tail uint64, n int) []journal.Entry {
	es := make([]journal.Entry, n)
	for k := range es {
		es[k] = journal.Entry{Kind: journal.KindInvocation, Payload: payloadOf(actor, tail+uint64(k)+1)}
	}
	return es
}

// checkLog checks that actor's log is 1..tail of payloadOf, without a
// gap, that its tail is the log's end and at least minTail, and returns it.
func checkLog(t *testing.T, j journal.Journal, actor string, minTail uint64) uint64 {
	t.Helper()
	es, err := j.Read(t.Context(), actor, 0)
	if err != nil {
		t.Fatalf("Read(%q): %v", actor, err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || !bytes.Equal(e.Payload, payloadOf(actor, e.Seq)) {
			t.Fatalf("%q: entry %d is seq %d payload %q", actor, i, e.Seq, e.Payload)
		}
	}
	if uint64(len(es)) < minTail {
		t.Fatalf("%q: %d entries stored, but appends up to seq %d were acknowledged", actor, len(es), minTail)
	}
	if tl, err := j.Tail(t.Context(), actor); err != nil || tl.Seq != uint64(len(es)) {
		t.Fatalf("%q: Tail = %+v, %v; want seq %d", actor, tl, err, len(es))
	}
	return uint64(len(es))
}

func mustAppendAt(t *testing.T, j journal.Journal, actor string, tail uint64) {
	t.Helper()
	if got, err := j.Append(t.Context(), actor, 1, tail, entriesAt(actor, tail, 1)); err != nil || got != tail+1 {
		t.Fatalf("Append(%q, expected %d) = %d, %v; want %d", actor, tail, got, err, tail+1)
	}
}

// TestKeysAndTokens: actors are byte strings (a NUL byte, invalid UTF-8,
// one actor a prefix of another keep separate logs), and fencing holds
// for tokens across the whole uint64 range.
func TestKeysAndTokens(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	j := open(t, s, db, uniqueSchema())
	actors := []string{"a", "a\x00", "a\xff", "\x00", "\xff\xfe", "a/b", "a/b/", "ü"}
	for i, a := range actors {
		for seq := range uint64(i + 1) {
			mustAppendAt(t, j, a, seq)
		}
	}
	for i, a := range actors {
		checkLog(t, j, a, uint64(i+1))
	}
	ctx := t.Context()
	for _, c := range []struct{ high, low uint64 }{
		{10_000_000_000, 9_999_999_999},
		{1<<53 + 1, 1 << 53},
		{1 << 63, 1<<63 - 1},
		{1<<63 + 5, 1<<63 + 4},
		{math.MaxUint64, math.MaxUint64 - 1},
	} {
		actor := fmt.Sprintf("tok-%d", c.high)
		if _, err := j.Append(ctx, actor, c.high, 0, entriesAt(actor, 0, 1)); err != nil {
			t.Fatalf("Append(token %d): %v", c.high, err)
		}
		if _, err := j.Append(ctx, actor, c.low, 1, entriesAt(actor, 1, 1)); !errors.Is(err, journal.ErrFenced) {
			t.Fatalf("Append(token %d) after %d: %v, want ErrFenced", c.low, c.high, err)
		}
		if tl, err := j.Tail(ctx, actor); err != nil || tl != (journal.Tail{Seq: 1, Token: c.high}) {
			t.Fatalf("Tail = %+v, %v; want seq 1 token %d", tl, err, c.high)
		}
		if es, err := j.Read(ctx, actor, 0); err != nil || len(es) != 1 || es[0].Token != c.high {
			t.Fatalf("Read = %+v, %v; want one entry of token %d", es, err, c.high)
		}
	}
	// An expected seq past every tail, and a read from past the end.
	if _, err := j.Append(ctx, "a", 1, math.MaxUint64-1, entriesAt("a", 0, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("Append(expected MaxUint64-1): %v, want ErrConflict", err)
	}
	if es, err := j.Read(ctx, "a", math.MaxUint64); err != nil || len(es) != 0 {
		t.Fatalf("Read(MaxUint64) = %v, %v; want nothing", es, err)
	}
}

// TestServerKilled kills every PostgreSQL process with SIGKILL while
// writers append, then restarts the server on the same data directory:
// every acknowledged append is there; each failed append failed with
// ErrUnavailable (and then had no effect) or ErrUnknownOutcome (and then
// either did or did not), never with a refusal; and the same journal goes
// on appending once the server is back.
func TestServerKilled(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	db := s.CreateDatabase(t)
	j := open(t, s, db, "loom")
	const writers, killAfter = 16, 1500

	type outcome struct {
		tail uint64 // acknowledged
		n    int    // entries of the failed append
		err  error  // how the first failed append failed
	}
	outcomes := make([]outcome, writers)
	var acks atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			actor := fmt.Sprintf("w%d", w)
			o := &outcomes[w]
			for i := 0; ; i++ {
				n := 1 + i%3
				next, err := j.Append(t.Context(), actor, 1, o.tail, entriesAt(actor, o.tail, n))
				if err != nil {
					o.n, o.err = n, err
					return
				}
				o.tail = next
				if acks.Add(1) == killAfter {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	<-enough
	s.Kill()
	wg.Wait() // every writer has failed: the server is gone

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for w, o := range outcomes {
		actor := fmt.Sprintf("w%d", w)
		for _, ref := range []error{journal.ErrConflict, journal.ErrFenced, journal.ErrInvalid} {
			if errors.Is(o.err, ref) {
				t.Fatalf("%s: a failure of the server reported as a refusal: %v", actor, o.err)
			}
		}
		switch {
		case errors.Is(o.err, pgjournal.ErrUnknownOutcome):
			kinds["unknown outcome"]++
			got := checkLog(t, j, actor, o.tail)
			if got != o.tail && got != o.tail+uint64(o.n) {
				t.Fatalf("%s: tail %d after an append of %d entries at %d with an unknown outcome", actor, got, o.n, o.tail)
			}
			o.tail = got
		case errors.Is(o.err, pgjournal.ErrUnavailable):
			kinds["unavailable"]++
			if got := checkLog(t, j, actor, o.tail); got != o.tail {
				t.Fatalf("%s: append at %d failed with %v, yet the tail is %d", actor, o.tail, o.err, got)
			}
		default:
			t.Fatalf("%s: append at %d failed with %v, want ErrUnavailable or ErrUnknownOutcome", actor, o.tail, o.err)
		}
		mustAppendAt(t, j, actor, o.tail)
	}
	t.Logf("killed the server after %d acknowledged appends; writers stopped with %v; first error: %v", acks.Load(), kinds, outcomes[0].err)
}
