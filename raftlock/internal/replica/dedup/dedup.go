// Package dedup is the table that makes a replicated group's commands
// exactly-once: a state machine remembers the result of each command that
// carries an id, answers a command it remembers with its first result
// instead of applying it again, and refuses a retry that may have been
// applied and forgotten. It knows nothing of what the commands do: a
// command is its key (the encoding of its id, opaque here), its birth time
// and whether it is flagged as a retry; a result is opaque bytes.
//
// Every decision is a function of the table (a bucket, kv.Bucket), its
// bookkeeping (State, kept by the state machine with its own) and the
// clock the state machine applies at, so every replica makes the same
// one. The index in memory (Index) is derived from the bucket: the state
// machine keeps it with Remember and rebuilds it with Load after a
// restore.
//
// # Layout
//
// The bucket is a log in chunks: the results of up to ChunkSize
// consecutive commands per record, under ChunkKey(n) (8 bytes, big-endian),
// each result as uvarint(len(key)) || key || varint(applied at: the state
// machine's clock when the command was applied, UnixNano) ||
// uvarint(len(result)) || result (AppendRecord). Command number n (counted
// from 1, State.Next) is in chunk (n-1)/ChunkSize. A command appends to the
// last chunk, so that a write-behind flush rewrites one or two chunks
// instead of writing two records per command; a sweep deletes the oldest
// chunks and cuts the oldest results off the first chunk it keeps.
//
// # Forgetting
//
// A result is kept while it is among the last Window results OR was
// applied less than Retention ago; only a result outside both bounds is
// forgotten, in sweeps, oldest first (a sweep runs once the table holds
// 1/64 of the window more results than the window, and its oldest result
// is 1/64 of the retention past the retention, so that it rewrites the
// oldest chunks once per many commands). State.Forgot is when the newest
// result forgotten was applied: the table holds every result applied
// later.
//
// A command that is not remembered was never applied, and runs, unless it
// is a retry (a copy that may not be the first to reach the log) born no
// later than State.Forgot: it may have been applied and its result
// forgotten, so it is not applied and its outcome is unknown (Check
// answers Unknown). A retry born later would be in the table if it had
// been applied, since no replica applies a command at a clock before its
// birth; and a first copy cannot have been applied before, as long as its
// sender sends a retry only after the first copy was handed on, which puts
// the first copy earlier in the log than its retries.
package dedup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/loom-mesh/loom/internal/kv"
)

// ChunkSize is how many results one record of the table holds at most.
const ChunkSize = 64

// ErrCorrupt is wrapped by every error about a table that contradicts
// itself or its State (a record that does not decode, an index that names
// the wrong chunk, fewer results than counted).
var ErrCorrupt = errors.New("dedup: corrupt table")

// State is the table's bookkeeping, which its state machine keeps (in a
// record of its own, with its other counters) and hands to every Table.
type State struct {
	Next  uint64 // results numbered so far
	Count uint64 // results held
	// Forgot is when the newest result forgotten was applied
	// (math.MinInt64 if none was): the table holds every result applied
	// later. Oldest is when its oldest result was applied (meaningless
	// while Count is 0).
	Forgot int64
	Oldest int64
}

// NewState is the State of an empty table.
func NewState() State { return State{Forgot: math.MinInt64} }

// Table is the dedup table as one apply sees it: its bucket, its State
// and index (both changed by Remember), and the bounds of what it
// remembers. The bounds are part of the state machine's definition: every
// replica must forget the same results at the same command.
type Table struct {
	Bucket kv.Bucket
	State  *State
	// Index maps the key of each result held to its chunk (Load builds
	// it). Only the state machine's goroutine uses it.
	Index     map[string]uint64
	Window    uint64 // results kept by count
	Retention int64  // nanoseconds a result is kept by age
}

// Verdict is what to do with a command (Check).
type Verdict uint8

const (
	// Run: not remembered, and not a retry that may have been forgotten:
	// apply it, then Remember its result.
	Run Verdict = iota
	// Remembered: applied before; answer its first result, do not apply it.
	Remembered
	// Unknown: a retry that may have been applied and forgotten; do not
	// apply it: its outcome is unknown.
	Unknown
)

// Check decides what to do with a command with key key, born at born (the
// clock of the replica that made it, UnixNano), flagged as a retry or
// not. For Remembered it returns the first result.
func (t *Table) Check(key []byte, born int64, retry bool) (Verdict, []byte, error) {
	if res, ok, err := t.lookup(key); err != nil || ok {
		return Remembered, res, err
	}
	if retry && born <= t.State.Forgot {
		return Unknown, nil, nil
	}
	return Run, nil, nil
}

// lookup returns the result of the command with key key, ok false if the
// table does not hold it.
func (t *Table) lookup(key []byte) (res []byte, ok bool, err error) {
	chunk, ok := t.Index[string(key)]
	if !ok {
		return nil, false, nil
	}
	if err := ForEachRecord(t.Bucket.Get(ChunkKey(chunk)), func(k []byte, _ int64, r []byte, _ int) bool {
		if bytes.Equal(k, key) {
			res = r
		}
		return res == nil
	}); err != nil {
		return nil, false, err
	}
	if res == nil {
		return nil, false, fmt.Errorf("%w: the index names chunk %d, which does not hold the key", ErrCorrupt, chunk)
	}
	return res, true, nil
}

