package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// EncodingVersion is the version byte written first in every record produced
// by MarshalEntry and MarshalSnapshot. The layout of version 1 is described
// byte by byte in the package documentation. Every version, present and
// future, ends with a CRC-32C of all the bytes before it, so a reader can tell
// a damaged record (checksum mismatch) from a record written by a newer
// release (checksum fine, version unknown).
const EncodingVersion = 1

// ErrUnknownVersion is wrapped (together with ErrCorrupt) by the Unmarshal
// functions when a record's checksum is intact but its version byte is not
// one this build can read: the record was written by a newer release, and
// must not be treated as damage. OpenFile refuses to open such a file
// rather than dropping the records.
var ErrUnknownVersion = errors.New("journal: unknown encoding version")

// crcTable is the Castagnoli polynomial (CRC-32C), hardware accelerated on
// amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

const crcLen = 4

// flagTime is bit 0 of an entry's flags byte: the entry carries a time.
const flagTime = 1

// The range of instants that time.Time.UnixNano can represent.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// TimeRepresentable reports whether t survives the encoding: the zero Time,
// or an instant between 1677-09-21 and 2262-04-11 (the range of
// time.Time.UnixNano). Append rejects entries whose Time is not
// representable with ErrInvalid.
func TimeRepresentable(t time.Time) bool {
	return t.IsZero() || (!t.Before(minTime) && !t.After(maxTime))
}

// MarshalEntry encodes e in the stable binary format (version 1) described
// in the package documentation, CRC-32C included. All fields are encoded as
// given; in particular Seq, Actor and Token are not stamped here. Time is
// stored as UnixNano, so its location and monotonic reading are dropped and
// it decodes in UTC; a non-zero Time outside the representable range (see
// TimeRepresentable) is clamped to the nearest representable instant.
//
// Safe for concurrent use; the result does not alias e.
func MarshalEntry(e Entry) []byte {
	return appendEntry(make([]byte, 0, entrySize(e)), e)
}

func entrySize(e Entry) int {
	n := 1 + binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + crcLen
	for _, s := range [...]int{len(e.Actor), len(e.Method), len(e.CorrelationID), len(e.TraceID), len(e.IdempotencyKey), len(e.Payload)} {
		n += binary.MaxVarintLen64 + s
	}
	return n
}

func appendEntry(b []byte, e Entry) []byte {
	start := len(b)
	b = append(b, EncodingVersion)
	b = binary.AppendUvarint(b, e.Seq)
	b = append(b, byte(e.Kind))
	b = binary.AppendUvarint(b, e.Token)
	if e.Time.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, flagTime)
		b = binary.AppendVarint(b, unixNano(e.Time))
	}
	b = appendString(b, e.Actor)
	b = appendString(b, e.Method)
	b = appendString(b, e.CorrelationID)
	b = appendString(b, e.TraceID)
	b = appendString(b, e.IdempotencyKey)
	b = binary.AppendUvarint(b, uint64(len(e.Payload)))
	b = append(b, e.Payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], crcTable))
}

// unixNano is t.UnixNano clamped to the representable range (UnixNano's
// result is undefined outside it).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalEntry decodes a record produced by MarshalEntry. Every error wraps
// ErrCorrupt: a record that is too short, fails its CRC-32C, is not in
// canonical form (over-long varints, unknown flag bits, trailing bytes) or,
// with ErrUnknownVersion also wrapped, carries a version this build cannot
// read. The result never aliases b (b may be memory-mapped storage). An
// empty Payload decodes as nil, a Time as UTC (zero Time stays zero).
//
// For every b that UnmarshalEntry accepts, MarshalEntry of the result
// returns b again.
func UnmarshalEntry(b []byte) (Entry, error) {
	d, err := openRecord(b, "entry")
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	e.Seq = d.uvarint("seq")
	e.Kind = Kind(d.byte("kind"))
	e.Token = d.uvarint("token")
	switch flags := d.byte("flags"); {
	case d.err != nil:
	case flags == flagTime:
		e.Time = time.Unix(0, d.varint("time")).UTC()
	case flags != 0:
		d.fail(fmt.Sprintf("unknown flags %#02x", flags))
	}
	e.Actor = d.string("actor")
	e.Method = d.string("method")
	e.CorrelationID = d.string("correlation id")
	e.TraceID = d.string("trace id")
	e.IdempotencyKey = d.string("idempotency key")
	e.Payload = d.bytes("payload")
	if err := d.finish(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// MarshalSnapshot encodes s in the stable binary format (version 1) described
// in the package documentation, CRC-32C included. Safe for concurrent use;
// the result does not alias s.Data.
func MarshalSnapshot(s Snapshot) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+binary.MaxVarintLen64+len(s.Data)+crcLen)
	b = append(b, EncodingVersion)
	b = binary.AppendUvarint(b, s.Seq)
	b = binary.AppendUvarint(b, s.Token)
	b = binary.AppendUvarint(b, uint64(len(s.Data)))
	b = append(b, s.Data...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// UnmarshalSnapshot decodes a record produced by MarshalSnapshot, with the
// same error rules as UnmarshalEntry. Empty Data decodes as nil.
func UnmarshalSnapshot(b []byte) (Snapshot, error) {
	d, err := openRecord(b, "snapshot")
	if err != nil {
		return Snapshot{}, err
	}
	var s Snapshot
	s.Seq = d.uvarint("seq")
	s.Token = d.uvarint("token")
	s.Data = d.bytes("data")
	if err := d.finish(); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// openRecord checks the framing shared by every record type (length, CRC,
// version) and returns a decoder over the body between the version byte and
// the CRC.
func openRecord(b []byte, what string) (*decoder, error) {
	if len(b) < 1+crcLen {
		return nil, fmt.Errorf("%w: %s record of %d bytes is too short", ErrCorrupt, what, len(b))
	}
	body, sum := b[:len(b)-crcLen], binary.BigEndian.Uint32(b[len(b)-crcLen:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		return nil, fmt.Errorf("%w: %s record checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, what, sum, got)
	}
	if body[0] != EncodingVersion {
		return nil, fmt.Errorf("%w: %w: %s record has version %d, this build reads version %d",
			ErrCorrupt, ErrUnknownVersion, what, body[0], EncodingVersion)
	}
	return &decoder{what: what, b: body[1:]}, nil
}

// decoder reads the canonical fields of one record body. The first failure
// is kept in err; later reads return zero values.
type decoder struct {
	what string
	b    []byte
	err  error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s record: %s", ErrCorrupt, d.what, msg)
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated at " + field)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// uvarint reads a minimal-length unsigned varint.
func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("truncated at " + field)
		return 0
	case n < 0:
		d.fail(field + " overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail(field + " is not minimally encoded")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a minimal-length zig-zag signed varint.
func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) field(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("%s length %d exceeds the %d bytes left", field, n, len(d.b)))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(field string) string { return string(d.field(field)) }

func (d *decoder) bytes(field string) []byte {
	v := d.field(field)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}
