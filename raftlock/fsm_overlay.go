package raftlock

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/btree"
	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
	bolt "go.etcd.io/bbolt"
)

// Write-behind. The state machine applies commands to an in-memory overlay
// of changed records on top of fsm.db, and writes the overlay to fsm.db in
// one bbolt transaction once it is large enough (a flush). Every record is
// looked up in the layers from the top: the overlay being applied to, the
// overlay being flushed (if a flush is running), then fsm.db. A layer holds
// a record's value or a tombstone (deleted), so the first layer that knows
// the key decides. Iteration merges the layers in key order.
//
// The content of the state machine, and so every decision, is the same
// whatever the flush timing: a flush only moves records from the bottom
// overlay into fsm.db, where they read the same. Replicas flush at
// different moments and still agree.

// bucketID names a bucket of fsm.db (allBuckets).
type bucketID uint8

const (
	bMeta bucketID = iota
	bSessions
	bExpiry
	bHeld
	bLocks
	bActors
	bLog
	bSnapshots
	bDedup
	bQueue0    // the first of the queue machine's buckets (queuesm.BucketNames)
	numBuckets = bQueue0 + bucketID(len(queuesm.BucketNames))
)

// ovItem is one record of an overlay: a value, or a tombstone (del).
type ovItem struct {
	key []byte
	val []byte
	del bool
}

func ovLess(a, b *ovItem) bool { return bytes.Compare(a.key, b.key) < 0 }

// order is how an overlay keeps a bucket's records besides by key: as
// the state machine iterates the bucket. Buckets it only looks up by key
// are sorted when flushed.
type order uint8

const (
	byKeyOnly order = iota // looked up by key only
	inTree                 // iterated: also in a btree, in key order
	inGroups               // iterated within a group only: also in groups
)

// orders: log is only ever iterated within one actor's entries (Read,
// Truncate), so its records are kept in per-actor groups, in seq order,
// which appends extend at the end, instead of in one big tree.
var orders = func() [numBuckets]order {
	o := [numBuckets]order{bSessions: inTree, bExpiry: inTree, bHeld: inTree, bDedup: inTree, bLog: inGroups}
	for b := bQueue0; b < numBuckets; b++ {
		o[b] = inTree // the queue machine walks every one of its buckets with cursors
	}
	return o
}()

// groupOf returns the group of a key of an inGroups bucket: for log, the
// actor's journalsm.EntryPrefix (an entry key less its 8-byte seq). Such
// prefixes are self-delimiting, so ordering groups by prefix and each
// group by key orders all keys.
func groupOf(key []byte) []byte { return key[:max(len(key)-8, 0)] }

// ovGroup is the records of one group, in key order.
type ovGroup struct{ items []*ovItem }

// search returns the index of the first item with a key >= key.
func (g *ovGroup) search(key []byte) int {
	i, _ := slices.BinarySearchFunc(g.items, key, func(it *ovItem, k []byte) int { return bytes.Compare(it.key, k) })
	return i
}

// ovBucket is an overlay's records of one bucket: by key, and in key order
// too as the bucket's order says (the same items); an inGroups bucket has
// only its groups, and finds a key in its group.
type ovBucket struct {
	n int                    // records
	m map[string]*ovItem     // all but inGroups
	t *btree.BTreeG[*ovItem] // inTree
	g map[string]*ovGroup    // inGroups: group -> its records
}

// overlay is a set of changes to the buckets of fsm.db. While it is the
// active overlay only the FSM goroutine writes it (holding fsm.mu); once it
// is handed to a flush it is never written again, so readers read it
// without a lock of its own.
type overlay struct {
	buckets [numBuckets]ovBucket
	keys    int // records, tombstones included
	bytes   int // bytes of keys and values, roughly what a flush writes
}

// newOverlay returns an empty overlay, its maps sized like those of prev
// (if not nil): overlays that follow each other hold similar records.
func newOverlay(prev *overlay) *overlay {
	o := &overlay{}
	for i := range o.buckets {
		hint, groups := 0, 0
		if prev != nil {
			hint, groups = len(prev.buckets[i].m), len(prev.buckets[i].g)
		}
		if orders[i] == inGroups {
			o.buckets[i].g = make(map[string]*ovGroup, groups)
			continue
		}
		o.buckets[i].m = make(map[string]*ovItem, hint)
		if orders[i] == inTree {
			o.buckets[i].t = btree.NewG(32, ovLess)
		}
	}
	return o
}

