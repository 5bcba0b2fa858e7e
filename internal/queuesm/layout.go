package queuesm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/queue"
)

// Buckets are the buckets the machine keeps its records in. In the keys
// below, A is an actor key in the escaped form of actorKey, T a type name
// in the same form, t an instant (UnixNano) as 8 bytes that sort in time
// order (appendTime), and seq 8 bytes big-endian, so a prefix cursor on A
// walks one actor's records in the order the rules need.
//
//	Meta       "seq" -> the last Seq given, uvarint
//	IDs        message id -> id record (idRec): where the message is, or
//	           when it left, and its first acceptance
//	Gone       t(goneAt) | id -> nil: the ids remembered after they left
//	Pending    A | seq -> message record (queue.MarshalMessage)
//	Ordered    A | seq -> t(NextAt): the pending ordered messages; the
//	           first under A is the actor's head
//	Due        A | t(NextAt) | seq -> nil: the pending messages Due may
//	           return: every unordered one and the ordered head
//	Scheduled  A | t(DeliverAt) | seq -> message record
//	Dead       t(DeadAt) | seq -> dead letter record (queue.MarshalDeadLetter)
//	Reminders  A | name -> reminder record (queue.MarshalReminder)
//	Timers     A | t(DueAt) | name -> nil
//	Actors     actor -> t(wake): the actor's earliest actionable instant
//	Wake       t(wake) | A -> nil
//	Types      type -> counters (pending, scheduled, dead, reminders)
//	Oldest     T | t(AcceptedAt) | seq -> nil, for every pending message
//
// The records go into snapshots and to later releases: they do not change
// without a new format number kept by the backend.
type Buckets struct {
	Meta, IDs, Gone, Pending, Ordered, Due, Scheduled, Dead, Reminders, Timers, Actors, Wake, Types, Oldest kv.Bucket
}

// BucketNames are the names NewBuckets asks for, one per field of Buckets,
// in the order of the fields.
var BucketNames = [...]string{"q.meta", "q.ids", "q.gone", "q.pending", "q.ordered", "q.due", "q.scheduled",
	"q.dead", "q.reminders", "q.timers", "q.actors", "q.wake", "q.types", "q.oldest"}

// NewBuckets returns the Buckets that bucket gives for BucketNames (for
// example kv.Mem.Bucket, or a function opening bbolt buckets).
func NewBuckets(bucket func(name string) kv.Bucket) Buckets {
	n := BucketNames
	return Buckets{Meta: bucket(n[0]), IDs: bucket(n[1]), Gone: bucket(n[2]), Pending: bucket(n[3]),
		Ordered: bucket(n[4]), Due: bucket(n[5]), Scheduled: bucket(n[6]), Dead: bucket(n[7]),
		Reminders: bucket(n[8]), Timers: bucket(n[9]), Actors: bucket(n[10]), Wake: bucket(n[11]),
		Types: bucket(n[12]), Oldest: bucket(n[13])}
}

var metaSeq = []byte("seq")

// actorKey returns actor escaped so that no encoded key is a prefix of
// another and bytewise order is kept: every 0x00 becomes 0x00 0xff, and
// 0x00 0x01 ends it. "c/1" and "c/10" thus have disjoint prefixes.
func actorKey(actor string) []byte {
	b := make([]byte, 0, len(actor)+2+8+8)
	for i := 0; i < len(actor); i++ {
		if actor[i] == 0 {
			b = append(b, 0, 0xff)
		} else {
			b = append(b, actor[i])
		}
	}
	return append(b, 0, 1)
}

// parseActorKey decodes the escaped actor at the start of k and returns it
// and the rest of k.
func parseActorKey(k []byte) (string, []byte, error) {
	var sb strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] != 0 {
			sb.WriteByte(k[i])
			continue
		}
		if i+1 == len(k) {
			break
		}
		switch k[i+1] {
		case 0xff:
			sb.WriteByte(0)
			i++
		case 1:
			return sb.String(), k[i+2:], nil
		default:
			return "", nil, fmt.Errorf("%w: key %x: bad escape", queue.ErrCorrupt, k)
		}
	}
	return "", nil, fmt.Errorf("%w: key %x: unterminated actor", queue.ErrCorrupt, k)
}

