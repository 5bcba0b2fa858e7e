package raftlock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/journal"
	bolt "go.etcd.io/bbolt"
)

// The buckets of format 1 that format 2 no longer has (fsm_layout.go).
var (
	v1BucketRecent   = []byte("recent")
	v1BucketDedupLog = []byte("deduplog")
)

// migrateFormat1 rewrites a state machine file of format 1 in format 2, in
// place: the entries of recent move to log, and the dedup table (dedup:
// key -> result, deduplog: number -> key) becomes chunks, the same results
// in the same order, so the state machine remembers the same commands. A
// file of another format is left as it is (checkFSMFile judges it).
func migrateFormat1(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoGrowSync: true})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		m := meta.Get(keyState)
		if len(m) != metaLen || m[0] != 1 {
			return nil
		}
		log, recent := tx.Bucket(bucketLog), tx.Bucket(v1BucketRecent)
		dedup, dedupLog := tx.Bucket(bucketDedup), tx.Bucket(v1BucketDedupLog)
		if log == nil || recent == nil || dedup == nil || dedupLog == nil {
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
			res := dedup.Get(dk)
			if len(k) != 8 || res == nil {
				return fmt.Errorf("%w: format 1 dedup log entry %x -> %x without a result", journal.ErrCorrupt, k, dk)
			}
			n := (binary.BigEndian.Uint64(k) - 1) / dedupChunk
			if len(chunks) == 0 || chunks[len(chunks)-1].n != n {
				chunks = append(chunks, chunk{n: n})
			}
			c := &chunks[len(chunks)-1]
			c.val = appendDedupRecord(c.val, dk, res)
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
			if err := b.Put(u64Key(c.n), c.val); err != nil {
				return err
			}
		}
		m = bytes.Clone(m)
		m[0] = fsmFormat
		return meta.Put(keyState, m)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate format 1: %w", err)
	}
	return nil
}
