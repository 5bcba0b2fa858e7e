package queue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EncodingVersion is the first byte of every record that MarshalMessage,
// MarshalDeadLetter and MarshalReminder write. Every version ends with a
// CRC-32C (Castagnoli) of the bytes before it, big-endian, so damage
// (a checksum mismatch) is told apart from a record of a newer release
// (a sound checksum, an unknown version).
//
// Version 1 of a message record:
//
//	1      version (1)
//	1      flags: bit 0 Ordered, bit 1 DeliverAt set, bit 2 AcceptedAt
//	       set, bit 3 NextAt set, bit 4 DeadAt set (dead letters only)
//	1-10   Seq, uvarint
//	1-5    Attempts, uvarint
//	1-10   DeliverAt, AcceptedAt, NextAt, DeadAt: each one whose flag is
//	       set, UnixNano as a zig-zag varint, in this order
//	n      ID, Actor, Method: each a uvarint length and the bytes
//	n      Payload: a uvarint length and the bytes
//	n      Headers: a uvarint count, then each key and value as a
//	       length-prefixed string, keys in strictly increasing order
//	n      CorrelationID, TraceParent, LastError: length-prefixed
//	4      CRC-32C of all the bytes above
//
// A dead letter is its message's record with DeadAt among the times.
//
// Version 1 of a reminder record:
//
//	1      version (1)
//	1      flags: bit 0 Ordered, bit 1 DueAt set
//	1-10   DueAt (if set), UnixNano as a zig-zag varint
//	1-10   Period in nanoseconds, zig-zag varint
//	n      Actor, Name, Method: length-prefixed
//	n      Payload: length-prefixed
//	4      CRC-32C of all the bytes above
//
// Integers are minimally encoded. A decoder accepts only this canonical
// form, so every record it accepts is what Marshal writes for the value
// it returns.
const EncodingVersion = 1

// The flags of a message record.
const (
	flagOrdered    = 1 << 0
	flagDeliverAt  = 1 << 1
	flagAcceptedAt = 1 << 2
	flagNextAt     = 1 << 3
	flagDeadAt     = 1 << 4
)

// The flags of a reminder record.
const (
	flagRemOrdered = 1 << 0
	flagDueAt      = 1 << 1
)

const crcLen = 4

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// The instants time.Time.UnixNano can express.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// TimeRepresentable reports whether t can be stored: the zero Time or an
// instant UnixNano expresses (1677-09-21 to 2262-04-11). It is the rule of
// journal.TimeRepresentable.
func TimeRepresentable(t time.Time) bool {
	return t.IsZero() || (!t.Before(minTime) && !t.After(maxTime))
}

// UnixNano is t.UnixNano with an instant outside the representable range
// clamped to its nearest end (UnixNano itself is undefined there).
func UnixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// CheckActor returns an error wrapping ErrInvalid if actor is not a valid
// actor key: empty, or longer than MaxActorLen bytes (the journal's rule).
func CheckActor(actor string) error {
	switch {
	case actor == "":
		return fmt.Errorf("%w: empty actor key", ErrInvalid)
	case len(actor) > MaxActorLen:
		return fmt.Errorf("%w: actor key of %d bytes exceeds %d", ErrInvalid, len(actor), MaxActorLen)
	}
	return nil
}

// CheckID returns an error wrapping ErrInvalid if id is not a valid
// message id: empty, or longer than MaxIDLen bytes.
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty message id", ErrInvalid)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: message id of %d bytes exceeds %d", ErrInvalid, len(id), MaxIDLen)
	}
	return nil
}

// CheckMessage returns an error wrapping ErrInvalid if Enqueue must refuse
// msg: a bad id (CheckID) or actor (CheckActor), an empty Method, or a
// DeliverAt that cannot be stored (TimeRepresentable). It checks only what
// the sender sets: the store stamps the other fields.
func CheckMessage(msg Message) error {
	if err := CheckID(msg.ID); err != nil {
		return err
	}
	if err := CheckActor(msg.Actor); err != nil {
		return fmt.Errorf("message %q: %w", msg.ID, err)
	}
	if msg.Method == "" {
		return fmt.Errorf("%w: message %q has no method", ErrInvalid, msg.ID)
	}
	if !TimeRepresentable(msg.DeliverAt) {
		return fmt.Errorf("%w: message %q has DeliverAt %v outside the storable range", ErrInvalid, msg.ID, msg.DeliverAt)
	}
	return nil
}

