package smtest

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

var seedFlag = flag.Uint64("seed", 0, "first seed of the random command sequences (0: from the clock)")

// firstSeed returns -seed, or a seed from the clock, and logs it.
func firstSeed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("first seed %d (replay with -seed %d)", s, s)
	return s
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

const (
	sequences = 24  // per test run
	length    = 600 // commands per sequence
)

// run generates a sequence of n commands with seed on a fresh replica,
// checking each result against the rules as the state before it tells
// them (checkRules), and returns the commands, their results and the
// replica. outcomes counts the results by kind.
func run(t *testing.T, seed uint64, n int, outcomes map[string]int) ([]Cmd, []Result, *Replica) {
	t.Helper()
	g, r := NewGen(seed, t0), NewReplica(t0)
	cmds, results := make([]Cmd, 0, n), make([]Result, 0, n)
	var granted uint64 // the highest token granted so far
	for i := range n {
		c := g.Next()
		before := observe(t, r, c)
		res, err := r.Apply(c)
		if err != nil {
			t.Fatalf("seed %d, command %d %v: %v", seed, i, c, err)
		}
		if msg := checkRules(c, res, before, &granted); msg != "" {
			t.Fatalf("seed %d, command %d %v -> %v: %s", seed, i, c, res, msg)
		}
		if c.Op == Reap && r.Locks().Lapsed(r.Clock) {
			t.Fatalf("seed %d, command %d: a session has lapsed after reap", seed, i)
		}
		outcomes[outcome(c, res)]++
		g.Observe(c, res)
		cmds, results = append(cmds, c), append(results, res)
	}
	return cmds, results, r
}

// seen is what the state said, before a command, about the command's key.
type seen struct {
	holder lock.LockInfo
	held   bool // a lock on the key whose session is alive at the command's clock
	actor  journal.ActorState
}

// observe reads, without changing anything, what the rules for c depend on.
func observe(t *testing.T, r *Replica, c Cmd) seen {
	var s seen
	var err error
	if s.holder, s.held, err = r.Locks().Holder(c.Key, r.Now(c)); err != nil {
		t.Fatal(err)
	}
	if s.actor, err = r.Journals(nil).State(c.Key); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkRules returns what is wrong with res as c's result, given what the
// state said before it, or "".
func checkRules(c Cmd, res Result, before seen, granted *uint64) string {
	switch c.Op {
	case Acquire:
		var held *lock.HeldError
		switch {
		case errors.As(res.Rule, &held):
			if !before.held || before.holder.Session == c.Session || held.Token != before.holder.Token || held.Holder != before.holder.Owner {
				return fmt.Sprintf("held error, but the lock was %+v (held %v)", before.holder, before.held)
			}
		case res.Rule != nil:
		case before.held && before.holder.Session == c.Session:
			if res.Value != before.holder.Token {
				return fmt.Sprintf("re-acquire got token %d, the lock has %d", res.Value, before.holder.Token)
			}
		case before.held:
			return fmt.Sprintf("granted a lock held by %+v", before.holder)
		default:
			if res.Value <= *granted || res.Value <= before.actor.Token {
				return fmt.Sprintf("new token %d not above every grant (%d) and the journal's token (%d)", res.Value, *granted, before.actor.Token)
			}
			*granted = res.Value
		}
	case Append, SaveSnapshot, Truncate:
		if res.Rule != nil {
			return ""
		}
		if c.Token < before.actor.Token {
			return fmt.Sprintf("token %d accepted below the journal's %d", c.Token, before.actor.Token)
		}
		if before.held && c.Token < before.holder.Token {
			return fmt.Sprintf("token %d accepted below the lock's %d", c.Token, before.holder.Token)
		}
		if c.Op == Append && (c.Seq != before.actor.Tail || res.Value != c.Seq+uint64(len(c.Records))) {
			return fmt.Sprintf("append after %d returned tail %d; the tail was %d", c.Seq, res.Value, before.actor.Tail)
		}
	}
	return ""
}

// outcome names the kind of a result, to check that the sequences reach
// every rule.
func outcome(c Cmd, res Result) string {
	kind := "ok"
	for _, s := range []struct {
		err  error
		name string
	}{{journal.ErrFenced, "fenced"}, {journal.ErrConflict, "conflict"}, {journal.ErrInvalid, "invalid"},
		{lock.ErrHeld, "held"}, {lock.ErrSessionExpired, "expired"}, {lock.ErrNotHeld, "not held"}, {lock.ErrInvalid, "invalid"}} {
		if errors.Is(res.Rule, s.err) {
			kind = s.name
		}
	}
	return c.Op.String() + ": " + kind
}

// TestReplicasAgree: random command sequences, each checked against the
// rules as it is generated on one replica, give the same results and the
// same state on a second replica that replays them, and on a third that
// starts from a snapshot of the second taken mid-sequence and applies the
// rest.
func TestReplicasAgree(t *testing.T) {
	t.Parallel()
	first := firstSeed(t)
	outcomes := map[string]int{}
	for i := range uint64(sequences) {
		seed := first + i
		cmds, results, a := run(t, seed, length, outcomes)

		b, c := NewReplica(t0), NewReplica(t0)
		cut := 1 + int(seed%uint64(len(cmds)-1)) // the snapshot's place: any, per seed
		for j, cmd := range cmds {
			res, err := b.Apply(cmd)
			if err != nil {
				t.Fatalf("seed %d, replay of command %d: %v", seed, j, err)
			}
			if res.String() != results[j].String() {
				t.Fatalf("seed %d, command %d %v: %v on one replica, %v on another", seed, j, cmd, results[j], res)
			}
			if j < cut {
				if _, err := c.Apply(cmd); err != nil {
					t.Fatal(err)
				}
				if j == cut-1 {
					c = c.Snapshot()
				}
				continue
			}
			if _, err := c.Apply(cmd); err != nil {
				t.Fatal(err)
			}
		}
		if da, db := a.Dump(), b.Dump(); da != db {
			t.Fatalf("seed %d: replicas differ after %d commands:\n%s", seed, len(cmds), diff(da, db))
		}
		if db, dc := b.Dump(), c.Dump(); db != dc {
			t.Fatalf("seed %d: a snapshot after %d commands, restored and replayed, differs from the full replay:\n%s", seed, cut, diff(db, dc))
		}
	}
	// The sequences must reach the rules, or agreeing proves little.
	for _, want := range []string{"acquire: ok", "acquire: held", "acquire: expired", "release: ok", "release: not held",
		"renew: ok", "renew: expired", "append: ok", "append: fenced", "append: conflict", "append: invalid",
		"save-snapshot: ok", "save-snapshot: fenced", "save-snapshot: invalid", "truncate: ok", "truncate: fenced",
		"truncate: invalid"} {
		if outcomes[want] == 0 {
			t.Errorf("no command ended %q in %d sequences", want, sequences)
		}
	}
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("%6d %s", outcomes[k], k)
	}
}

// diff returns the first lines where a and b differ.
func diff(a, b string) string {
	la, lb := splitLines(a), splitLines(b)
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i+1, x, y)
		}
	}
	return "(no line differs)"
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		s = s[min(i+1, len(s)):]
	}
	return out
}