func (o *overlay) get(b bucketID, key []byte) (*ovItem, bool) {
	ob := &o.buckets[b]
	if ob.g == nil {
		it, ok := ob.m[string(key)]
		return it, ok
	}
	if g := ob.g[string(groupOf(key))]; g != nil {
		if i := g.search(key); i < len(g.items) && bytes.Equal(g.items[i].key, key) {
			return g.items[i], true
		}
	}
	return nil, false
}

// set records a value or a tombstone. The overlay keeps key and val: the
// caller must not change them afterwards (nor pass bbolt's memory).
func (o *overlay) set(b bucketID, key, val []byte, del bool) {
	ob := &o.buckets[b]
	if ob.g != nil {
		o.setInGroup(ob, key, val, del)
		return
	}
	if it, ok := ob.m[string(key)]; ok {
		o.bytes += len(val) - len(it.val)
		it.val, it.del = val, del
		return
	}
	it := &ovItem{key: key, val: val, del: del}
	ob.m[string(key)] = it
	if ob.t != nil {
		ob.t.ReplaceOrInsert(it)
	}
	ob.n++
	o.keys++
	o.bytes += len(key) + len(val)
}

func (o *overlay) setInGroup(ob *ovBucket, key, val []byte, del bool) {
	gk := groupOf(key)
	g := ob.g[string(gk)]
	if g == nil {
		g = &ovGroup{}
		ob.g[string(gk)] = g
	}
	i := len(g.items)
	if i > 0 && bytes.Compare(key, g.items[i-1].key) <= 0 { // not an append
		if i = g.search(key); bytes.Equal(g.items[i].key, key) {
			it := g.items[i]
			o.bytes += len(val) - len(it.val)
			it.val, it.del = val, del
			return
		}
	}
	g.items = slices.Insert(g.items, i, &ovItem{key: key, val: val, del: del})
	ob.n++
	o.keys++
	o.bytes += len(key) + len(val)
}

func (o *overlay) empty() bool { return o.keys == 0 }

// ascend calls fn for the records of bucket b with keys >= from (all if
// from is nil) that start with prefix (all if prefix is nil), in key
// order, until fn returns false. A prefix of an inGroups bucket must be a
// whole group.
func (o *overlay) ascend(b bucketID, prefix, from []byte, fn func(*ovItem) bool) {
	if bytes.Compare(from, prefix) < 0 {
		from = prefix
	}
	in := func(it *ovItem) bool { return bytes.HasPrefix(it.key, prefix) }
	ob := &o.buckets[b]
	switch {
	case ob.t != nil:
		ob.t.AscendGreaterOrEqual(&ovItem{key: from}, func(it *ovItem) bool { return in(it) && fn(it) })
		return
	case ob.g != nil && prefix != nil:
		if g := ob.g[string(prefix)]; g != nil {
			for _, it := range g.items[g.search(from):] {
				if !fn(it) {
					return
				}
			}
		}
		return
	case ob.g != nil:
		groups := make([]string, 0, len(ob.g))
		for gk := range ob.g {
			groups = append(groups, gk)
		}
		slices.Sort(groups)
		for _, gk := range groups {
			g := ob.g[gk]
			for _, it := range g.items[g.search(from):] {
				if !fn(it) {
					return
				}
			}
		}
		return
	}
	// Not kept in order (the state machine does not iterate it): sort.
	items := make([]*ovItem, 0, len(ob.m))
	for _, it := range ob.m {
		if bytes.Compare(it.key, from) >= 0 && in(it) {
			items = append(items, it)
		}
	}
	slices.SortFunc(items, func(a, b *ovItem) int { return bytes.Compare(a.key, b.key) })
	for _, it := range items {
		if !fn(it) {
			return
		}
	}
}

// fillPercent is how full the flush packs the pages of bucket b: keys of
// the entry log and the dedup table only grow (at each actor's end, at the
// end), so their pages are filled almost to the brim.
func fillPercent(b bucketID) float64 {
	switch b {
	case bLog, bDedup:
		return 0.95
	}
	return bolt.DefaultFillPercent
}

