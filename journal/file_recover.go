package journal

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/loom-mesh/loom/internal/queuesm"
)

// recoverFile runs once in OpenFile, before the committer starts. It creates
// the buckets of a new file (and the queues' buckets of a file from before
// them), checks the layout version of an old one, and verifies every
// journal record, repairing per the rules in the package
// documentation: an actor's log keeps its longest valid prefix, a damaged
// snapshot is dropped, a damaged or disagreeing meta record is rebuilt. The
// repairs are committed (and fsynced) in one transaction; a clean file is
// not written to.
//
// Records written by a newer release (intact checksum, unknown version) are
// not damage: recoverFile fails with ErrUnknownVersion instead of dropping
// them.
func recoverFile(db *bolt.DB) ([]Corruption, error) {
	tx, err := db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit

	changed, err := ensureLayout(tx)
	if err != nil {
		return nil, err
	}
	r := &recovery{
		tx:     tx,
		actors: tx.Bucket(bucketActors),
		snaps:  tx.Bucket(bucketSnapshots),
		puts:   map[string][]byte{},
	}
	if err := r.run(); err != nil {
		return nil, err
	}
	if err := r.write(); err != nil {
		return nil, err
	}
	if !changed && !r.changed() {
		return nil, nil
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit recovery: %w", err)
	}
	return r.out, nil
}

// ensureLayout creates missing buckets and checks the layout version. The
// message queues' buckets are created in a file written before them (by a
// release without queues), which is no change of layout version: they are
// new buckets beside the journal's, read by nothing older.
func ensureLayout(tx *bolt.Tx) (changed bool, err error) {
	if b := tx.Bucket(bucketFormat); b != nil {
		if v := b.Get(keyFormat); len(v) != 1 || v[0] != fileFormat {
			return false, fmt.Errorf("%w: file layout version %v, this build reads %d", ErrUnknownVersion, v, fileFormat)
		}
	}
	names := [][]byte{bucketFormat, bucketActors, bucketLog, bucketRecent, bucketSnapshots}
	for _, name := range queuesm.BucketNames {
		names = append(names, []byte(name))
	}
	for _, name := range names {
		if tx.Bucket(name) != nil {
			continue
		}
		b, err := tx.CreateBucket(name)
		if err != nil {
			return false, fmt.Errorf("create bucket %s: %w", name, err)
		}
		if bytes.Equal(name, bucketFormat) {
			if err := b.Put(keyFormat, []byte{fileFormat}); err != nil {
				return false, err
			}
		}
		changed = true
	}
	return changed, nil
}

// logScan is what the pass over the log bucket learned about one actor.
type logScan struct {
	firstSeq uint64      // seq of the actor's first stored entry
	lastGood uint64      // seq of the last entry of the valid prefix (0: none)
	maxToken uint64      // highest token among valid entries
	bad      *Corruption // the dropped suffix, if any
}

// end is the seq at which the valid prefix ends: its last entry, or the
// seq before the first stored entry if none is valid.
func (s *logScan) end() uint64 {
	if s.lastGood != 0 {
		return s.lastGood
	}
	return s.firstSeq - 1
}

type recovery struct {
	tx            *bolt.Tx
	actors, snaps *bolt.Bucket

	out        []Corruption
	scans      map[string]*logScan // actors with entries
	deletes    []bucketKey         // entries to drop
	snapDelete [][]byte
	puts       map[string][]byte // meta records to write
}

type bucketKey struct{ bucket, key []byte }

func (r *recovery) changed() bool {
	return len(r.deletes) > 0 || len(r.snapDelete) > 0 || len(r.puts) > 0
}

