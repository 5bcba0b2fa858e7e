package kv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
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
		b = &memBucket{recs: map[string][]byte{}}
		m.buckets[name] = b
	}
	return b
}

// Clone returns a copy of m that shares nothing with it: a snapshot.
func (m *Mem) Clone() *Mem {
	c := NewMem()
	for name, b := range m.buckets {
		cb := &memBucket{recs: make(map[string][]byte, len(b.recs))}
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

type memBucket struct {
	recs map[string][]byte
}

func (b *memBucket) Get(key []byte) []byte { return b.recs[string(key)] }

func (b *memBucket) Put(key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	b.recs[string(key)] = val
	return nil
}

func (b *memBucket) Delete(key []byte) error {
	delete(b.recs, string(key))
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

// PrefixCursor sorts the keys with prefix when it is made: the bucket does
// not change while a cursor is in use.
func (b *memBucket) PrefixCursor(prefix []byte) Cursor {
	c := &memCursor{b: b}
	for k := range b.recs {
		if strings.HasPrefix(k, string(prefix)) {
			c.keys = append(c.keys, k)
		}
	}
	slices.Sort(c.keys)
	return c
}

type memCursor struct {
	b    *memBucket
	keys []string
	i    int
}

func (c *memCursor) at() ([]byte, []byte) {
	if c.i >= len(c.keys) {
		return nil, nil
	}
	k := c.keys[c.i]
	return []byte(k), c.b.recs[k]
}

func (c *memCursor) First() ([]byte, []byte) {
	c.i = 0
	return c.at()
}

func (c *memCursor) Seek(key []byte) ([]byte, []byte) {
	c.i, _ = slices.BinarySearch(c.keys, string(key))
	return c.at()
}

func (c *memCursor) Next() ([]byte, []byte) {
	if c.i < len(c.keys) {
		c.i++
	}
	return c.at()
}
