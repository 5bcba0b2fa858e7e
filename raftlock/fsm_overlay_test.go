package raftlock

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	bolt "go.etcd.io/bbolt"
)

// model is what a bucket should read as: key -> value.
type model map[string]string

func (m model) sorted() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestOverlayMergedCursor: Get, ForEach, Seek and Next, over the whole
// bucket and within a prefix, over two overlays and a bbolt bucket read
// exactly as the bucket with the lower layers' changes applied, then the
// upper's (values replaced, tombstones hiding records), in key order; for
// each way an overlay orders a bucket (per-actor groups for log, a tree
// for held, sorted on demand for actors). After writing the lower overlay
// into the file, the view is unchanged. Keys are drawn from a small space
// so that the layers overlap a lot.
func TestOverlayMergedCursor(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for seed := range uint64(40) {
		for _, b := range []bucketID{bLog, bHeld, bActors} {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, allBuckets[b]), func(t *testing.T) {
				testMergedCursor(t, db, b, rand.New(rand.NewPCG(seed, uint64(b))))
			})
		}
	}
}

// keySpace is the keys a test draws from for bucket b, every key a seek
// may start from (drawn ones and others between them), and the prefixes
// to scan.
func keySpace(b bucketID) (keys, seeks, prefixes [][]byte) {
	if b == bLog { // entry keys of three actors, seqs 1..6
		for _, a := range []string{"a", "ab", "b"} {
			p := journalsm.EntryPrefix(a)
			prefixes = append(prefixes, p)
			seeks = append(seeks, p, journalsm.EntryKey(p, 0), journalsm.EntryKey(p, 7), append(bytes.Clone(p), 0xff))
			for seq := range uint64(6) {
				keys = append(keys, journalsm.EntryKey(p, seq+1))
			}
		}
		return keys, append(seeks, keys...), prefixes
	}
	for a := byte('a'); a < 'a'+6; a++ {
		prefixes = append(prefixes, []byte{a})
		seeks = append(seeks, []byte{a}, []byte{a, 0}, []byte{a, 0xff})
		for c := byte('a'); c < 'a'+6; c++ {
			keys = append(keys, []byte{a, c})
		}
	}
	return keys, append(append(seeks, keys...), []byte{0}, []byte{0xff}), prefixes
}

