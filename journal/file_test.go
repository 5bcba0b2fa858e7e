package journal_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

func tempPath(t *testing.T) string { return filepath.Join(t.TempDir(), "journal.db") }

func openFile(t *testing.T, path string, opts journal.FileOptions) *journal.FileJournal {
	t.Helper()
	j, err := journal.OpenFile(path, opts)
	if err != nil {
		t.Fatalf("OpenFile(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestFileConformance(t *testing.T) {
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			return openFile(t, tempPath(t), journal.DefaultFileOptions())
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			j := openFile(t, old.(*journal.FileJournal).Path(), journal.DefaultFileOptions())
			if rec := j.Recovered(); len(rec) != 0 {
				t.Fatalf("clean reopen reported corruption: %v", rec)
			}
			return j
		},
	})
}

func TestFileOptionsValidate(t *testing.T) {
	if err := journal.DefaultFileOptions().Validate(); err != nil {
		t.Fatalf("DefaultFileOptions().Validate() = %v", err)
	}
	err := journal.FileOptions{}.Validate()
	if !errors.Is(err, journal.ErrInvalid) {
		t.Fatalf("zero FileOptions: err = %v, want ErrInvalid", err)
	}
	for _, field := range []string{"LockTimeout", "MaxBatch", "FileMode", "MessageIDRetention"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("zero FileOptions error %q does not name %s", err, field)
		}
	}
	if _, err := journal.OpenFile(tempPath(t), journal.FileOptions{}); !errors.Is(err, journal.ErrInvalid) {
		t.Fatalf("OpenFile with zero options: err = %v, want ErrInvalid", err)
	}
}