// maxDecimalInt64 is the length of the longest int64 in decimal,
// math.MinInt64 with its sign.
const maxDecimalInt64 = 20

// ReminderID returns the id of the message that actor's reminder name
// fires for the firing due at dueAt (UnixNano): "reminder:" + actor + ":" +
// name + ":" + dueAt in decimal.
func ReminderID(actor, name string, dueAt int64) string {
	var b strings.Builder
	b.Grow(len("reminder:") + len(actor) + len(name) + 2 + maxDecimalInt64)
	b.WriteString("reminder:")
	b.WriteString(actor)
	b.WriteByte(':')
	b.WriteString(name)
	b.WriteByte(':')
	b.WriteString(strconv.FormatInt(dueAt, 10))
	return b.String()
}

// CheckFailure returns an error wrapping ErrInvalid if Retry or
// DeadLetter must refuse f: a bad actor (CheckActor) or id (CheckID), or an
// At or RetryAt outside the storable instants.
func CheckFailure(f Failure) error {
	if err := CheckActor(f.Actor); err != nil {
		return err
	}
	if err := CheckID(f.ID); err != nil {
		return err
	}
	if !TimeRepresentable(f.At) || !TimeRepresentable(f.RetryAt) {
		return fmt.Errorf("%w: failure of %q at %v, retry at %v: outside the storable range", ErrInvalid, f.ID, f.At, f.RetryAt)
	}
	return nil
}

// CheckReminder returns an error wrapping ErrInvalid if SetReminder must
// refuse r: a bad actor (CheckActor), an empty or too long Name, an empty
// Method, a zero or unstorable DueAt, a negative Period, or an actor and
// name so long that the ids of the reminder's messages (ReminderID) could
// exceed MaxIDLen.
func CheckReminder(r Reminder) error {
	if err := CheckActor(r.Actor); err != nil {
		return fmt.Errorf("reminder %q: %w", r.Name, err)
	}
	switch {
	case r.Name == "":
		return fmt.Errorf("%w: reminder of %q with an empty name", ErrInvalid, r.Actor)
	case len(r.Name) > MaxNameLen:
		return fmt.Errorf("%w: reminder name of %d bytes exceeds %d", ErrInvalid, len(r.Name), MaxNameLen)
	case r.Method == "":
		return fmt.Errorf("%w: reminder %q of %q has no method", ErrInvalid, r.Name, r.Actor)
	case r.DueAt.IsZero() || !TimeRepresentable(r.DueAt):
		return fmt.Errorf("%w: reminder %q of %q has DueAt %v, not a storable instant", ErrInvalid, r.Name, r.Actor, r.DueAt)
	case r.Period < 0:
		return fmt.Errorf("%w: reminder %q of %q has a negative period %v", ErrInvalid, r.Name, r.Actor, r.Period)
	case len("reminder:")+len(r.Actor)+len(r.Name)+2+maxDecimalInt64 > MaxIDLen:
		return fmt.Errorf("%w: reminder %q of %q: the ids of its messages could exceed %d bytes", ErrInvalid, r.Name, r.Actor, MaxIDLen)
	}
	return nil
}

// MarshalMessage encodes m in the stable binary format described at
// EncodingVersion. Every field is encoded as given; times are stored as
// UnixNano (an instant outside the representable range is clamped), so
// they decode in UTC without their monotonic reading. Headers are written
// in key order, so equal messages encode to equal bytes. The result does
// not alias m.
func MarshalMessage(m Message) []byte {
	return sealRecord(appendMessage(make([]byte, 0, messageSize(m)), m, time.Time{}))
}

// MarshalDeadLetter encodes d: its message's record with DeadAt added
// (see EncodingVersion).
func MarshalDeadLetter(d DeadLetter) []byte {
	return sealRecord(appendMessage(make([]byte, 0, messageSize(d.Message)+binary.MaxVarintLen64), d.Message, d.DeadAt))
}

