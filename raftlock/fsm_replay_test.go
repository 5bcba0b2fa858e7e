package raftlock

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/smtest"
)

var replaySeed = flag.Uint64("seed", 0, "first seed of TestFSMReplaysLikeStateMachines (0: from the clock)")

// TestFSMReplaysLikeStateMachines: random command sequences (smtest.Gen),
// in Raft entries of up to four commands and ApplyBatch calls of up to
// three entries, give on the fsm exactly the results and the state that
// the bare state machines give over kv.Mem (smtest.Replica): the
// dispatcher, the overlay and fsm.db add nothing and lose nothing. The fsm
// runs three times: flushing at its usual bounds, flushing after every
// batch, and restored from a snapshot of the second taken mid-sequence
// (the real one: the bbolt file, Persist and Restore) before applying the
// rest. No Raft and no network: the entries are handed to ApplyBatch as
// Raft would.
func TestFSMReplaysLikeStateMachines(t *testing.T) {
	t.Parallel()
	first := *replaySeed
	if first == 0 {
		first = uint64(time.Now().UnixNano())
	}
	t.Logf("first seed %d (replay with -seed %d)", first, first)
	for i := range uint64(6) {
		seed := first + i
		t.Run(fmt.Sprint(seed), func(t *testing.T) { replayOnFSM(t, seed, 400) })
	}
}

// replayEntry is one Raft entry of the replay: its commands, with the
// results the bare state machines gave.
type replayEntry struct {
	stamp int64
	cmds  [][]byte
	want  []result
}

func replayOnFSM(t *testing.T, seed uint64, n int) {
	// The reference starts at an empty fsm's clock, 0: the first stamp
	// may be behind t0 (a late leader's), and applies at that stamp.
	gen, ref := smtest.NewGen(seed, t0.UnixNano()), smtest.NewReplica(0)
	var entries []replayEntry
	for i := range n {
		c := gen.Next()
		res, err := ref.Apply(c)
		if err != nil {
			t.Fatal(err)
		}
		gen.Observe(c, res)
		want := result{value: res.Value, text: string(res.Session)}
		if res.Rule != nil {
			want = resultOf(res.Rule)
		}
		raw := encodeCommand(smCommand(c, cmdID{"replay", uint64(i + 1)}))
		// Commands share an entry, as the committer batches them,
		// when they share a stamp; a leader-start comes first in its
		// entry (its prev is the clock before the entry).
		last := len(entries) - 1
		if last < 0 || entries[last].stamp != c.Stamp || c.Op == smtest.LeaderStart || len(entries[last].cmds) == 4 {
			entries = append(entries, replayEntry{stamp: c.Stamp})
			last++
		}
		entries[last].cmds = append(entries[last].cmds, raw)
		entries[last].want = append(entries[last].want, want)
	}

	usual, everyBatch, restored := newTestFSM(t), newTestFSM(t), newTestFSM(t)
	everyBatch.flushKeys = 1
	rng := rand.New(rand.NewPCG(seed, 1))
	cut := len(entries) / 2
	index := uint64(0)
	for len(entries) > 0 {
		k := min(1+rng.IntN(3), len(entries))
		if index < uint64(cut) && index+uint64(k) > uint64(cut) {
			k = cut - int(index) // the snapshot's place is between two batches
		}
		logs := make([]*raft.Log, k)
		for j, e := range entries[:k] {
			index++
			logs[j] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeBatch(time.Unix(0, e.stamp), e.cmds)}
		}
		fsms := []*fsm{usual, everyBatch}
		if index > uint64(cut) {
			fsms = append(fsms, restored)
		}
		for _, f := range fsms {
			resps := f.ApplyBatch(logs)
			for j, e := range entries[:k] {
				resp := resps[j].(*applyResponse)
				if resp.err != nil {
					t.Fatalf("entry %d: %v", logs[j].Index, resp.err)
				}
				for c, want := range e.want {
					if got := resp.results[c]; got != want {
						t.Fatalf("entry %d, command %d: %+v on the fsm, %+v on the bare state machines", logs[j].Index, c, got, want)
					}
				}
			}
		}
		entries = entries[k:]
		if index == uint64(cut) {
			snapshotInto(t, everyBatch, restored)
		}
	}
	want := ref.Dump()
	for name, f := range map[string]*fsm{"usual flushes": usual, "flush per batch": everyBatch, "restored mid-way": restored} {
		if got := fsmDump(t, f); got != want {
			t.Errorf("%s: the state differs from the bare state machines':\n%s", name, firstDiff(got, want))
		}
	}
}

// smCommand is c as a raftlock command.
func smCommand(c smtest.Cmd, id cmdID) command {
	ops := map[smtest.Op]op{smtest.CreateSession: opCreateSession, smtest.Renew: opRenew,
		smtest.DestroySession: opDestroySession, smtest.EndOwner: opEndOwner, smtest.Acquire: opAcquire,
		smtest.Release: opRelease, smtest.Reap: opReap, smtest.LeaderStart: opLeaderStart, smtest.Append: opAppend,
		smtest.SaveSnapshot: opSaveSnapshot, smtest.Truncate: opTruncate}
	return command{op: ops[c.Op], id: id, owner: c.Owner, ttl: time.Duration(c.TTL), session: c.Session,
		key: c.Key, token: c.Token, seq: c.Seq, records: c.Records}
}

// snapshotInto restores a snapshot of from into to, as a follower installs
// one.
func snapshotInto(t *testing.T, from, to *fsm) {
	t.Helper()
	snap, err := from.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := to.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
}

// fsmDump describes f's state as smtest.Replica.Dump does: the clock, the
// lock counters, and every record of the state machines' buckets (not the
// meta record nor the dedup table, which the bare machines do not have).
func fsmDump(t *testing.T, f *fsm) string {
	t.Helper()
	var b strings.Builder
	err := f.view(func(l *layers) error {
		m, err := unmarshalMeta(l.bucket(bMeta).Get(keyState))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "clock %d token %d sessions %d\n", m.time, m.locks.Token, m.locks.Sessions)
		ids := []bucketID{bSessions, bExpiry, bHeld, bLocks, bActors, bLog, bSnapshots}
		slices.SortFunc(ids, func(x, y bucketID) int { return bytes.Compare(allBuckets[x], allBuckets[y]) })
		for _, id := range ids {
			c := l.bucket(id).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				fmt.Fprintf(&b, "%s %x %x\n", allBuckets[id], k, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// firstDiff returns the first line where a and b differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
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
