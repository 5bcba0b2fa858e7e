package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/loom-mesh/loom/queue"

	json "github.com/segmentio/encoding/json"
)

// State is an actor's durable key-value state. Reads see the turn's own
// writes. Writes are buffered during a turn and committed as one journal
// append when the turn ends; if that append fails they are discarded.
//
// A State belongs to one activation and is used only from inside its turns
// (one goroutine at a time); it is not safe to keep it beyond the turn.
type State struct {
	committed map[string][]byte
	writes    map[string]pending // this turn's writes, by key
	cleared   bool               // Clear was called in this turn
	readOnly  bool               // set while OnDeactivate runs
	idem      idemTable          // the actor's remembered idempotency keys
	rec       *idemRecord        // this turn's outcome, to remember under its key
	ack       string             // the message this turn delivers, acknowledged by its append
	outbox    []queue.Message    // messages the turn sent, enqueued by its append
	direct    string             // the id of the message this turn applies directly (accepted by its append), or ""
}

type pending struct {
	value   []byte
	deleted bool
}

var errReadOnly = errors.New("loom: state is read-only during OnDeactivate")

func newState() *State {
	return &State{committed: make(map[string][]byte)}
}

// Get returns the value stored under key. The returned slice must not be
// modified.
func (s *State) Get(key string) ([]byte, bool) {
	if w, ok := s.writes[key]; ok {
		if w.deleted {
			return nil, false
		}
		return w.value, true
	}
	if s.cleared {
		return nil, false
	}
	v, ok := s.committed[key]
	return v, ok
}

// Set stores value under key. The slice is copied.
func (s *State) Set(key string, value []byte) {
	if s.readOnly {
		panic(errReadOnly)
	}
	if s.writes == nil {
		s.writes = make(map[string]pending)
	}
	s.writes[key] = pending{value: append([]byte(nil), value...)}
}

// Delete removes key.
func (s *State) Delete(key string) {
	if s.readOnly {
		panic(errReadOnly)
	}
	if s.writes == nil {
		s.writes = make(map[string]pending)
	}
	s.writes[key] = pending{deleted: true}
}

// Clear removes every key.
func (s *State) Clear() {
	if s.readOnly {
		panic(errReadOnly)
	}
	s.cleared = true
	s.writes = make(map[string]pending)
}

// Keys returns the keys present, sorted.
func (s *State) Keys() []string {
	keys := make([]string, 0, len(s.committed)+len(s.writes))
	if !s.cleared {
		for k := range s.committed {
			if w, ok := s.writes[k]; ok && w.deleted {
				continue
			}
			keys = append(keys, k)
		}
	}
	for k, w := range s.writes {
		if w.deleted {
			continue
		}
		if _, dup := s.committed[k]; dup && !s.cleared {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Len is the number of keys present.
func (s *State) Len() int { return len(s.Keys()) }

// dirty reports whether the turn has anything to commit.
func (s *State) dirty() bool {
	return s.changed() || s.ack != "" || s.direct != "" || len(s.outbox) > 0
}

// changed reports whether the turn has state changes or a record to commit
// (an invocation entry).
func (s *State) changed() bool { return s.cleared || len(s.writes) > 0 || s.rec != nil }

// discard drops the turn's changes and its record.
func (s *State) discard() {
	s.cleared = false
	s.writes = nil
	s.rec = nil
	s.ack = ""
	s.direct = ""
	s.outbox = nil
}

// apply makes the turn's changes committed, and remembers its record
// (keeping at most maxKeys).
func (s *State) apply(maxKeys int) {
	if s.rec != nil {
		s.idem.add(s.rec, maxKeys)
	}
	if s.cleared {
		s.committed = make(map[string][]byte, len(s.writes))
	}
	for k, w := range s.writes {
		if w.deleted {
			delete(s.committed, k)
		} else {
			s.committed[k] = w.value
		}
	}
	s.discard()
}

// GetState decodes the JSON value stored under key into a V. found is false
// (and err nil) when the key is absent.
func GetState[V any](s *State, key string) (v V, found bool, err error) {
	b, ok := s.Get(key)
	if !ok {
		return v, false, nil
	}
	if err := unmarshalJSON(b, &v); err != nil {
		return v, true, fmt.Errorf("loom: state key %q: %w", key, err)
	}
	return v, true, nil
}

// SetState stores v as JSON under key.
func SetState[V any](s *State, key string, v V) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("loom: state key %q: %w", key, err)
	}
	s.Set(key, b)
	return nil
}

// The encoding of a turn's changes, the Payload of a KindInvocation or
// KindStateOp journal entry:
//
//	byte     version (1, or 2 when flag 2 may be set)
//	byte     flags: bit 0 = the turn cleared the state first; bit 1 = an
//	         idempotency record follows the operations (version 2)
//	uvarint  number of operations n
//	n times: byte op (1 = set, 2 = delete), uvarint len(key), key,
//	         and for set: uvarint len(value), value
//	[record] the call's outcome under the entry's IdempotencyKey
//	         (appendRecord), if bit 1
//
// Operations are sorted by key. Replaying applies the clear, then the ops.
// A turn without a record writes version 1, as releases before records
// did.
//
// The encoding of a snapshot's Data:
//
//	byte     version (1, or 2 with remembered keys)
//	uvarint  number of keys n
//	n times: uvarint len(key), key, uvarint len(value), value (sorted by key)
//	[table]  version 2: the remembered idempotency keys (appendTable)
const (
	stateEncodingVersion   = 1
	stateEncodingVersionV2 = 2
)

const (
	opSet    = 1
	opDelete = 2
)

// encodeChanges encodes the turn's pending changes.
func (s *State) encodeChanges() []byte {
	keys := make([]string, 0, len(s.writes))
	size := 3 + binary.MaxVarintLen64
	for k, w := range s.writes {
		keys = append(keys, k)
		size += 1 + 2*binary.MaxVarintLen64 + len(k) + len(w.value)
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	var flags byte
	if s.cleared {
		flags |= 1
	}
	if s.rec != nil {
		b = append(b, stateEncodingVersionV2)
		flags |= 2
	} else {
		b = append(b, stateEncodingVersion)
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		w := s.writes[k]
		if w.deleted {
			b = append(b, opDelete)
			b = appendBytes(b, []byte(k))
			continue
		}
		b = append(b, opSet)
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, w.value)
	}
	if s.rec != nil {
		b = appendRecord(b, s.rec)
	}
	return b
}

// replayChanges applies an encoded change set to the committed state and
// returns its idempotency record, if any (without key or time).
func (s *State) replayChanges(b []byte) (*idemRecord, error) {
	return walkChanges(b, func(cleared bool) {
		if cleared {
			s.committed = make(map[string][]byte)
		}
	}, func(op byte, key, val []byte) {
		if op == opDelete {
			delete(s.committed, string(key))
			return
		}
		s.committed[string(key)] = append([]byte(nil), val...)
	})
}

// walkChanges parses an encoded change set, calling onClear once and then
// onOp for each operation in order, and returns its idempotency record. It
// validates the whole record.
func walkChanges(b []byte, onClear func(bool), onOp func(op byte, key, val []byte)) (*idemRecord, error) {
	if len(b) < 2 {
		return nil, errors.New("state change record too short")
	}
	if b[0] != stateEncodingVersion && b[0] != stateEncodingVersionV2 {
		return nil, fmt.Errorf("state change record version %d not supported", b[0])
	}
	hasRecord := b[1]&2 != 0
	if hasRecord && b[0] < stateEncodingVersionV2 {
		return nil, errors.New("state change record: version 1 with a record")
	}
	onClear(b[1]&1 != 0)
	b = b[2:]
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, err
	}
	for i := uint64(0); i < n; i++ {
		if len(b) == 0 {
			return nil, errors.New("state change record truncated")
		}
		op := b[0]
		b = b[1:]
		var key, val []byte
		if key, b, err = readBytes(b); err != nil {
			return nil, err
		}
		switch op {
		case opSet:
			if val, b, err = readBytes(b); err != nil {
				return nil, err
			}
		case opDelete:
		default:
			return nil, fmt.Errorf("state change record: unknown op %d", op)
		}
		onOp(op, key, val)
	}
	var rec *idemRecord
	if hasRecord {
		if rec, b, err = readRecord(b); err != nil {
			return nil, err
		}
	}
	if len(b) != 0 {
		return nil, errors.New("state change record has trailing bytes")
	}
	return rec, nil
}