func messageSize(m Message) int {
	n := 1 + 1 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + 4*binary.MaxVarintLen64 + crcLen
	for _, s := range [...]int{len(m.ID), len(m.Actor), len(m.Method), len(m.Payload), len(m.CorrelationID), len(m.TraceParent), len(m.LastError)} {
		n += binary.MaxVarintLen64 + s
	}
	n += binary.MaxVarintLen64
	for k, v := range m.Headers {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

func appendMessage(b []byte, m Message, deadAt time.Time) []byte {
	b = append(b, EncodingVersion)
	var flags byte
	if m.Ordered {
		flags |= flagOrdered
	}
	times := [...]struct {
		t    time.Time
		flag byte
	}{{m.DeliverAt, flagDeliverAt}, {m.AcceptedAt, flagAcceptedAt}, {m.NextAt, flagNextAt}, {deadAt, flagDeadAt}}
	for _, t := range times {
		if !t.t.IsZero() {
			flags |= t.flag
		}
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, uint64(m.Attempts))
	for _, t := range times {
		if !t.t.IsZero() {
			b = binary.AppendVarint(b, UnixNano(t.t))
		}
	}
	b = appendString(b, m.ID)
	b = appendString(b, m.Actor)
	b = appendString(b, m.Method)
	b = binary.AppendUvarint(b, uint64(len(m.Payload)))
	b = append(b, m.Payload...)
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m.Headers[k])
	}
	b = appendString(b, m.CorrelationID)
	b = appendString(b, m.TraceParent)
	return appendString(b, m.LastError)
}