// typeOf is an actor's type: its key up to the first '/', or the whole key
// when it has none.
func typeOf(actor string) string {
	if i := strings.IndexByte(actor, '/'); i >= 0 {
		return actor[:i]
	}
	return actor
}

// appendTime appends ns so that bytewise order is time order (the sign
// bit flipped, big-endian).
func appendTime(b []byte, ns int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(ns)^(1<<63))
}

func readTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// join returns a new slice holding prefix then the rest: prefix is never
// appended to in place.
func join(prefix []byte, rest ...[]byte) []byte {
	n := len(prefix)
	for _, r := range rest {
		n += len(r)
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

func timeBytes(ns int64) []byte  { return appendTime(nil, ns) }
func seqBytes(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// seqKey is A | seq (Pending, Ordered).
func seqKey(a []byte, seq uint64) []byte { return join(a, seqBytes(seq)) }

// timeSeqKey is A | t | seq (Due, Scheduled, Oldest with T for A).
func timeSeqKey(a []byte, ns int64, seq uint64) []byte { return join(a, timeBytes(ns), seqBytes(seq)) }

// deadKey is t(DeadAt) | seq.
func deadKey(deadAt int64, seq uint64) []byte { return join(timeBytes(deadAt), seqBytes(seq)) }

// lastSeq reads the seq that ends a key.
func lastSeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// The states of an id.
const (
	statePending   = 1
	stateScheduled = 2
	stateDead      = 3
	stateGone      = 4
)

// idRec is what the machine remembers of a message id:
//
//	1      state (statePending...stateGone)
//	n      actor, uvarint length and bytes
//	1-10   seq, uvarint: the message's current Seq (0 once gone)
//	1-10   at, varint: DeliverAt when scheduled, DeadAt when dead,
//	       the instant it left when gone, 0 when pending
//	1-10   first Seq, uvarint, and
//	1-10   AcceptedAt, varint: the first acceptance, for duplicates
type idRec struct {
	state      byte
	actor      string
	seq        uint64
	at         int64
	firstSeq   uint64
	acceptedAt int64
}

func (r idRec) marshal() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*5+len(r.actor))
	b = append(b, r.state)
	b = kv.AppendString(b, r.actor)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendVarint(b, r.at)
	b = binary.AppendUvarint(b, r.firstSeq)
	return binary.AppendVarint(b, r.acceptedAt)
}

func unmarshalIDRec(b []byte) (idRec, error) {
	d := kv.Decoder{B: b, Wraps: queue.ErrCorrupt}
	r := idRec{state: d.Byte(), actor: d.String(), seq: d.Uvarint(), at: d.Varint(), firstSeq: d.Uvarint(), acceptedAt: d.Varint()}
	if d.Err == nil && (r.state < statePending || r.state > stateGone) {
		d.Fail(fmt.Sprintf("id record state %d", r.state))
	}
	if err := d.Finish(); err != nil {
		return idRec{}, fmt.Errorf("id record: %w", err)
	}
	return r, nil
}

// counters are a type's figures, its Types record: four uvarints.
type counters struct {
	pending, scheduled, dead, reminders uint64
}

func (c counters) zero() bool { return c == counters{} }

func (c counters) marshal() []byte {
	b := make([]byte, 0, 4*binary.MaxVarintLen64)
	for _, v := range [...]uint64{c.pending, c.scheduled, c.dead, c.reminders} {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func unmarshalCounters(b []byte) (counters, error) {
	d := kv.Decoder{B: b, Wraps: queue.ErrCorrupt}
	c := counters{pending: d.Uvarint(), scheduled: d.Uvarint(), dead: d.Uvarint(), reminders: d.Uvarint()}
	if err := d.Finish(); err != nil {
		return counters{}, fmt.Errorf("type record: %w", err)
	}
	return c, nil
}

// cloneKV copies a cursor's key and value, which are valid only until the
// bucket changes.
func cloneKV(k, v []byte) ([]byte, []byte) { return bytes.Clone(k), bytes.Clone(v) }