// writeTo writes the overlay into tx, bucket by bucket in key order (so
// records that share a page are written together).
func (o *overlay) writeTo(tx *bolt.Tx) error {
	for b := range o.buckets {
		if o.buckets[b].n == 0 {
			continue
		}
		bk := tx.Bucket(allBuckets[b])
		bk.FillPercent = fillPercent(bucketID(b))
		var err error
		o.ascend(bucketID(b), nil, nil, func(it *ovItem) bool {
			if it.del {
				err = bk.Delete(it.key)
			} else {
				err = bk.Put(it.key, it.val)
			}
			if err != nil {
				err = fmt.Errorf("bucket %s: %w", allBuckets[b], err)
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// layers is one consistent view of the state machine: the active overlay
// (nil for none), the overlay being flushed (nil for none) and a bbolt
// transaction on fsm.db. The apply context writes to top; readers only
// read.
type layers struct {
	top, flushing *overlay
	tx            *bolt.Tx
	gets          [numBuckets]*bolt.Cursor // for Get, one per bucket: reused, unlike Bucket.Get's
}

// bucket returns a view of one bucket through the layers.
func (l *layers) bucket(b bucketID) bkt {
	return bkt{l: l, id: b, bolt: l.tx.Bucket(allBuckets[b])}
}

// lockBuckets are the buckets of the session and lock state machine.
func (l *layers) lockBuckets() locksm.Buckets {
	return locksm.Buckets{Sessions: l.bucket(bSessions), Expiry: l.bucket(bExpiry), Held: l.bucket(bHeld), Locks: l.bucket(bLocks)}
}

// queueBuckets are the buckets of the queue state machine.
func (l *layers) queueBuckets() queuesm.Buckets {
	i := bQueue0
	return queuesm.NewBuckets(func(string) kv.Bucket {
		b := l.bucket(i)
		i++
		return b
	})
}

// journalBuckets are the buckets of the journal state machine.
func (l *layers) journalBuckets() journalsm.Buckets {
	return journalsm.Buckets{Actors: l.bucket(bActors), Log: l.bucket(bLog), Snapshots: l.bucket(bSnapshots)}
}

var _ kv.Bucket = bkt{}

// bkt is one bucket seen through the layers, with the subset of
// *bolt.Bucket's methods the state machines use (kv.Bucket, and Append for
// the dedup table). Values returned by Get and by cursors are read-only
// and valid until the transaction ends.
type bkt struct {
	l    *layers
	id   bucketID
	bolt *bolt.Bucket
}

// Get returns the value of key, nil if there is none.
func (b bkt) Get(key []byte) []byte {
	for _, o := range [...]*overlay{b.l.top, b.l.flushing} {
		if o == nil {
			continue
		}
		if it, ok := o.get(b.id, key); ok {
			if it.del {
				return nil
			}
			return it.val
		}
	}
	c := b.l.gets[b.id]
	if c == nil {
		c = b.bolt.Cursor()
		b.l.gets[b.id] = c
	}
	if k, v := c.Seek(key); bytes.Equal(k, key) {
		return v
	}
	return nil
}

// Put sets key to val in the top overlay; it keeps both slices (see
// overlay.set). A nil val is stored as an empty value.
func (b bkt) Put(key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	b.l.top.set(b.id, key, val, false)
	return nil
}

// Append appends suffix to the value of key (creating it). A value
// written only by Append is owned by the top overlay, so it grows in place
// there; one from a lower layer is copied first.
func (b bkt) Append(key, suffix []byte) error {
	if it, ok := b.l.top.get(b.id, key); ok && !it.del {
		it.val = append(it.val, suffix...)
		b.l.top.bytes += len(suffix)
		return nil
	}
	old := b.Get(key)
	v := make([]byte, 0, 2*(len(old)+len(suffix)))
	return b.Put(key, append(append(v, old...), suffix...))
}

// Delete records a tombstone for key in the top overlay.
func (b bkt) Delete(key []byte) error {
	b.l.top.set(b.id, key, nil, true)
	return nil
}

// ForEach calls fn for every record in key order; fn must not change the
// bucket.
func (b bkt) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Cursor returns a cursor that merges the layers. The bucket must not be
// changed while the cursor is in use (collect keys, then change them).
func (b bkt) Cursor() kv.Cursor { return b.PrefixCursor(nil) }

// PrefixCursor is Cursor over the records whose keys start with prefix
// only: First and Seek go to the first of them, and the cursor ends after
// the last. For the log bucket prefix must be an actor's EntryPrefix.
func (b bkt) PrefixCursor(prefix []byte) kv.Cursor {
	c := &mcursor{bc: b.bolt.Cursor(), prefix: prefix}
	for i, o := range [...]*overlay{b.l.top, b.l.flushing} {
		if o != nil && o.buckets[b.id].n > 0 {
			c.ov[i] = &treeIter{o: o, b: b.id, prefix: prefix}
		}
	}
	return c
}

// treeIter walks one overlay tree in key order, taking its items a few at
// a time (the btree only offers callbacks).
type treeIter struct {
	o      *overlay
	b      bucketID
	prefix []byte
	buf    []*ovItem
	i      int
	more   bool // the tree may hold items after buf
}

const treeIterChunk = 16

// seek positions the iterator at the first item >= key (the first item if
// key is nil).
func (it *treeIter) seek(key []byte) { it.fill(key, true) }

// fill loads the items from key on (after key if !inclusive).
func (it *treeIter) fill(key []byte, inclusive bool) {
	it.buf, it.i, it.more = it.buf[:0], 0, false
	it.o.ascend(it.b, it.prefix, key, func(x *ovItem) bool {
		if !inclusive && bytes.Equal(x.key, key) {
			return true
		}
		if len(it.buf) == treeIterChunk {
			it.more = true
			return false
		}
		it.buf = append(it.buf, x)
		return true
	})
}

// cur returns the current item; ok is false at the end.
func (it *treeIter) cur() (*ovItem, bool) {
	if it.i < len(it.buf) {
		return it.buf[it.i], true
	}
	return nil, false
}

func (it *treeIter) next() {
	it.i++
	if it.i == len(it.buf) && it.more {
		it.fill(it.buf[len(it.buf)-1].key, false)
	}
}

// mcursor merges the overlays (ov[0] on top, then ov[1]) and a bbolt
// cursor, like a bbolt cursor over the merged bucket: tombstones hide
// records below them; at equal keys the upper layer wins.
type mcursor struct {
	ov     [2]*treeIter // nil: the layer has nothing in this bucket
	bc     *bolt.Cursor
	prefix []byte // only keys with this prefix
	bk, bv []byte // the bbolt cursor's current record; bk nil at its end
	key    []byte // the current key, nil at the end
}

// setBolt takes the bbolt cursor's record, ending at the prefix's end.
func (c *mcursor) setBolt(k, v []byte) {
	if k != nil && !bytes.HasPrefix(k, c.prefix) {
		k, v = nil, nil
	}
	c.bk, c.bv = k, v
}

// First moves to the first record.
func (c *mcursor) First() (key, val []byte) { return c.Seek(nil) }

// Seek moves to the first record with a key >= key.
func (c *mcursor) Seek(key []byte) (k, v []byte) {
	if bytes.Compare(key, c.prefix) < 0 {
		key = c.prefix
	}
	for _, it := range c.ov {
		if it != nil {
			it.seek(key)
		}
	}
	if key == nil {
		c.setBolt(c.bc.First())
	} else {
		c.setBolt(c.bc.Seek(key))
	}
	return c.settle()
}

// Next moves past the current record.
func (c *mcursor) Next() (key, val []byte) {
	if c.key == nil {
		return nil, nil
	}
	c.skip(c.key)
	return c.settle()
}

// skip advances every layer positioned at key.
func (c *mcursor) skip(key []byte) {
	for _, it := range c.ov {
		if it == nil {
			continue
		}
		if x, ok := it.cur(); ok && bytes.Equal(x.key, key) {
			it.next()
		}
	}
	if c.bk != nil && bytes.Equal(c.bk, key) {
		c.setBolt(c.bc.Next())
	}
}

// settle finds the smallest key among the layers; the topmost layer
// holding it decides its value, and a tombstone is skipped.
func (c *mcursor) settle() (key, val []byte) {
	for {
		var (
			min   []byte
			val   []byte
			del   bool
			found bool
		)
		for _, it := range c.ov {
			if it == nil {
				continue
			}
			x, ok := it.cur()
			if !ok {
				continue
			}
			// An upper layer wins a tie: take a key only if it is
			// strictly smaller than what was found above.
			if !found || bytes.Compare(x.key, min) < 0 {
				min, val, del, found = x.key, x.val, x.del, true
			}
		}
		if c.bk != nil && (!found || bytes.Compare(c.bk, min) < 0) {
			min, val, del, found = c.bk, c.bv, false, true
		}
		if !found {
			c.key = nil
			return nil, nil
		}
		if del {
			c.skip(min)
			continue
		}
		c.key = min
		return min, val
	}
}