// MarshalReminder encodes r in the stable binary format described at
// EncodingVersion, with DueAt as MarshalMessage stores times.
func MarshalReminder(r Reminder) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+4*binary.MaxVarintLen64+len(r.Actor)+len(r.Name)+len(r.Method)+len(r.Payload)+crcLen)
	b = append(b, EncodingVersion)
	var flags byte
	if r.Ordered {
		flags |= flagRemOrdered
	}
	if !r.DueAt.IsZero() {
		flags |= flagDueAt
	}
	b = append(b, flags)
	if !r.DueAt.IsZero() {
		b = binary.AppendVarint(b, UnixNano(r.DueAt))
	}
	b = binary.AppendVarint(b, int64(r.Period))
	b = appendString(b, r.Actor)
	b = appendString(b, r.Name)
	b = appendString(b, r.Method)
	b = binary.AppendUvarint(b, uint64(len(r.Payload)))
	b = append(b, r.Payload...)
	return sealRecord(b)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func sealRecord(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// UnmarshalMessage decodes a record written by MarshalMessage. Every error
// wraps ErrCorrupt: a record too short, with a bad checksum, an unknown
// version, or not in canonical form (over-long integers, unknown flags,
// header keys out of order, trailing bytes); a dead letter's record, which
// carries DeadAt, is refused too. Times decode in UTC, an empty Payload as
// nil, no headers as a nil map. The result never aliases b.
func UnmarshalMessage(b []byte) (Message, error) {
	m, deadAt, err := unmarshalMessage(b, "message")
	if err == nil && !deadAt.IsZero() {
		return Message{}, fmt.Errorf("%w: message record carries a DeadAt: it is a dead letter", ErrCorrupt)
	}
	return m, err
}

// UnmarshalDeadLetter decodes a record written by MarshalDeadLetter, with
// the rules of UnmarshalMessage. A message record decodes as a dead letter
// with a zero DeadAt.
func UnmarshalDeadLetter(b []byte) (DeadLetter, error) {
	m, deadAt, err := unmarshalMessage(b, "dead letter")
	if err != nil {
		return DeadLetter{}, err
	}
	return DeadLetter{Message: m, DeadAt: deadAt}, nil
}

func unmarshalMessage(b []byte, what string) (Message, time.Time, error) {
	d, err := openRecord(b, what)
	if err != nil {
		return Message{}, time.Time{}, err
	}
	var m Message
	flags := d.byte("flags")
	if flags&^(flagOrdered|flagDeliverAt|flagAcceptedAt|flagNextAt|flagDeadAt) != 0 {
		d.fail(fmt.Sprintf("unknown flags %#02x", flags))
	}
	m.Ordered = flags&flagOrdered != 0
	m.Seq = d.uvarint("seq")
	if a := d.uvarint("attempts"); a > math.MaxUint32 {
		d.fail(fmt.Sprintf("attempts %d overflow 32 bits", a))
	} else {
		m.Attempts = uint32(a)
	}
	var deadAt time.Time
	for _, t := range [...]struct {
		flag  byte
		dst   *time.Time
		field string
	}{{flagDeliverAt, &m.DeliverAt, "deliver at"}, {flagAcceptedAt, &m.AcceptedAt, "accepted at"},
		{flagNextAt, &m.NextAt, "next at"}, {flagDeadAt, &deadAt, "dead at"}} {
		if flags&t.flag != 0 {
			*t.dst = d.time(t.field)
		}
	}
	m.ID = d.string("id")
	m.Actor = d.string("actor")
	m.Method = d.string("method")
	m.Payload = d.bytes("payload")
	n := d.uvarint("header count")
	if n > uint64(len(d.b))/2 { // every header takes at least two bytes
		d.fail(fmt.Sprintf("header count %d exceeds the data", n))
	}
	if d.err == nil && n > 0 {
		m.Headers = make(map[string]string, n)
		prev := ""
		for i := range n {
			k, v := d.string("header key"), d.string("header value")
			if i > 0 && k <= prev {
				d.fail(fmt.Sprintf("header %q out of order", k))
			}
			m.Headers[k], prev = v, k
		}
	}
	m.CorrelationID = d.string("correlation id")
	m.TraceParent = d.string("traceparent")
	m.LastError = d.string("last error")
	if err := d.finish(); err != nil {
		return Message{}, time.Time{}, err
	}
	return m, deadAt, nil
}

// UnmarshalReminder decodes a record written by MarshalReminder, with the
// rules of UnmarshalMessage.
func UnmarshalReminder(b []byte) (Reminder, error) {
	d, err := openRecord(b, "reminder")
	if err != nil {
		return Reminder{}, err
	}
	var r Reminder
	flags := d.byte("flags")
	if flags&^(flagRemOrdered|flagDueAt) != 0 {
		d.fail(fmt.Sprintf("unknown flags %#02x", flags))
	}
	r.Ordered = flags&flagRemOrdered != 0
	if flags&flagDueAt != 0 {
		r.DueAt = d.time("due at")
	}
	r.Period = time.Duration(d.varint("period"))
	r.Actor = d.string("actor")
	r.Name = d.string("name")
	r.Method = d.string("method")
	r.Payload = d.bytes("payload")
	if err := d.finish(); err != nil {
		return Reminder{}, err
	}
	return r, nil
}

// openRecord checks the framing every record shares (length, checksum,
// version) and returns a decoder over what lies between the version byte
// and the checksum.
func openRecord(b []byte, what string) (*decoder, error) {
	if len(b) < 1+crcLen {
		return nil, fmt.Errorf("%w: %s record of %d bytes is too short", ErrCorrupt, what, len(b))
	}
	body, sum := b[:len(b)-crcLen], binary.BigEndian.Uint32(b[len(b)-crcLen:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		return nil, fmt.Errorf("%w: %s record checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, what, sum, got)
	}
	if body[0] != EncodingVersion {
		return nil, fmt.Errorf("%w: %s record has version %d, this build reads version %d", ErrCorrupt, what, body[0], EncodingVersion)
	}
	return &decoder{what: what, b: body[1:]}, nil
}

// decoder reads the canonical fields of a record. The first failure is
// kept in err; the reads after it return zero values.
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

// uvarint reads a minimally encoded uvarint.
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

// varint reads a minimally encoded zig-zag varint.
func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// time reads a UnixNano varint as a UTC time.
func (d *decoder) time(field string) time.Time {
	ns := d.varint(field)
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
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
