package kv

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Bolt returns b as a Bucket: reads and writes go straight to b, in the
// transaction b belongs to, with nothing buffered (unlike raftlock's
// write-behind overlay). It is what the bbolt file journal runs its state
// machines on.
//
// b must hold records only, no nested buckets (a nested bucket's key would
// read as a record with an empty value). Values returned by Get and by
// cursors point into the transaction's memory: they are valid until the
// bucket changes or the transaction ends. bbolt keeps the val given to Put
// until the transaction ends (it copies the key), which the Bucket contract
// already requires of callers.
func Bolt(b *bolt.Bucket) Bucket { return boltBucket{b} }

type boltBucket struct{ b *bolt.Bucket }

// Get seeks a cursor rather than calling bolt's Get, so that a record with
// an empty value, which bolt may hand back as nil, reads as empty, not as
// missing.
func (b boltBucket) Get(key []byte) []byte {
	k, v := b.b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil
	}
	return nonNil(v)
}

func (b boltBucket) Put(key, val []byte) error { return b.b.Put(key, nonNil(val)) }

func (b boltBucket) Delete(key []byte) error { return b.b.Delete(key) }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	return b.b.ForEach(func(k, v []byte) error { return fn(k, nonNil(v)) })
}

func (b boltBucket) Cursor() Cursor { return b.PrefixCursor(nil) }

func (b boltBucket) PrefixCursor(prefix []byte) Cursor {
	return &boltCursor{c: b.b.Cursor(), prefix: bytes.Clone(prefix)}
}

// boltCursor is a bolt cursor bounded to the keys that start with prefix.
// Once it has stepped past them every later key is past them too, so Next
// keeps returning the end.
type boltCursor struct {
	c      *bolt.Cursor
	prefix []byte
}

func (c *boltCursor) First() ([]byte, []byte) { return c.bound(c.c.Seek(c.prefix)) }

func (c *boltCursor) Seek(key []byte) ([]byte, []byte) {
	if bytes.Compare(key, c.prefix) < 0 {
		key = c.prefix
	}
	return c.bound(c.c.Seek(key))
}

func (c *boltCursor) Next() ([]byte, []byte) { return c.bound(c.c.Next()) }

func (c *boltCursor) bound(k, v []byte) ([]byte, []byte) {
	if k == nil || !bytes.HasPrefix(k, c.prefix) {
		return nil, nil
	}
	return k, nonNil(v)
}

// nonNil is v, or an empty value for nil: the Bucket contract's reading of
// a record stored with no value.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
