package redisjournal_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

// open opens a journal on the server at addr, closed when t ends.
func open(t testing.TB, addr string, mod ...func(*redisjournal.Options)) *redisjournal.Journal {
	t.Helper()
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: addr}
	for _, m := range mod {
		m(&o)
	}
	j, err := redisjournal.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestConformance runs journaltest against a real redis-server, one server
// per subtest. Reopen is a new journal (a new client) over the same
// server: what a restarted node process sees.
func TestConformance(t *testing.T) {
	servers := map[journal.Journal]*redistest.Server{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			s := redistest.Start(t, redistest.Options{})
			j := open(t, s.Addr)
			servers[j] = s
			return j
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			s := servers[old]
			j := open(t, s.Addr)
			servers[j] = s
			return j
		},
	})
}

// TestKeysAndTokens: actors whose names hold braces or look like another
// actor's key with a suffix keep separate logs, and fencing holds for
// tokens whose decimal forms differ only past 2^53 or in length.
func TestKeysAndTokens(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	j := open(t, s.Addr)
	actors := []string{"a", "a}h", "a}l", "a}", "{a", "}", "{", "{a}", "a}h}l", "\x00}"}
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
		{1<<63 + 5, 1<<63 + 4},
		{math.MaxUint64, math.MaxUint64 - 1},
	} {
		actor := fmt.Sprintf("tok-%d", c.high)
		if _, err := j.Append(ctx, actor, c.high, 0, crashEntries(actor, 0, 1)); err != nil {
			t.Fatalf("Append(token %d): %v", c.high, err)
		}
		if _, err := j.Append(ctx, actor, c.low, 1, crashEntries(actor, 1, 1)); !errors.Is(err, journal.ErrFenced) {
			t.Fatalf("Append(token %d) after %d: %v, want ErrFenced", c.low, c.high, err)
		}
		if tl, err := j.Tail(ctx, actor); err != nil || tl != (journal.Tail{Seq: 1, Token: c.high}) {
			t.Fatalf("Tail = %+v, %v; want seq 1 token %d", tl, err, c.high)
		}
	}
}
