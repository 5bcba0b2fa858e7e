package journal

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// bucketSeqs lists the seqs an actor has in one entry bucket.
func bucketSeqs(t *testing.T, f *FileJournal, bucket []byte, actor string) []uint64 {
	t.Helper()
	var seqs []uint64
	prefix := actorPrefix(actor)
	err := f.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); isEntryKeyOf(k, prefix); k, _ = c.Next() {
			seqs = append(seqs, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestRecentBucket checks the split of each actor's entries between the log
// and recent buckets: recent holds at most recentMax of the newest (more
// only right after one larger Append), log holds all older ones, and
// Read, Truncate and reopening see one contiguous log.
func TestRecentBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	f, err := OpenFile(path, DefaultFileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	ctx := context.Background()
	check := func(when string, first, tail uint64) {
		t.Helper()
		log, recent := bucketSeqs(t, f, bucketLog, "a"), bucketSeqs(t, f, bucketRecent, "a")
		all := append(append([]uint64(nil), log...), recent...)
		for i, seq := range all {
			if seq != first+uint64(i) {
				t.Fatalf("%s: log %v + recent %v is not %d..%d", when, log, recent, first, tail)
			}
		}
		if uint64(len(all)) != tail-first+1 {
			t.Fatalf("%s: log %v + recent %v is not %d..%d", when, log, recent, first, tail)
		}
		es, err := f.Read(ctx, "a", 0)
		if err != nil || uint64(len(es)) != tail-first+1 || len(es) > 0 && es[0].Seq != first {
			t.Fatalf("%s: Read = %d entries (%v), want %d..%d", when, len(es), err, first, tail)
		}
	}
	var tail uint64
	for _, n := range []int{1, 7, 1, 3, 20, 1, 1, 8, 9} {
		es := make([]Entry, n)
		for i := range es {
			es[i].Payload = fmt.Appendf(nil, "%d", tail+uint64(i)+1)
		}
		if tail, err = f.Append(ctx, "a", 1, tail, es); err != nil {
			t.Fatal(err)
		}
		recent := bucketSeqs(t, f, bucketRecent, "a")
		if len(recent) > max(recentMax, n) {
			t.Fatalf("after appending %d: recent holds %d entries, want at most %d", n, len(recent), max(recentMax, n))
		}
		check(fmt.Sprintf("after appending %d", n), 1, tail)
	}
	if len(bucketSeqs(t, f, bucketLog, "a")) == 0 {
		t.Fatal("no entries were moved to the log bucket")
	}
	if err := f.SaveSnapshot(ctx, "a", 1, Snapshot{Seq: tail - 3}); err != nil {
		t.Fatal(err)
	}
	// Truncate inside the log bucket, then into the recent one.
	for _, through := range []uint64{10, tail - 5, tail - 3} {
		if err := f.Truncate(ctx, "a", 1, through); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("after truncating through %d", through), through+1, tail)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err = OpenFile(path, DefaultFileOptions()); err != nil {
		t.Fatal(err)
	}
	if rec := f.Recovered(); len(rec) != 0 {
		t.Fatalf("reopen reported %v", rec)
	}
	check("after reopen", tail-2, tail)
}
