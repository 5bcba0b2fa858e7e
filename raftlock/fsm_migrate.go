package raftlock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
	bolt "go.etcd.io/bbolt"
)

// The buckets of format 1 that format 2 no longer has (fsm_layout.go).
var (
	v1BucketRecent   = []byte("recent")
	v1BucketDedupLog = []byte("deduplog")
)

// metaLen12 is the length of the meta record of formats 1 and 2, which
// share its layout: format, then applied index, clock, last token, last
// session number, dedup numbers issued and dedup entries held, 8 bytes
// each.
const metaLen12 = 1 + 8*6

// migrate rewrites a state machine file of an earlier format (1, 2 or 3)
// in the current one, in place, in one transaction. A file of another
// format is left as it is (checkFSMFile judges it).
func migrate(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoGrowSync: true})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		m := bytes.Clone(meta.Get(keyState))
		switch {
		case len(m) == metaLen12 && m[0] == 1:
			if err := migrate1to2(tx); err != nil {
				return fmt.Errorf("format 1: %w", err)
			}
			fallthrough
		case len(m) == metaLen12 && m[0] == 2:
			if err := migrate2to3(tx, m); err != nil {
				return fmt.Errorf("format 2: %w", err)
			}
			fallthrough
		case len(m) == metaLen && m[0] == 3:
			if err := migrate3to4(tx); err != nil {
				return fmt.Errorf("format 3: %w", err)
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate state machine: %w", err)
	}
	return nil
}

// migrate1to2 rewrites the buckets of format 1 as format 2 has them: the
// entries of recent move to log, and the dedup table (dedup: key ->
// result, deduplog: number -> key) becomes chunks of format 2 records
// (uvarint(len(key)) || key || uvarint(len(result)) || result), the same
// results in the same order, so the state machine remembers the same
// commands. The meta record is left to migrate2to3.
func migrate1to2(tx *bolt.Tx) error {
	log, recent := tx.Bucket(bucketLog), tx.Bucket(v1BucketRecent)
	results, dedupLog := tx.Bucket(bucketDedup), tx.Bucket(v1BucketDedupLog)
	if log == nil || recent == nil || results == nil || dedupLog == nil {
		return fmt.Errorf("%w: format 1 state machine without its buckets", journal.ErrCorrupt)
	}
	if err := recent.ForEach(func(k, v []byte) error {
		return log.Put(bytes.Clone(k), bytes.Clone(v))
	}); err != nil {
		return err
	}
	type chunk struct {
		n   uint64
		val []byte
	}
	var chunks []chunk
	if err := dedupLog.ForEach(func(k, dk []byte) error {
		res := results.Get(dk)
		if len(k) != 8 || res == nil {
			return fmt.Errorf("%w: format 1 dedup log entry %x -> %x without a result", journal.ErrCorrupt, k, dk)
		}
		n := (binary.BigEndian.Uint64(k) - 1) / dedup.ChunkSize
		if len(chunks) == 0 || chunks[len(chunks)-1].n != n {
			chunks = append(chunks, chunk{n: n})
		}
		c := &chunks[len(chunks)-1]
		c.val = appendBytes(appendBytes(c.val, dk), res)
		return nil
	}); err != nil {
		return err
	}
	for _, name := range [][]byte{v1BucketRecent, bucketDedup, v1BucketDedupLog} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
	}
	b, err := tx.CreateBucket(bucketDedup)
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if err := b.Put(dedup.ChunkKey(c.n), c.val); err != nil {
			return err
		}
	}
	return nil
}

// migrate2to3 gives every result of the dedup table the time it was
// applied, which format 2 did not keep: the clock of the meta record m
// (format 2), the latest any of them can have been applied at, so each is
// kept for the retention from there, never less. The table forgot results
// by count before (dedup.Next > dedup.Count), when, it does not say: the
// latest it can have been is the same clock, which is then dedup.Forgot, so
// that a retry born before it that is not remembered is answered "outcome
// unknown" (see applyCommand).
func migrate2to3(tx *bolt.Tx, m []byte) error {
	u := func(i int) uint64 { return binary.BigEndian.Uint64(m[1+8*i:]) }
	meta := fsmMeta{applied: u(0), time: int64(u(1)), locks: locksm.Counters{Token: u(2), Sessions: u(3)},
		dedup: dedup.State{Next: u(4), Count: u(5), Forgot: math.MinInt64, Oldest: int64(u(1))}}
	if meta.dedup.Next > meta.dedup.Count {
		meta.dedup.Forgot = meta.time
	}
	table := tx.Bucket(bucketDedup)
	if table == nil {
		return fmt.Errorf("%w: no dedup bucket", journal.ErrCorrupt)
	}
	type chunk struct{ key, val []byte }
	var chunks []chunk
	if err := table.ForEach(func(k, v []byte) error {
		c := chunk{key: bytes.Clone(k)}
		d := kv.Decoder{B: v, Wraps: errBadWire}
		for len(d.B) > 0 && d.Err == nil {
			dk, res := d.Bytes(), d.Bytes()
			c.val = dedup.AppendRecord(c.val, dk, meta.time, res)
		}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("%w: dedup chunk %x: %w", journal.ErrCorrupt, k, err)
		}
		chunks = append(chunks, c)
		return nil
	}); err != nil {
		return err
	}
	for _, c := range chunks {
		if err := table.Put(c.key, c.val); err != nil {
			return err
		}
	}
	rec := meta.marshal()
	rec[0] = 3 // the meta record of format 3 is format 4's; migrate3to4 follows
	return tx.Bucket(bucketMeta).Put(keyState, rec)
}

// migrate3to4 adds the message queues' buckets, empty (format 3 had no
// messages), and sets the format byte of the meta record, which is all
// that format 4 changed in it. (Development builds wrote the queues'
// buckets into format 3 files for a while: those keep what they hold.)
func migrate3to4(tx *bolt.Tx) error {
	for _, name := range queuesm.BucketNames {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	rec := bytes.Clone(meta.Get(keyState))
	rec[0] = fsmFormat
	return meta.Put(keyState, rec)
}