func testMergedCursor(t *testing.T, db *bolt.DB, b bucketID, rng *rand.Rand) {
	space, seeks, prefixes := keySpace(b)
	key := func() []byte { return bytes.Clone(space[rng.IntN(len(space))]) }
	want := model{}
	// The file: a fresh bucket with random records.
	if err := db.Update(func(tx *bolt.Tx) error {
		_ = tx.DeleteBucket(allBuckets[b])
		bk, err := tx.CreateBucket(allBuckets[b])
		if err != nil {
			return err
		}
		for range rng.IntN(30) {
			k, v := key(), fmt.Sprintf("file-%d", rng.IntN(1000))
			want[string(k)] = v
			if err := bk.Put(k, []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Two overlays of random writes and deletes, lower first.
	layer := func(name string) *overlay {
		o := newOverlay(nil)
		for range rng.IntN(30) {
			k := key()
			if rng.IntN(3) == 0 {
				o.set(b, k, nil, true)
				delete(want, string(k))
				continue
			}
			v := fmt.Sprintf("%s-%d", name, rng.IntN(1000))
			o.set(b, k, []byte(v), false)
			want[string(k)] = v
		}
		return o
	}
	lower := layer("lower")
	upper := layer("upper")
	check := func(stage string, fl *overlay) {
		t.Helper()
		if err := db.View(func(tx *bolt.Tx) error {
			l := &layers{top: upper, flushing: fl, tx: tx}
			checkBucket(t, stage, l.bucket(b), want, seeks, prefixes)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check("both overlays", lower)
	// The flush writes the lower overlay into the file; while the FSM
	// goroutine has not dropped it, it is read over its own copy.
	if err := db.Update(lower.writeTo); err != nil {
		t.Fatal(err)
	}
	check("lower written, still layered", lower)
	check("lower written and dropped", nil)
}

// checkBucket compares every way of reading bk with want.
func checkBucket(t *testing.T, stage string, bk bkt, want model, seeks, prefixes [][]byte) {
	t.Helper()
	keys := want.sorted()
	var got []string
	if err := bk.ForEach(func(k, v []byte) error {
		got = append(got, fmt.Sprintf("%x=%s", k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var exp []string
	for _, k := range keys {
		exp = append(exp, fmt.Sprintf("%x=%s", k, want[k]))
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("%s: ForEach = %v\nwant %v", stage, got, exp)
	}
	// From every seek key, three steps: over the whole bucket, and within
	// every prefix.
	for _, prefix := range append([][]byte{nil}, prefixes...) {
		var in []string
		for _, k := range keys {
			if strings.HasPrefix(k, string(prefix)) {
				in = append(in, k)
			}
		}
		for _, from := range seeks {
			i, _ := slices.BinarySearch(in, string(from))
			cur := bk.PrefixCursor(prefix)
			k, v := cur.Seek(from)
			for step := 0; step < 3; step++ {
				if i+step >= len(in) {
					if k != nil {
						t.Fatalf("%s: prefix %x: Seek(%x)+%d = %x, want the end", stage, prefix, from, step, k)
					}
					break
				}
				if wk := in[i+step]; string(k) != wk || string(v) != want[wk] {
					t.Fatalf("%s: prefix %x: Seek(%x)+%d = %x=%s, want %x=%s", stage, prefix, from, step, k, v, wk, want[wk])
				}
				k, v = cur.Next()
			}
			if k, _ := bk.PrefixCursor(prefix).First(); len(in) == 0 && k != nil || len(in) > 0 && string(k) != in[0] {
				t.Fatalf("%s: prefix %x: First = %x, want %q", stage, prefix, k, in)
			}
			if wv, ok := want[string(from)]; string(bk.Get(from)) != wv || (bk.Get(from) != nil) != ok {
				t.Fatalf("%s: Get(%x) = %q, want %q (present %v)", stage, from, bk.Get(from), wv, ok)
			}
		}
	}
}

// dumpState reads every bucket of f as the state machine sees it.
func dumpState(t *testing.T, f *fsm) []string {
	t.Helper()
	var out []string
	if err := f.view(func(l *layers) error {
		for b := range numBuckets {
			if err := l.bucket(b).ForEach(func(k, v []byte) error {
				out = append(out, fmt.Sprintf("%s/%x=%x", allBuckets[b], k, v))
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// randomCommands returns a stream of commands over a few sessions, locks
// and actors, with some commands repeated (retries, flagged as the
// committer flags them) and stamps that move forward unevenly, so that
// sessions lapse, locks change hands, appends conflict or are fenced, the
// dedup table is swept, and some retries come after their result was
// forgotten.
type cmdStream struct {
	rng  *rand.Rand
	at   time.Time
	seq  uint64
	sess []lock.SessionID
	sent [][]byte
	f    *fsm // where to read an actor's tail and token, to mostly append right
}

func (s *cmdStream) next() (time.Time, []byte) {
	born := s.at // the clock of a replica that has applied the last entry
	s.at = s.at.Add(time.Duration(s.rng.IntN(400)) * time.Millisecond)
	if len(s.sent) > 0 && s.rng.IntN(10) == 0 {
		retry := bytes.Clone(s.sent[s.rng.IntN(len(s.sent))])
		markRetry(retry)
		return s.at, retry
	}
	actor := fmt.Sprintf("t/%d", s.rng.IntN(5))
	var sess lock.SessionID
	if len(s.sess) > 0 {
		sess = s.sess[s.rng.IntN(len(s.sess))]
	}
	st, _ := s.f.actorState(actor)
	tail := st.Tail
	token := st.Token + uint64(s.rng.IntN(3))
	if s.rng.IntN(8) == 0 {
		token = uint64(s.rng.IntN(int(token) + 1)) // maybe fenced
	}
	var c command
	switch s.rng.IntN(10) {
	case 0, 1:
		if s.rng.IntN(2) == 0 {
			c = command{op: opRenew, session: sess}
			break
		}
		c = command{op: opCreateSession, owner: fmt.Sprintf("o%d", s.rng.IntN(3)), ttl: time.Duration(2+s.rng.IntN(10)) * time.Second}
	case 2:
		c = command{op: opAcquire, session: sess, key: actor}
	case 3:
		if info, held, _ := s.f.holder(actor, 0); held && s.rng.IntN(3) > 0 {
			sess = info.Session
		}
		c = command{op: opRelease, session: sess, key: actor}
	case 4:
		c = command{op: opSaveSnapshot, key: actor, token: token, seq: tail,
			records: [][]byte{journal.MarshalSnapshot(journal.Snapshot{Seq: tail, Data: []byte("s")})}}
	case 5:
		c = command{op: opTruncate, key: actor, token: token, seq: uint64(s.rng.IntN(int(st.SnapshotSeq) + 1))}
	case 6:
		c = command{op: []op{opReap, opLeaderStart, opEndOwner}[s.rng.IntN(3)], owner: "o1", session: sess}
	default:
		n := 1 + s.rng.IntN(3)
		recs := make([][]byte, n)
		for i := range recs {
			recs[i] = journal.MarshalEntry(journal.Entry{Seq: tail + uint64(i) + 1, Actor: actor, Token: token, Payload: []byte{byte(i)}})
		}
		c = command{op: opAppend, key: actor, token: token, seq: tail, records: recs}
	}
	s.seq++
	c.id, c.born = cmdID{"stream", s.seq}, born.UnixNano()
	raw := encodeCommand(c)
	s.sent = append(s.sent, raw)
	return s.at, raw
}

// TestFSMFlushTimingInvisible: the same entries applied to a state machine
// that flushes after every batch and to one that never flushes give the
// same result for every command and the same state, so replicas that
// flush at different moments agree; and a snapshot of each restores to
// that state.
func TestFSMFlushTimingInvisible(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			eager, lazy := newTestFSM(t), newTestFSM(t)
			eager.flushKeys = 1
			lazy.flushKeys, lazy.flushBytes = 1<<30, 1<<30
			for _, f := range []*fsm{eager, lazy} {
				// Swept by chunks of 2 results, or of 156 ms.
				f.dedupWindow, f.dedupRetention = 128, int64(10*time.Second)
			}
			s := &cmdStream{rng: rand.New(rand.NewPCG(seed, 7)), at: t0, f: lazy}
			ok, unknown := map[op]int{}, 0
			for index := uint64(1); index <= 600; index++ {
				// Commands of one entry are drawn before it is applied:
				// some of them conflict with each other.
				stamp, raw := s.next()
				cmds := [][]byte{raw}
				for range s.rng.IntN(3) {
					_, more := s.next()
					cmds = append(cmds, more)
				}
				logs := testLogs(index, stamp, cmds...)
				re := eager.ApplyBatch(logs)[0].(*applyResponse)
				rl := lazy.ApplyBatch(logs)[0].(*applyResponse)
				if re.err != nil || rl.err != nil || !slices.Equal(re.results, rl.results) {
					t.Fatalf("entry %d: eager %+v (%v), lazy %+v (%v)", index, re.results, re.err, rl.results, rl.err)
				}
				for i, r := range rl.results {
					if r.code == codeUnknown {
						unknown++
					}
					if r.code == codeOK {
						ok[decodeOp(cmds[i])]++
						if decodeOp(cmds[i]) == opCreateSession {
							s.sess = append(s.sess, lock.SessionID(r.text))
						}
					}
				}
			}
			// The stream must exercise the rules, not only their errors.
			for _, o := range []op{opAppend, opAcquire, opRelease, opRenew, opSaveSnapshot, opTruncate} {
				if ok[o] < 3 {
					t.Fatalf("only %d successful %v commands: %v", ok[o], o, ok)
				}
			}
			if unknown == 0 {
				t.Fatal("no retry came after its result was forgotten")
			}
			if eager.flushes.Load() == 0 || lazy.flushes.Load() != 0 {
				t.Fatalf("flushes: eager %d, lazy %d", eager.flushes.Load(), lazy.flushes.Load())
			}
			want := dumpState(t, lazy)
			if got := dumpState(t, eager); !slices.Equal(got, want) {
				t.Fatalf("states differ:\neager %v\nlazy  %v", got, want)
			}
			dedupResults(t, eager)
			dedupResults(t, lazy)
			for _, f := range []*fsm{eager, lazy} {
				g := newTestFSM(t)
				if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
					t.Fatal(err)
				}
				if got := dumpState(t, g); !slices.Equal(got, want) {
					t.Fatalf("restored state differs:\ngot  %v\nwant %v", got, want)
				}
				dedupResults(t, g)
			}
		})
	}
}

func decodeOp(raw []byte) op {
	c, err := decodeCommand(raw)
	if err != nil {
		return 0
	}
	return c.op
}

// snapshotBytes takes an FSM snapshot of f and returns the file it writes.
func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// inFile reads key of bucket b from fsm.db alone, without the overlays.
func inFile(t *testing.T, f *fsm, b bucketID, key []byte) []byte {
	t.Helper()
	var v []byte
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(allBuckets[b]).Get(key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFSMSnapshotFlushes: Snapshot writes the overlay into fsm.db before
// it opens its read transaction, so the snapshot holds every applied
// entry although nothing had reached the size bounds.
func TestFSMSnapshotFlushes(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	d := &fsmDriver{t: t, f: f}
	d.one(t0, command{op: opAppend, key: "t/s", token: 1, records: [][]byte{journal.MarshalEntry(journal.Entry{Seq: 1, Actor: "t/s", Token: 1})}})
	if f.ov.empty() || inFile(t, f, bActors, []byte("t/s")) != nil || f.flushes.Load() != 0 {
		t.Fatal("the append is not (only) in the overlay")
	}
	data := snapshotBytes(t, f)
	if !f.ov.empty() || f.fl != nil || inFile(t, f, bActors, []byte("t/s")) == nil || f.flushes.Load() != 1 {
		t.Fatalf("after Snapshot: overlay empty %v, flushing %v, flushes %d; want the append in fsm.db", f.ov.empty(), f.fl != nil, f.flushes.Load())
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if st, err := g.actorState("t/s"); err != nil || st.Tail != 1 {
		t.Fatalf("restored actor %+v, %v; want tail 1", st, err)
	}
	// Nothing to flush: the next snapshot flushes nothing.
	snapshotBytes(t, f)
	if n := f.flushes.Load(); n != 1 {
		t.Fatalf("flushes = %d after a snapshot with nothing applied", n)
	}
}

// blockFlush makes f's next flush wait, before it writes, until the
// returned release is called; started is closed when it waits.
func blockFlush(f *fsm) (started <-chan struct{}, release func()) {
	s, r := make(chan struct{}), make(chan struct{})
	f.flushHook = func() error {
		close(s)
		<-r
		return nil
	}
	return s, func() { close(r) }
}

func appendOne(actor string, seq uint64, payload string) command {
	e := journal.Entry{Seq: seq, Actor: actor, Token: 1, Payload: []byte(payload)}
	return command{op: opAppend, key: actor, token: 1, seq: seq - 1, records: [][]byte{journal.MarshalEntry(e)}}
}

func payloads(t *testing.T, f *fsm, actor string) []string {
	t.Helper()
	es, err := f.readEntries(actor, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, string(e.Payload))
	}
	return out
}

// TestFSMReadsWhileFlushing: while a flush is running (held before it
// writes, then after it committed but before the FSM goroutine has seen
// it), reads and applies see every applied entry exactly once: the
// flushing overlay under the active one, over the file.
func TestFSMReadsWhileFlushing(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	d := &fsmDriver{t: t, f: f}
	started, release := blockFlush(f)
	f.flushKeys = 1 // the next batch fills the overlay
	d.one(t0, appendOne("t/r", 1, "a"))
	<-started
	f.flushKeys = 1 << 30 // FSM goroutine only (here: the test)
	f.mu.RLock()
	done, flushing := f.flushDone, f.fl
	f.mu.RUnlock()
	if flushing == nil || done == nil {
		t.Fatal("no flush running")
	}
	// An apply while the flush waits decides on the flushing overlay:
	// expected seq 1 is the tail, a second append at 0 conflicts.
	if r := d.one(t0, appendOne("t/r", 2, "b")); r.err() != nil || r.value != 2 {
		t.Fatalf("append during the flush: %+v", r)
	}
	if r := d.one(t0, appendOne("t/r", 1, "x")); !errors.Is(r.err(), journal.ErrConflict) {
		t.Fatalf("append at a seq held by the flushing overlay: %+v", r)
	}
	want := []string{"a", "b"}
	readers := make(chan []string, 4)
	for range 4 {
		go func() {
			es, _ := f.readEntries("t/r", 0)
			var got []string
			for _, e := range es {
				got = append(got, string(e.Payload))
			}
			readers <- got
		}()
	}
	for range 4 {
		if got := <-readers; !slices.Equal(got, want) {
			t.Fatalf("concurrent read during the flush = %v, want %v", got, want)
		}
	}
	if inFile(t, f, bLog, journalsm.EntryKey(journalsm.EntryPrefix("t/r"), 1)) != nil {
		t.Fatal("entry 1 in fsm.db before the flush wrote")
	}
	release()
	<-done // committed; the FSM goroutine has not dropped the overlay yet
	if f.fl == nil || inFile(t, f, bLog, journalsm.EntryKey(journalsm.EntryPrefix("t/r"), 1)) == nil {
		t.Fatal("after the commit: want entry 1 in fsm.db and still layered")
	}
	if got := payloads(t, f, "t/r"); !slices.Equal(got, want) {
		t.Fatalf("read with the flushed overlay over its own copy = %v, want %v", got, want)
	}
	if st, err := f.actorState("t/r"); err != nil || st.Tail != 2 {
		t.Fatalf("Tail = %+v, %v", st, err)
	}
	// The next apply drops the flushed overlay.
	d.one(t0, appendOne("t/r", 3, "c"))
	if f.fl != nil {
		t.Fatal("the flushed overlay was not dropped")
	}
	if got := payloads(t, f, "t/r"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("read after the flush = %v", got)
	}
}

// TestFSMFlushFailure: a flush that fails stops the state machine with
// ErrStateMachine, like a failed apply: the next entries are answered with
// it and waiters wake up with it.
func TestFSMFlushFailure(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t)
	d := &fsmDriver{t: t, f: f}
	boom := errors.New("disk on fire")
	f.flushHook = func() error { return boom }
	f.flushKeys = 1
	d.one(t0, command{op: opNoop})
	if err := f.WaitApplied(t.Context(), 99, nil); !errors.Is(err, ErrStateMachine) || !errors.Is(err, boom) {
		t.Fatalf("WaitApplied after a failed flush: %v", err)
	}
	resp := f.ApplyBatch(testLogs(2, t0, encodeCommand(command{op: opNoop})))[0].(*applyResponse)
	if !errors.Is(resp.err, ErrStateMachine) {
		t.Fatalf("apply after a failed flush: %+v", resp)
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrStateMachine) {
		t.Fatalf("Snapshot after a failed flush: %v", err)
	}
}

// TestFSMRestoreClearsOverlay: Restore replaces the whole state, the
// overlays included (and a flush still running, which writes to the old
// file, does not leak into the new one); the dedup index is the
// snapshot's.
func TestFSMRestoreClearsOverlay(t *testing.T) {
	t.Parallel()
	src := newTestFSM(t)
	sd := &fsmDriver{t: t, f: src}
	sd.one(t0, appendOne("t/src", 1, "s")) // id driver/1 in src
	data := snapshotBytes(t, src)

	f := newTestFSM(t)
	d := &fsmDriver{t: t, f: f}
	started, release := blockFlush(f)
	f.flushKeys = 1
	d.one(t0, appendOne("t/old", 1, "flushing")) // driver/1 in f, being flushed
	<-started
	f.flushKeys = 1 << 30
	d.one(t0, appendOne("t/old", 2, "active")) // driver/2, in the active overlay

	restored := make(chan error, 1)
	go func() { restored <- f.Restore(io.NopCloser(bytes.NewReader(data))) }()
	release()
	if err := <-restored; err != nil {
		t.Fatal(err)
	}
	if !f.ov.empty() || f.fl != nil {
		t.Fatal("overlays survived Restore")
	}
	if got := payloads(t, f, "t/old"); len(got) != 0 {
		t.Fatalf("t/old after Restore = %v, want nothing", got)
	}
	if got := payloads(t, f, "t/src"); !slices.Equal(got, []string{"s"}) {
		t.Fatalf("t/src after Restore = %v", got)
	}
	if len(dumpState(t, f)) != len(dumpState(t, src)) {
		t.Fatalf("restored state:\n%v\nwant\n%v", dumpState(t, f), dumpState(t, src))
	}
	// driver/1 is remembered with src's result (tail 1); driver/2 was
	// remembered only in the dropped overlay, so it runs again: it
	// expects t/old's tail at 1, which is now 0, and conflicts.
	f2 := &fsmDriver{t: t, f: f, index: 10}
	if r := f2.one(t0, appendOne("t/src", 1, "s")); r.err() != nil || r.value != 1 {
		t.Fatalf("retry of src's driver/1 = %+v, want its remembered tail 1", r)
	}
	if r := f2.one(t0, appendOne("t/old", 2, "active")); !errors.Is(r.err(), journal.ErrConflict) {
		t.Fatalf("driver/2 (forgotten with the overlay) = %+v, want it run again: conflict", r)
	}
}

// TestFSMRestoreFormat1: a snapshot in format 1 (an earlier release's:
// newest entries in "recent", the dedup table in "dedup" and "deduplog")
// restores into the same state: every entry, and the same remembered
// commands, which later sweeps forget in the same order.
func TestFSMRestoreFormat1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := journalsm.EntryPrefix("t/v1")
	rec := func(seq uint64) []byte {
		return journal.MarshalEntry(journal.Entry{Seq: seq, Actor: "t/v1", Token: 1, Payload: []byte(fmt.Sprint(seq))})
	}
	// Commands o/1..o/3 appended seqs 1..3; the window kept o/2 and o/3.
	m := metaOfFormat12(1, 7, uint64(t0.UnixNano()), 0, 0, 3, 2)
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "sessions", "expiry", "held", "locks", "actors", "log", "recent", "snapshots", "dedup", "deduplog"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		put := func(b string, k, v []byte) {
			if err == nil {
				err = tx.Bucket([]byte(b)).Put(k, v)
			}
		}
		put("meta", keyState, m)
		put("actors", []byte("t/v1"), journalsm.MarshalActor(journal.ActorState{Tail: 3, Token: 1}))
		put("log", journalsm.EntryKey(prefix, 1), rec(1))
		put("recent", journalsm.EntryKey(prefix, 2), rec(2))
		put("recent", journalsm.EntryKey(prefix, 3), rec(3))
		for seq := uint64(2); seq <= 3; seq++ {
			dk := dedupKey(cmdID{"o", seq})
			put("dedup", dk, encodeResult(result{value: seq}))
			put("deduplog", u64Key(seq), dk)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	f := newTestFSM(t)
	f.dedupWindow, f.dedupRetention = 2, 0 // sweeps as soon as a result is added
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := payloads(t, f, "t/v1"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("entries after restoring format 1: %v", got)
	}
	if n := dedupResults(t, f); n != 2 {
		t.Fatalf("dedup table after restoring format 1 holds %d results", n)
	}
	apply := func(seq, expected uint64) result {
		raw := appendCmd(cmdID{"o", seq}, "t/v1", 1, expected, fmt.Sprint(expected+1))
		return f.ApplyBatch(testLogs(8+seq, t0, raw))[0].(*applyResponse).results[0]
	}
	// o/3 is remembered (its tail 3), o/1 is not: it runs and conflicts.
	if r := apply(3, 2); r.err() != nil || r.value != 3 {
		t.Fatalf("retry of o/3: %+v, want the remembered tail 3", r)
	}
	if r := apply(1, 0); !errors.Is(r.err(), journal.ErrConflict) {
		t.Fatalf("retry of o/1: %+v, want it run again: conflict", r)
	}
	// That result pushed o/2 out (window 2): o/3 and o/1 remain.
	if r := apply(2, 1); !errors.Is(r.err(), journal.ErrConflict) {
		t.Fatalf("retry of o/2 after the sweep: %+v, want it run again: conflict", r)
	}
	if n := dedupResults(t, f); n != 2 {
		t.Fatalf("dedup table holds %d results, want the window", n)
	}
	if r := apply(4, 3); r.err() != nil || r.value != 4 {
		t.Fatalf("append after restoring format 1: %+v", r)
	}
	if got := payloads(t, f, "t/v1"); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("entries: %v", got)
	}
}

// metaOfFormat12 is a meta record of format 1 or 2: the format, then
// applied index, clock, last token, last session number, dedup numbers
// issued and dedup entries held.
func metaOfFormat12(format byte, fields ...uint64) []byte {
	b := []byte{format}
	for _, v := range fields {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// TestFSMRestoreFormat2: a snapshot in format 2 (an earlier release's:
// dedup results without the time they were applied) restores with every
// result it remembered, each kept for the retention from the snapshot's
// clock; the results it had forgotten (by count) count as forgotten at
// that clock, so their retries are answered "outcome unknown".
func TestFSMRestoreFormat2(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v2.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := journalsm.EntryPrefix("t/v2")
	rec := func(seq uint64) []byte {
		return journal.MarshalEntry(journal.Entry{Seq: seq, Actor: "t/v2", Token: 1, Payload: []byte(fmt.Sprint(seq))})
	}
	// Commands o/1..o/3 appended seqs 1..3; the window kept o/2 and o/3,
	// both in chunk 0.
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		put := func(b []byte, k, v []byte) {
			if err == nil {
				err = tx.Bucket(b).Put(k, v)
			}
		}
		put(bucketMeta, keyState, metaOfFormat12(2, 7, uint64(t0.UnixNano()), 0, 0, 3, 2))
		put(bucketActors, []byte("t/v2"), journalsm.MarshalActor(journal.ActorState{Tail: 3, Token: 1}))
		var chunk []byte
		for seq := uint64(1); seq <= 3; seq++ {
			put(bucketLog, journalsm.EntryKey(prefix, seq), rec(seq))
			if seq > 1 {
				chunk = appendBytes(appendBytes(chunk, dedupKey(cmdID{"o", seq})), encodeResult(result{value: seq}))
			}
		}
		put(bucketDedup, u64Key(0), chunk)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	f := newTestFSM(t)
	f.dedupWindow, f.dedupRetention = 2, int64(10*time.Second)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := payloads(t, f, "t/v2"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("entries after restoring format 2: %v", got)
	}
	d := &fsmDriver{t: t, f: f, index: 7}
	retry := func(at time.Time, seq uint64) result {
		c := command{op: opAppend, id: cmdID{"o", seq}, born: t0.Add(-time.Second).UnixNano(), key: "t/v2", token: 1, seq: seq - 1,
			records: [][]byte{rec(seq)}, retry: true}
		d.index++
		return f.ApplyBatch(testLogs(d.index, at, encodeCommand(c)))[0].(*applyResponse).results[0]
	}
	// Within the retention from the snapshot's clock, o/2 and o/3 are
	// remembered however many commands came since.
	for i := range 10 {
		d.one(t0.Add(time.Duration(i)*time.Second/2), command{op: opCreateSession, owner: "o", ttl: time.Hour})
	}
	if r := retry(t0.Add(5*time.Second), 2); r.err() != nil || r.value != 2 {
		t.Fatalf("retry of o/2 within the retention: %+v, want the remembered tail 2", r)
	}
	// o/1 was forgotten before the snapshot: its retry may have been
	// applied, and is not run.
	if r := retry(t0.Add(5*time.Second), 1); !errors.Is(r.err(), ErrUnknownOutcome) {
		t.Fatalf("retry of o/1, forgotten by format 2: %+v (%v), want ErrUnknownOutcome", r, r.err())
	}
	// Past both bounds, o/3 is forgotten too.
	for i := range 4 {
		d.one(t0.Add(time.Minute+time.Duration(i)*time.Second), command{op: opCreateSession, owner: "o", ttl: time.Hour})
	}
	if r := retry(t0.Add(time.Minute+5*time.Second), 3); !errors.Is(r.err(), ErrUnknownOutcome) {
		t.Fatalf("retry of o/3 past both bounds: %+v (%v), want ErrUnknownOutcome", r, r.err())
	}
	if got := payloads(t, f, "t/v2"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("entries: %v", got)
	}
	dedupResults(t, f)
}