// encodeSnapshot encodes the committed state (clk maps the remembered
// keys' times to the wall clock).
func (s *State) encodeSnapshot(clk idemClock) []byte {
	keys := make([]string, 0, len(s.committed))
	size := 1 + binary.MaxVarintLen64
	for k, v := range s.committed {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	withTable := s.idem.len() > 0 || s.idem.forgot
	if withTable {
		b = append(b, stateEncodingVersionV2)
	} else {
		b = append(b, stateEncodingVersion)
	}
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, s.committed[k])
	}
	if withTable {
		b = appendTable(b, &s.idem, clk)
	}
	return b
}

// loadSnapshot replaces the committed state (and the remembered keys, at
// most maxKeys) with an encoded snapshot.
func (s *State) loadSnapshot(b []byte, maxKeys int, clk idemClock) error {
	if len(b) < 1 || (b[0] != stateEncodingVersion && b[0] != stateEncodingVersionV2) {
		return errors.New("state snapshot: missing or unsupported version")
	}
	version := b[0]
	b = b[1:]
	n, b, err := readUvarint(b)
	if err != nil {
		return err
	}
	m := make(map[string][]byte, n)
	for i := uint64(0); i < n; i++ {
		var k, v []byte
		if k, b, err = readBytes(b); err != nil {
			return err
		}
		if v, b, err = readBytes(b); err != nil {
			return err
		}
		m[string(k)] = append([]byte(nil), v...)
	}
	t := &idemTable{}
	if version == stateEncodingVersionV2 {
		if t, b, err = readTable(b, maxKeys, clk); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errors.New("state snapshot has trailing bytes")
	}
	s.committed = m
	s.idem = *t
	return nil
}

// DecodeChanges decodes the Payload of an invocation entry into the state
// operations it carries, for tools that audit a journal. cleared reports a
// Clear before the operations; a nil value in ops means a delete.
func DecodeChanges(payload []byte) (cleared bool, ops map[string][]byte, err error) {
	ops = make(map[string][]byte)
	_, err = walkChanges(payload, func(c bool) { cleared = c }, func(op byte, key, val []byte) {
		if op == opDelete {
			ops[string(key)] = nil
			return
		}
		ops[string(key)] = append([]byte{}, val...)
	})
	return cleared, ops, err
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("bad varint")
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if uint64(len(b)) < n {
		return nil, nil, errors.New("length exceeds record")
	}
	return b[:n], b[n:], nil
}
