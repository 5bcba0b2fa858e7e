package kv

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltLikeMem applies the same random operations to a Bolt bucket and
// a Mem bucket and checks that every read (Get, ForEach, and walks of
// Cursor and PrefixCursor from First and from Seek) answers the same, both
// in the read-write transaction that makes the changes and, after each
// commit, in a read-only one. The seed is logged so a failure replays.
func TestBoltLikeMem(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	db, err := bolt.Open(filepath.Join(t.TempDir(), "kv.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mem := NewMem().Bucket("b")

	// Keys from a small alphabet, so that prefixes, seeks and deletes hit
	// stored keys often; bytes 0x00 and 0xff are among them.
	alphabet := []byte{0, 'a', 'b', 0xff}
	key := func(min int) []byte {
		k := make([]byte, min+rng.IntN(4-min))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	walk := func(c Cursor, k, v []byte, limit int) string {
		var sb strings.Builder
		for n := 0; k != nil && n < limit; n++ {
			fmt.Fprintf(&sb, "%x=%x(%t) ", k, v, v == nil)
			k, v = c.Next()
		}
		fmt.Fprintf(&sb, "end:%t", k == nil)
		return sb.String()
	}
	// reads returns what one random read gives on b.
	reads := func(b Bucket, op int, k, p []byte, limit int) string {
		switch op {
		case 0:
			v := b.Get(k)
			return fmt.Sprintf("get %x = %x nil:%t", k, v, v == nil)
		case 1:
			c := b.Cursor()
			kk, vv := c.First()
			return walk(c, kk, vv, limit)
		case 2:
			c := b.Cursor()
			kk, vv := c.Seek(k)
			return walk(c, kk, vv, limit)
		case 3:
			c := b.PrefixCursor(k)
			kk, vv := c.First()
			return walk(c, kk, vv, limit)
		case 4: // a seek below, inside or above the prefix's range
			c := b.PrefixCursor(p)
			kk, vv := c.Seek(k)
			return walk(c, kk, vv, limit)
		default:
			var sb strings.Builder
			err := b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&sb, "%x=%x(%t) ", k, v, v == nil)
				return nil
			})
			return fmt.Sprintf("%s err %v", sb.String(), err)
		}
	}
	compare := func(b Bucket, what string) {
		t.Helper()
		for range 20 {
			op, k, p, limit := rng.IntN(6), key(0), key(0), 1+rng.IntN(40)
			if got, want := reads(b, op, k, p, limit), reads(mem, op, k, p, limit); got != want {
				t.Fatalf("seed %d, %s, read %d of %x (prefix %x):\nbolt %s\nmem  %s", seed, what, op, k, p, got, want)
			}
		}
	}

	for round := range 30 {
		err := db.Update(func(tx *bolt.Tx) error {
			bb, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			b := Bolt(bb)
			for i := range 40 {
				k := key(1)
				switch rng.IntN(4) {
				case 0, 1:
					var v []byte
					switch rng.IntN(3) {
					case 0: // nil: stored as empty
					case 1:
						v = []byte{}
					default:
						v = []byte(fmt.Sprintf("v%d.%d", round, i))
					}
					if err := b.Put(k, v); err != nil {
						return err
					}
					if err := mem.Put(k, v); err != nil {
						return err
					}
				default:
					if err := b.Delete(k); err != nil {
						return err
					}
					if err := mem.Delete(k); err != nil {
						return err
					}
				}
				if i%10 == 9 {
					compare(b, fmt.Sprintf("round %d op %d, in the write", round, i))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *bolt.Tx) error {
			compare(Bolt(tx.Bucket([]byte("b"))), fmt.Sprintf("after round %d", round))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBoltPrefixCopied: a PrefixCursor keeps its own copy of the prefix,
// as Mem's does (it sorts its keys when made), so the caller may reuse the
// prefix's bytes.
func TestBoltPrefixCopied(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "kv.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bb, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		b := Bolt(bb)
		for _, k := range []string{"a1", "a2", "b1"} {
			if err := b.Put([]byte(k), nil); err != nil {
				return err
			}
		}
		p := []byte("a")
		c := b.PrefixCursor(p)
		k, _ := c.First()
		p[0] = 'b'
		if k, _ = c.Next(); string(k) != "a2" {
			t.Errorf("Next after the caller changed the prefix = %q, want a2", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