// TestFileLocked checks that a second open of the same file fails with
// ErrLocked naming the path, within the timeout. flock(2) locks belong to
// the open file description, so a second open in the same process conflicts
// just as another process would (TestCrashRecovery checks the
// cross-process case against its child).
func TestFileLocked(t *testing.T) {
	path := tempPath(t)
	first := openFile(t, path, journal.DefaultFileOptions())
	opts := journal.DefaultFileOptions()
	opts.LockTimeout = 200 * time.Millisecond
	start := time.Now()
	second, err := journal.OpenFile(path, opts)
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second OpenFile of a locked file succeeded")
	}
	if !errors.Is(err, journal.ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second OpenFile: err = %v, want ErrLocked naming %s", err, path)
	}
	if elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("second OpenFile failed after %v, want about the 200ms LockTimeout", elapsed)
	}
	// The failed open did not disturb the holder, and closing it frees the file.
	if _, err := first.Append(t.Context(), "a", 1, 0, []journal.Entry{{}}); err != nil {
		t.Fatalf("Append on the holder: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openFile(t, path, opts)
}

// corrupt rewrites raw bbolt values of a closed journal file.
func corrupt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// logKey mirrors the documented log key layout.
func logKey(actor string, seq uint64) []byte {
	k := []byte{byte(len(actor))} // one-byte uvarint for short actors
	k = append(k, actor...)
	return append(k, byte(seq>>56), byte(seq>>48), byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
}

// entryBucket returns the bucket ("log" or "recent") that holds the entry.
func entryBucket(t *testing.T, tx *bolt.Tx, actor string, seq uint64) *bolt.Bucket {
	t.Helper()
	for _, name := range []string{"log", "recent"} {
		if b := tx.Bucket([]byte(name)); b.Get(logKey(actor, seq)) != nil {
			return b
		}
	}
	t.Fatalf("entry %d of %q not found in the file", seq, actor)
	return nil
}

func appendN(t *testing.T, j journal.Journal, actor string, token uint64, n int) {
	t.Helper()
	tl, err := j.Tail(t.Context(), actor)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seq := tl.Seq + uint64(i) + 1
		if _, err := j.Append(t.Context(), actor, token, seq-1, []journal.Entry{{Payload: fmt.Appendf(nil, "%s#%d", actor, seq)}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileRecoversCorruption(t *testing.T) {
	path := tempPath(t)
	j := openFile(t, path, journal.DefaultFileOptions())
	ctx := t.Context()
	appendN(t, j, "flip", 2, 10)    // a bit flipped in seq 6
	appendN(t, j, "garbage", 3, 5)  // seq 2 replaced by garbage
	appendN(t, j, "first", 1, 3)    // seq 1 damaged: nothing valid remains
	appendN(t, j, "snap", 4, 6)     // the snapshot is damaged
	appendN(t, j, "meta", 5, 4)     // the meta record is damaged
	appendN(t, j, "covered", 6, 8)  // damage inside a snapshot's range
	appendN(t, j, "healthy", 7, 20) // untouched
	if err := j.SaveSnapshot(ctx, "snap", 4, journal.Snapshot{Seq: 3, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveSnapshot(ctx, "covered", 6, journal.Snapshot{Seq: 5, Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Truncate(ctx, "covered", 6, 2); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	corrupt(t, path, func(tx *bolt.Tx) error {
		b := entryBucket(t, tx, "flip", 6)
		v := bytes.Clone(b.Get(logKey("flip", 6)))
		v[len(v)/2] ^= 0x01
		if err := b.Put(logKey("flip", 6), v); err != nil {
			return err
		}
		if err := entryBucket(t, tx, "garbage", 2).Put(logKey("garbage", 2), []byte("garbage")); err != nil {
			return err
		}
		if err := entryBucket(t, tx, "first", 1).Put(logKey("first", 1), nil); err != nil {
			return err
		}
		if err := entryBucket(t, tx, "covered", 4).Put(logKey("covered", 4), []byte{1}); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("snapshots")).Put([]byte("snap"), []byte("xx")); err != nil {
			return err
		}
		return tx.Bucket([]byte("actors")).Put([]byte("meta"), []byte{1, 2, 3, 4, 5, 6})
	})

	var logged bytes.Buffer
	opts := journal.DefaultFileOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	j = openFile(t, path, opts)

	key := func(c journal.Corruption) string { return fmt.Sprintf("%s/%s/%d", c.Actor, c.Record, c.FirstSeq) }
	got := map[string]journal.Corruption{}
	for _, c := range j.Recovered() {
		got[key(c)] = c
	}
	want := []journal.Corruption{
		{Actor: "covered", Record: "entry", FirstSeq: 4, Count: 5},
		{Actor: "covered", Record: "entry", FirstSeq: 3, Count: 1}, // stranded below the snapshot
		{Actor: "first", Record: "entry", FirstSeq: 1, Count: 3},
		{Actor: "flip", Record: "entry", FirstSeq: 6, Count: 5},
		{Actor: "garbage", Record: "entry", FirstSeq: 2, Count: 4},
		{Actor: "meta", Record: "meta", Count: 1},
		{Actor: "snap", Record: "snapshot", Count: 1},
	}
	if len(got) != len(want) {
		t.Errorf("Recovered() = %v, want %d reports", j.Recovered(), len(want))
	}
	for _, w := range want {
		c, ok := got[key(w)]
		if !ok || c.Count != w.Count || c.Reason == "" {
			t.Errorf("Recovered()[%s] = %+v (found %v), want %+v with a reason", key(w), c, ok, w)
		}
		if !strings.Contains(logged.String(), "actor="+w.Actor) {
			t.Errorf("no warning logged for %s: %s", w.Actor, logged.String())
		}
	}
	if r := got["flip/entry/6"].Reason; !strings.Contains(r, "checksum") {
		t.Errorf("flip reason %q does not mention the checksum", r)
	}

	// What remains: the valid prefix, with the tail at its end (but not
	// below a snapshot), and writing resumes there.
	for _, tc := range []struct {
		actor       string
		first, last uint64
		tail        journal.Tail
	}{
		{"flip", 1, 5, journal.Tail{Seq: 5, Token: 2}},
		{"garbage", 1, 1, journal.Tail{Seq: 1, Token: 3}},
		{"first", 1, 0, journal.Tail{Seq: 0, Token: 1}},
		{"snap", 1, 6, journal.Tail{Seq: 6, Token: 4}},
		{"meta", 1, 4, journal.Tail{Seq: 4, Token: 5}},
		{"covered", 1, 0, journal.Tail{Seq: 5, Token: 6}},
		{"healthy", 1, 20, journal.Tail{Seq: 20, Token: 7}},
	} {
		es, err := j.Read(ctx, tc.actor, 0)
		if err != nil {
			t.Fatalf("Read(%s): %v", tc.actor, err)
		}
		if n := int(tc.last) - int(tc.first) + 1; len(es) != n {
			t.Fatalf("Read(%s) = %d entries, want %d..%d", tc.actor, len(es), tc.first, tc.last)
		}
		for i, e := range es {
			if seq := tc.first + uint64(i); e.Seq != seq || string(e.Payload) != fmt.Sprintf("%s#%d", tc.actor, seq) {
				t.Fatalf("Read(%s)[%d] = seq %d %q", tc.actor, i, e.Seq, e.Payload)
			}
		}
		if tl, err := j.Tail(ctx, tc.actor); err != nil || tl != tc.tail {
			t.Fatalf("Tail(%s) = %+v, %v; want %+v", tc.actor, tl, err, tc.tail)
		}
		if _, err := j.Append(ctx, tc.actor, tc.tail.Token, tc.tail.Seq, []journal.Entry{{}}); err != nil {
			t.Fatalf("Append(%s) after recovery: %v", tc.actor, err)
		}
	}
	if _, ok, err := j.LoadSnapshot(ctx, "snap"); ok || err != nil {
		t.Fatalf("LoadSnapshot(snap) after its record was dropped = %v, %v; want none", ok, err)
	}
	if snap, ok, err := j.LoadSnapshot(ctx, "covered"); !ok || err != nil || snap.Seq != 5 {
		t.Fatalf("LoadSnapshot(covered) = %+v, %v, %v; want seq 5", snap, ok, err)
	}

	// The repairs were written: the next open is clean.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openFile(t, path, journal.DefaultFileOptions())
	if rec := j.Recovered(); len(rec) != 0 {
		t.Fatalf("second reopen reported %v, want a clean file", rec)
	}
}

// TestFileRefusesNewerVersion: a record with an intact checksum and an
// unknown version is not damage; OpenFile fails rather than drop it.
func TestFileRefusesNewerVersion(t *testing.T) {
	path := tempPath(t)
	j := openFile(t, path, journal.DefaultFileOptions())
	appendN(t, j, "a", 1, 3)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var orig []byte
	corrupt(t, path, func(tx *bolt.Tx) error {
		b := entryBucket(t, tx, "a", 2)
		orig = bytes.Clone(b.Get(logKey("a", 2)))
		v := bytes.Clone(orig)
		v[0] = 2
		v = v[:len(v)-4]
		sum := crc32c(v)
		return b.Put(logKey("a", 2), append(v, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)))
	})
	_, err := journal.OpenFile(path, journal.DefaultFileOptions())
	if !errors.Is(err, journal.ErrUnknownVersion) || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenFile with a version-2 record: err = %v, want ErrUnknownVersion naming the path", err)
	}
	// Nothing was dropped: restoring the record makes the file whole.
	corrupt(t, path, func(tx *bolt.Tx) error { return entryBucket(t, tx, "a", 2).Put(logKey("a", 2), orig) })
	j = openFile(t, path, journal.DefaultFileOptions())
	if es, err := j.Read(t.Context(), "a", 0); err != nil || len(es) != 3 || len(j.Recovered()) != 0 {
		t.Fatalf("after restoring: Read = %d entries, %v; Recovered = %v", len(es), err, j.Recovered())
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// --- crash test ---

const crashEnv = "LOOM_JOURNAL_CRASH_CHILD"

// crashPayload is what the crash child appends as seq of actor, so the
// parent can check every stored entry.
func crashPayload(actor string, seq uint64) []byte {
	return fmt.Appendf(nil, "%s#%d#%s", actor, seq, strings.Repeat("x", 64))
}

// TestCrashChild is the child half of TestCrashRecovery: it does nothing
// unless the parent sets LOOM_JOURNAL_CRASH_CHILD to a file path. It opens
// the journal and appends from several goroutines until killed, writing
// "ACK actor tail" to stdout after each Append returns.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		return // only meaningful as a child process
	}
	j, err := journal.OpenFile(path, journal.DefaultFileOptions())
	if err != nil {
		fmt.Printf("ERR open: %v\n", err)
		os.Exit(2)
	}
	fmt.Println("READY")
	// Safety bound in case the parent never kills us: exit on our own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			actor := fmt.Sprintf("crash-%d", g)
			var tail uint64
			for i := 0; ctx.Err() == nil; i++ {
				n := 1 + i%3 // appends of 1, 2 and 3 entries
				es := make([]journal.Entry, n)
				for k := range es {
					es[k] = journal.Entry{Kind: journal.KindInvocation, Payload: crashPayload(actor, tail+uint64(k)+1)}
				}
				next, err := j.Append(ctx, actor, 1, tail, es)
				if err != nil {
					if ctx.Err() == nil {
						fmt.Printf("ERR %s: %v\n", actor, err)
						os.Exit(2)
					}
					return
				}
				tail = next
				out.Lock()
				fmt.Printf("ACK %s %d\n", actor, tail)
				out.Unlock()
			}
		})
	}
	wg.Wait()
	_ = j.Close()
}

// TestCrashRecovery kills a writer process with SIGKILL in the middle of
// concurrent appends, then checks that every acknowledged append is in the
// file with the right payload and that the file opens cleanly.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		return
	}
	path := tempPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Bound the whole test: kill the child if it stops making progress.
	watchdog := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	const wantAcks = 300
	acked := map[string]uint64{}
	acks, killed := 0, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "READY":
			// The child holds the file: another process cannot open it.
			opts := journal.DefaultFileOptions()
			opts.LockTimeout = 100 * time.Millisecond
			if j, err := journal.OpenFile(path, opts); !errors.Is(err, journal.ErrLocked) || !strings.Contains(err.Error(), path) {
				if err == nil {
					j.Close()
				}
				t.Errorf("OpenFile while the child holds the file: err = %v, want ErrLocked naming %s", err, path)
			}
		case strings.HasPrefix(line, "ACK "):
			f := strings.Fields(line)
			seq, err := strconv.ParseUint(f[2], 10, 64)
			if len(f) != 3 || err != nil {
				t.Fatalf("bad line from child: %q", line)
			}
			acked[f[1]] = max(acked[f[1]], seq)
			if acks++; acks == wantAcks && !killed {
				killed = true
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
			}
		case strings.HasPrefix(line, "ERR "):
			t.Errorf("child: %s", line)
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d acks without being killed", acks)
	}
	t.Logf("killed the child after %d acks (%d more arrived before the pipe closed)", wantAcks, acks-wantAcks)

	j := openFile(t, path, journal.DefaultFileOptions())
	if rec := j.Recovered(); len(rec) != 0 {
		t.Fatalf("file did not open cleanly after SIGKILL: %v", rec)
	}
	for actor, maxAck := range acked {
		es, err := j.Read(t.Context(), actor, 0)
		if err != nil {
			t.Fatalf("Read(%s): %v", actor, err)
		}
		if uint64(len(es)) < maxAck {
			t.Fatalf("%s: %d entries stored, but appends up to seq %d were acknowledged", actor, len(es), maxAck)
		}
		for i, e := range es {
			if e.Seq != uint64(i+1) || !bytes.Equal(e.Payload, crashPayload(actor, e.Seq)) {
				t.Fatalf("%s: entry %d is seq %d payload %q", actor, i, e.Seq, e.Payload)
			}
		}
		if tl, err := j.Tail(t.Context(), actor); err != nil || tl.Seq != uint64(len(es)) {
			t.Fatalf("%s: Tail = %+v, %v; want seq %d", actor, tl, err, len(es))
		}
	}
}