func (r *recovery) run() error {
	if err := r.scanLog(); err != nil {
		return err
	}
	// Every actor with a meta record.
	c := r.actors.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		actor := string(k)
		if err := r.reconcile(actor, v, true); err != nil {
			return err
		}
		delete(r.scans, actor)
	}
	// Actors with entries but no meta record, in key order.
	for _, actor := range slices.Sorted(maps.Keys(r.scans)) {
		if err := r.reconcile(actor, nil, false); err != nil {
			return err
		}
	}
	// Actors with a snapshot and nothing else.
	c = r.snaps.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if r.actors.Get(k) == nil && r.puts[string(k)] == nil {
			if err := r.reconcile(string(k), nil, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanLog verifies every entry, actor by actor, in seq order: the log
// bucket first, then the recent bucket, continuing each actor's scan (its
// keys are contiguous in each bucket, and its log entries precede its
// recent ones). Each actor's first bad entry and everything after it are
// marked for deletion.
func (r *recovery) scanLog() error {
	r.scans = map[string]*logScan{}
	for _, name := range entryBuckets {
		var cur string
		var sc *logScan
		c := r.tx.Bucket(name).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			actor, seq, ok := parseEntryKey(k)
			if !ok {
				r.deletes = append(r.deletes, bucketKey{name, bytes.Clone(k)})
				r.out = append(r.out, Corruption{Record: "key", Count: 1, Reason: fmt.Sprintf("unreadable key %x in bucket %s", k, name)})
				continue
			}
			if sc == nil || actor != cur {
				cur, sc = actor, r.scans[actor]
				if sc == nil {
					sc = &logScan{firstSeq: seq}
					r.scans[actor] = sc
				}
			}
			if sc.bad != nil {
				sc.bad.Count++
				r.deletes = append(r.deletes, bucketKey{name, bytes.Clone(k)})
				continue
			}
			e, err := UnmarshalEntry(v)
			var reason string
			switch next := sc.end() + 1; {
			case errors.Is(err, ErrUnknownVersion):
				return fmt.Errorf("entry %d of %q: %w", seq, actor, err)
			case err != nil:
				reason = err.Error()
			case seq != next:
				reason = fmt.Sprintf("expected seq %d next, found seq %d", next, seq)
			case e.Seq != seq || e.Actor != actor:
				reason = fmt.Sprintf("record of %q seq %d stored under this actor's seq %d", e.Actor, e.Seq, seq)
			}
			if reason != "" {
				sc.bad = &Corruption{Actor: actor, Record: "entry", FirstSeq: seq, Count: 1, Reason: reason}
				r.deletes = append(r.deletes, bucketKey{name, bytes.Clone(k)})
				continue
			}
			sc.lastGood, sc.maxToken = seq, max(sc.maxToken, e.Token)
		}
	}
	return nil
}

// reconcile decides one actor's repaired state from its meta record (raw,
// hasMeta), its log scan and its snapshot, and queues the writes.
func (r *recovery) reconcile(actor string, raw []byte, hasMeta bool) error {
	sc := r.scans[actor]
	var out []Corruption
	if sc != nil && sc.bad != nil {
		out = append(out, *sc.bad)
	}

	// The snapshot record.
	var snap Snapshot
	hasSnap := false
	if v := r.snaps.Get([]byte(actor)); v != nil {
		s, err := UnmarshalSnapshot(v)
		switch {
		case errors.Is(err, ErrUnknownVersion):
			return fmt.Errorf("snapshot of %q: %w", actor, err)
		case err != nil:
			out = append(out, Corruption{Actor: actor, Record: "snapshot", Count: 1, Reason: err.Error()})
			r.snapDelete = append(r.snapDelete, []byte(actor))
		default:
			snap, hasSnap = s, true
		}
	}

	// The meta record.
	st, metaOK := ActorState{}, false
	if hasMeta {
		s, err := unmarshalMeta(raw)
		switch {
		case errors.Is(err, ErrUnknownVersion):
			return fmt.Errorf("meta of %q: %w", actor, err)
		case err != nil:
			out = append(out, Corruption{Actor: actor, Record: "meta", Count: 1,
				Reason: err.Error() + "; rebuilt from the entries and snapshot (the highest token may be lower than before)"})
		default:
			st, metaOK = s, true
		}
	} else {
		out = append(out, Corruption{Actor: actor, Record: "meta", Reason: "missing; rebuilt from the entries and snapshot (the highest token may be lower than before)"})
	}

	// The tail is where the valid log ends, but never below a snapshot's
	// Seq (entries it covers may have been truncated) nor, when the
	// snapshot record was lost, below the Seq the meta says it had.
	floor := snap.Seq
	if metaOK && st.HasSnapshot {
		floor = max(floor, st.SnapshotSeq)
	}
	fixed := ActorState{Tail: floor, Token: snap.Token, HasSnapshot: hasSnap, SnapshotSeq: snap.Seq}
	if metaOK {
		fixed.Token = max(fixed.Token, st.Token)
	}
	if sc != nil {
		fixed.Tail = max(fixed.Tail, sc.end())
		fixed.Token = max(fixed.Token, sc.maxToken)
		if sc.lastGood != 0 && sc.lastGood < floor {
			// The valid prefix ends below the snapshot: the entries
			// between them are lost, but the snapshot covers them. Keep
			// the log contiguous by truncating the prefix too, as Truncate
			// through the snapshot would.
			prefix := actorPrefix(actor)
			for seq := sc.firstSeq; seq <= sc.lastGood; seq++ {
				for _, name := range entryBuckets { // deleting a missing key is a no-op
					r.deletes = append(r.deletes, bucketKey{name, entryKey(prefix, seq)})
				}
			}
			out = append(out, Corruption{Actor: actor, Record: "entry", FirstSeq: sc.firstSeq, Count: int(sc.lastGood - sc.firstSeq + 1),
				Reason: fmt.Sprintf("intact, but truncated: the entries after them up to the snapshot at seq %d were lost, which the snapshot covers", floor)})
		}
	} else if metaOK && st.Tail > floor {
		// With no entries stored, everything up to the tail was truncated,
		// which only happens up to a snapshot: the entries after it are gone.
		out = append(out, Corruption{Actor: actor, Record: "entry", FirstSeq: floor + 1, Count: int(st.Tail - floor),
			Reason: fmt.Sprintf("meta tail is %d but no entries after seq %d are stored", st.Tail, floor)})
	}
	rec := marshalMeta(fixed)
	if metaOK && len(out) == 0 && !bytes.Equal(rec, raw) {
		out = append(out, Corruption{Actor: actor, Record: "meta",
			Reason: fmt.Sprintf("meta %+v disagreed with the stored records; rebuilt as %+v", st, fixed)})
	}
	if !hasMeta || !bytes.Equal(rec, raw) {
		r.puts[actor] = rec
	}
	r.out = append(r.out, out...)
	return nil
}

// write applies the queued repairs, after all cursors are done.
func (r *recovery) write() error {
	for _, d := range r.deletes {
		if err := r.tx.Bucket(d.bucket).Delete(d.key); err != nil {
			return err
		}
	}
	for _, k := range r.snapDelete {
		if err := r.snaps.Delete(k); err != nil {
			return err
		}
	}
	for actor, rec := range r.puts {
		if err := r.actors.Put([]byte(actor), rec); err != nil {
			return err
		}
	}
	return nil
}
