// Package kv is the storage Loom's state machines run on: buckets of
// records kept in key order, the subset of a bbolt bucket they use. raftlock
// gives them its write-behind overlay on top of fsm.db; the bbolt file
// journal gives them Bolt, a bbolt bucket as it is; tests give them Mem.
// It also holds the encodings their records, and raftlock's wire formats,
// share: uvarints, varints and length-prefixed strings and lists.
package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Bucket is one bucket of records, keys in bytewise order. It is used by
// one goroutine at a time (raftlock's FSM goroutine, the file journal's
// committer, or a reader in its own transaction).
//
// Values returned by Get and by cursors are read-only and valid until the
// bucket changes, or for raftlock's overlay until its transaction ends: a
// caller that keeps one copies it. Put keeps key and val: the caller must
// not change them afterwards. "Not found" is a nil value from Get; a
// record stored with a nil or empty value reads as an empty, non-nil
// value. Errors from Put and Delete are I/O failures, fatal to the state
// machine.
type Bucket interface {
	// Get returns the value of key, nil if there is none.
	Get(key []byte) []byte
	// Put sets key to val (a nil val is stored as an empty value).
	Put(key, val []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key []byte) error
	// ForEach calls fn for every record in key order until fn returns an
	// error, which it returns; fn must not change the bucket.
	ForEach(fn func(k, v []byte) error) error
	// Cursor returns a cursor over all records. The bucket must not be
	// changed while the cursor is in use: collect keys, then change them.
	Cursor() Cursor
	// PrefixCursor is Cursor over the records whose keys start with
	// prefix only: First and Seek go to the first of them, and the
	// cursor ends after the last.
	PrefixCursor(prefix []byte) Cursor
}

// Cursor walks a bucket in key order, like a bbolt cursor. A nil key means
// the end.
type Cursor interface {
	// First moves to the first record.
	First() (key, val []byte)
	// Seek moves to the first record with a key >= key.
	Seek(key []byte) (k, v []byte)
	// Next moves past the current record.
	Next() (key, val []byte)
}

// ErrRecord is wrapped by every failure to decode a record.
var ErrRecord = errors.New("malformed record")

// AppendString appends s as a uvarint length and its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends v as a uvarint length and its bytes (the encoding of
// AppendString).
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendList appends items as a uvarint count, then each with AppendBytes.
func AppendList(b []byte, items [][]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(items)))
	for _, it := range items {
		b = AppendBytes(b, it)
	}
	return b
}

// Decoder reads a record made of uvarints, varints, bytes and
// length-prefixed strings and lists. The first failure is kept in Err
// (wrapping Wraps, or ErrRecord if Wraps is nil); later reads return zero
// values.
type Decoder struct {
	B     []byte // what is left to read
	Err   error
	Wraps error // the sentinel failures wrap; nil means ErrRecord
}

// Fail records a failure, unless one was recorded already.
func (d *Decoder) Fail(msg string) {
	if d.Err == nil {
		sentinel := d.Wraps
		if sentinel == nil {
			sentinel = ErrRecord
		}
		d.Err = fmt.Errorf("%w: %s", sentinel, msg)
	}
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.Err != nil {
		return 0
	}
	if len(d.B) == 0 {
		d.Fail("truncated")
		return 0
	}
	c := d.B[0]
	d.B = d.B[1:]
	return c
}

// Uvarint reads a uvarint.
func (d *Decoder) Uvarint() uint64 { return readVarint(d, binary.Uvarint, "bad uvarint") }

// Varint reads a zig-zag varint.
func (d *Decoder) Varint() int64 { return readVarint(d, binary.Varint, "bad varint") }

// readVarint reads one value with read (binary.Uvarint or binary.Varint),
// failing with msg.
func readVarint[T int64 | uint64](d *Decoder, read func([]byte) (T, int), msg string) T {
	if d.Err != nil {
		return 0
	}
	v, n := read(d.B)
	if n <= 0 {
		d.Fail(msg)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Uint64 reads 8 bytes, big-endian.
func (d *Decoder) Uint64() uint64 {
	if d.Err != nil {
		return 0
	}
	if len(d.B) < 8 {
		d.Fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(d.B)
	d.B = d.B[8:]
	return v
}

// Bytes reads a uvarint length and that many bytes, which alias the
// input (capped at their end, so appending to them copies).
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Fail(fmt.Sprintf("length %d exceeds the %d bytes left", n, len(d.B)))
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// String reads a uvarint length and that many bytes, as a string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// List reads a list written by AppendList. The items alias the input.
func (d *Decoder) List() [][]byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) { // every item takes at least one byte
		d.Fail("count exceeds the data")
		return nil
	}
	items := make([][]byte, n)
	for i := range items {
		items[i] = d.Bytes()
	}
	return items
}

// Finish returns Err, or a failure if bytes are left over.
func (d *Decoder) Finish() error {
	if d.Err == nil && len(d.B) != 0 {
		d.Fail(fmt.Sprintf("%d trailing bytes", len(d.B)))
	}
	return d.Err
}
