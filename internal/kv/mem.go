package kv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/btree"
)

// Mem is an in-memory set of named buckets, for running the state
// machines without bbolt: tests apply commands to it and compare Dumps.
// It is not safe for concurrent use.
type Mem struct {
	buckets map[string]*memBucket
}

// NewMem returns an empty Mem.
func NewMem() *Mem { return &Mem{buckets: map[string]*memBucket{}} }

// Bucket returns the bucket called name, creating it empty.
func (m *Mem) Bucket(name string) Bucket {
	b := m.buckets[name]
	if b == nil {
		b = newMemBucket()
		m.buckets[name] = b
	}
	return b
}

// Clone returns a copy of m that shares nothing with it: a snapshot.
func (m *Mem) Clone() *Mem {
	c := NewMem()
	for name, b := range m.buckets {
		cb := &memBucket{recs: make(map[string][]byte, len(b.recs)), keys: b.keys.Clone()}
		for k, v := range b.recs {
			cb.recs[k] = bytes.Clone(v)
		}
		c.buckets[name] = cb
	}
	return c
}

// Dump describes every record, buckets by name and records in key order,
// one line each: equal Dumps mean equal contents (an empty bucket and a
// missing one dump alike).
func (m *Mem) Dump() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m.buckets)) {
		bk := m.buckets[name]
		for _, k := range slices.Sorted(maps.Keys(bk.recs)) {
			fmt.Fprintf(&b, "%s %x %x\n", name, k, bk.recs[k])
		}
	}
	return b.String()
}

// memBucket keeps its records in a map and their keys in a B-tree, in
// order, so that a cursor's every step is a lookup, not a sort.
type memBucket struct {
	recs map[string][]byte
	keys *btree.BTreeG[string]
}

func newMemBucket() *memBucket {
	return &memBucket{recs: map[string][]byte{}, keys: btree.NewOrderedG[string](16)}
}

func (b *memBucket) Get(key []byte) []byte { return b.recs[string(key)] }

func (b *memBucket) Put(key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	k := string(key)
	if _, ok := b.recs[k]; !ok {
		b.keys.ReplaceOrInsert(k)
	}
	b.recs[k] = val
	return nil
}

func (b *memBucket) Delete(key []byte) error {
	k := string(key)
	if _, ok := b.recs[k]; ok {
		delete(b.recs, k)
		b.keys.Delete(k)
	}
	return nil
}

func (b *memBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBucket) Cursor() Cursor { return b.PrefixCursor(nil) }

// PrefixCursor returns a cursor over the keys with prefix. Each move looks
// the next key up in the bucket as it is then.
func (b *memBucket) PrefixCursor(prefix []byte) Cursor {
	return &memCursor{b: b, prefix: string(prefix)}
}

type memCursor struct {
	b      *memBucket
	prefix string
	cur    string // the current key, when ok
	ok     bool
}

// from moves to the first key >= k (after k when after) with the prefix.
func (c *memCursor) from(k string, after bool) ([]byte, []byte) {
	c.ok = false
	c.b.keys.AscendGreaterOrEqual(k, func(item string) bool {
		if after && item == k {
			return true
		}
		if strings.HasPrefix(item, c.prefix) {
			c.cur, c.ok = item, true
		}
		return false
	})
	if !c.ok {
		return nil, nil
	}
	return []byte(c.cur), c.b.recs[c.cur]
}

func (c *memCursor) First() ([]byte, []byte) { return c.from(c.prefix, false) }

func (c *memCursor) Seek(key []byte) ([]byte, []byte) {
	return c.from(max(string(key), c.prefix), false)
}

func (c *memCursor) Next() ([]byte, []byte) {
	if !c.ok {
		return nil, nil
	}
	return c.from(c.cur, true)
}