// appender is a bucket that appends to a record in place (raftlock's
// overlay grows the last chunk there instead of copying it per command).
type appender interface {
	Append(key, suffix []byte) error
}

// Remember stores res as the result of the command with key key, applied
// at now (the state machine's clock), at the end of the last chunk, and
// sweeps.
func (t *Table) Remember(key []byte, now int64, res []byte) error {
	t.State.Next++
	chunk := (t.State.Next - 1) / ChunkSize
	rec := AppendRecord(nil, key, now, res)
	var err error
	if a, ok := t.Bucket.(appender); ok {
		err = a.Append(ChunkKey(chunk), rec)
	} else {
		err = t.Bucket.Put(ChunkKey(chunk), append(bytes.Clone(t.Bucket.Get(ChunkKey(chunk))), rec...))
	}
	if err != nil {
		return err
	}
	t.Index[string(key)] = chunk
	if t.State.Count == 0 {
		t.State.Oldest = now
	}
	t.State.Count++
	return t.sweep(now)
}

// slack is how far past the window the table grows before a sweep: 1/64
// of the window.
func slack(window uint64) uint64 { return window / 64 }

// slackTime is how long past the retention the oldest result stays before
// a sweep: 1/64 of the retention.
func slackTime(retention int64) int64 { return retention / 64 }

// addDuration returns t+d in UnixNano, saturating instead of overflowing
// (a retention added to a clock near the end of time).
func addDuration(t int64, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

// sweep forgets the oldest results that are outside both bounds, once the
// table is past both by their slack: whole chunks, then the head of the
// first chunk kept.
func (t *Table) sweep(now int64) error {
	st := t.State
	if st.Count <= t.Window+slack(t.Window) ||
		addDuration(st.Oldest, t.Retention+slackTime(t.Retention)) > now {
		return nil
	}
	excess := st.Count - t.Window
	var (
		gone      [][]byte // chunks to delete
		cut       []byte   // the chunk to cut, and what is left of it
		rest      []byte
		forgotten []string
		forgot    = st.Forgot
		oldest    int64 // when the first result kept was applied
		kept      bool  // a result is kept
	)
	c := t.Bucket.Cursor()
	for k, v := c.First(); k != nil && !kept; k, v = c.Next() {
		end := 0
		err := ForEachRecord(v, func(key []byte, at int64, _ []byte, next int) bool {
			if excess == 0 || addDuration(at, t.Retention) > now {
				oldest, kept = at, true
				return false
			}
			forgotten = append(forgotten, string(key))
			forgot = at
			excess--
			end = next
			return true
		})
		if err != nil {
			return err
		}
		switch {
		case end == len(v):
			gone = append(gone, bytes.Clone(k))
		case end > 0:
			cut, rest = bytes.Clone(k), bytes.Clone(v[end:])
		}
	}
	if !kept && excess > 0 {
		return fmt.Errorf("%w: it holds %d results fewer than it counts", ErrCorrupt, excess)
	}
	for _, k := range gone {
		if err := t.Bucket.Delete(k); err != nil {
			return err
		}
	}
	if cut != nil {
		if err := t.Bucket.Put(cut, rest); err != nil {
			return err
		}
	}
	for _, k := range forgotten {
		delete(t.Index, k)
	}
	st.Count -= uint64(len(forgotten))
	st.Forgot, st.Oldest = forgot, oldest
	return nil
}

// Load builds the index of the table whose chunks forEach walks (a
// bucket's ForEach), and counts the results it holds: more than the index
// has keys if a key is there twice.
func Load(forEach func(fn func(k, v []byte) error) error) (index map[string]uint64, count uint64, err error) {
	index = map[string]uint64{}
	err = forEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: chunk key of %d bytes", ErrCorrupt, len(k))
		}
		chunk := binary.BigEndian.Uint64(k)
		return ForEachRecord(v, func(key []byte, _ int64, _ []byte, _ int) bool {
			index[string(key)] = chunk
			count++
			return true
		})
	})
	return index, count, err
}

// ChunkKey is the key of chunk number n.
func ChunkKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// AppendRecord appends one result, applied at the clock at, to a chunk.
func AppendRecord(chunk, key []byte, at int64, res []byte) []byte {
	chunk = kv.AppendBytes(chunk, key)
	chunk = binary.AppendVarint(chunk, at)
	return kv.AppendBytes(chunk, res)
}

// ForEachRecord calls fn with the key, the time applied and the result of
// each record of chunk, oldest first, and the offset of the record after
// it, until fn returns false.
func ForEachRecord(chunk []byte, fn func(key []byte, at int64, res []byte, end int) bool) error {
	d := kv.Decoder{B: chunk}
	for len(d.B) > 0 && d.Err == nil {
		k, at, r := d.Bytes(), d.Varint(), d.Bytes()
		if d.Err == nil && !fn(k, at, r, len(chunk)-len(d.B)) {
			return nil
		}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: chunk: %w", ErrCorrupt, err)
	}
	return nil
}
