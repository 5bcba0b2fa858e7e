package raftlock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// The state machine's bbolt file (fsm.db, and every FSM snapshot, which is a
// copy of it) has these top-level buckets:
//
//	meta       "state" -> fsmMeta (format, applied index, clock, counters)
//	sessions   session id -> session record
//	expiry     deadline (8 bytes, order-preserving) || session id -> empty
//	held       uvarint(len(session id)) || session id || lock key -> empty
//	locks      lock key -> lock record
//	actors     actor key -> actor record (journal.ActorState)
//	log        entry key -> entry record
//	snapshots  actor key -> snapshot record
//	dedup      chunk number (8 bytes BE) -> dedup records, oldest first
//
// An entry key is uvarint(len(actor)) || actor || seq (8 bytes BE), so an
// actor's entries are adjacent and in seq order. The file is written behind
// the applies (fsm_overlay.go): a flush writes thousands of records in one
// transaction, sorted, so the appends of one flush share pages, and an
// actor's entries need no separate bucket of newest entries (format 1 had
// one, "recent", to bound the pages each Raft entry rewrote).
//
// The dedup table is a log in chunks: the results of up to dedupChunk
// consecutive commands per record, each as uvarint(len(dedup key)) || dedup
// key || uvarint(len(result)) || result, where a dedup key is
// uvarint(len(origin)) || origin || seq (8 bytes BE). Command number n
// (counted from 1, fsmMeta.dedupNext) is in chunk (n-1)/dedupChunk. A
// command appends to the last chunk, so a flush rewrites one or two chunks
// instead of writing two records per command; a sweep deletes the oldest
// chunks and cuts the oldest results off the first chunk it keeps, so the
// table remembers exactly the same commands as format 1 did. Lookups by
// dedup key go through an index in memory (fsm.dedupIndex: dedup key ->
// chunk number), derived from the bucket: kept by the applies and rebuilt
// by Restore.
//
// Format 1 (before write-behind) also had "recent" (entry key -> entry
// record: each actor's newest entries, the older ones in log) and kept the
// dedup table as "dedup" (dedup key -> result) and "deduplog" (dedup
// number -> dedup key). Restore migrates a format 1 file (a snapshot taken
// by an earlier release, sent by one or kept on disk), so a node upgraded
// in place still starts from its snapshots.
//
// Entry and snapshot records are exactly journal.MarshalEntry and
// journal.MarshalSnapshot; results are encodeResult. The other records are
// uvarints and length-prefixed strings, listed with their encoders below.
// The file is never read by another release (it is rebuilt from the log on
// every start), but snapshots are sent to other nodes, so fsmMeta carries a
// format number that Restore checks.
var (
	bucketMeta      = []byte("meta")
	bucketSessions  = []byte("sessions")
	bucketExpiry    = []byte("expiry")
	bucketHeld      = []byte("held")
	bucketLocks     = []byte("locks")
	bucketActors    = []byte("actors")
	bucketLog       = []byte("log")
	bucketSnapshots = []byte("snapshots")
	bucketDedup     = []byte("dedup")

	// allBuckets is indexed by bucketID.
	allBuckets = [numBuckets][]byte{bMeta: bucketMeta, bSessions: bucketSessions, bExpiry: bucketExpiry,
		bHeld: bucketHeld, bLocks: bucketLocks, bActors: bucketActors, bLog: bucketLog,
		bSnapshots: bucketSnapshots, bDedup: bucketDedup}

	keyState = []byte("state")
)

// fsmFormat is the layout version stored in fsmMeta.
const fsmFormat = 2

// MaxKeyLen is the longest lock key, in bytes, Acquire accepts (longer keys
// fail with lock.ErrInvalid). It equals journal.MaxActorLen: a lock key is
// the key of the actor whose journal it fences.
const MaxKeyLen = journal.MaxActorLen

// maxOwnerLen bounds CreateSession's owner (a node id).
const maxOwnerLen = 1024

// DedupWindow is how many deduplicated commands the state machine
// remembers at least: the result of each of the last DedupWindow commands
// that carried an id is kept (and up to 1/64 more, forgotten in sweeps), so
// a retry of any of them returns the original result instead of running
// again. At 20,000 writes/s that is 5 s of
// history, far longer than a retry takes (an election and a round trip).
// It is part of the state machine's definition (every replica must evict
// the same entries), hence a constant, not a Config field.
const DedupWindow = 100_000

// fsmMeta is the state machine's bookkeeping, one record in meta/state:
//
//	1     format (fsmFormat)
//	8x6   applied index, clock (UnixNano, two's complement), last token,
//	      last session number, dedup numbers issued, dedup entries held;
//	      each 8 bytes big-endian
type fsmMeta struct {
	applied    uint64 // index of the last Raft entry applied
	time       int64  // the state machine's clock: the latest leader stamp, UnixNano
	token      uint64 // the last fencing token granted
	sessions   uint64 // the last session number issued
	dedupNext  uint64 // dedup numbers issued so far
	dedupCount uint64 // entries in the dedup table
}

const metaLen = 1 + 8*6

func (m fsmMeta) marshal() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, fsmFormat)
	for _, v := range [...]uint64{m.applied, uint64(m.time), m.token, m.sessions, m.dedupNext, m.dedupCount} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func unmarshalMeta(b []byte) (fsmMeta, error) {
	if len(b) != metaLen || b[0] != fsmFormat {
		return fsmMeta{}, fmt.Errorf("%w: state machine meta record of %d bytes, format %v", journal.ErrCorrupt, len(b), b[:min(len(b), 1)])
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[1+8*i:]) }
	return fsmMeta{applied: u(0), time: int64(u(1)), token: u(2), sessions: u(3), dedupNext: u(4), dedupCount: u(5)}, nil
}

// session is a session record:
//
//	1-10  ttl in nanoseconds, uvarint
//	8     deadline, UnixNano, big-endian two's complement
//	n     owner: uvarint length, bytes
type session struct {
	ttl      int64
	deadline int64 // lapsed once the state machine's clock is past it
	owner    string
}

func (s session) marshal() []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+8+len(s.owner))
	b = binary.AppendUvarint(b, uint64(s.ttl))
	b = binary.BigEndian.AppendUint64(b, uint64(s.deadline))
	return appendString(b, s.owner)
}

func unmarshalSession(b []byte) (session, error) {
	d := wireDecoder{b: b}
	var s session
	s.ttl = int64(d.uvarint())
	if d.err == nil && len(d.b) < 8 {
		d.fail("truncated deadline")
	}
	if d.err == nil {
		s.deadline = int64(binary.BigEndian.Uint64(d.b))
		d.b = d.b[8:]
	}
	s.owner = d.string()
	if err := d.finish(); err != nil {
		return session{}, fmt.Errorf("%w: session record: %w", journal.ErrCorrupt, err)
	}
	return s, nil
}

// expiryKey orders sessions by deadline: the deadline with its sign bit
// flipped (so negative instants sort first), then the session id.
func expiryKey(deadline int64, id lock.SessionID) []byte {
	b := make([]byte, 0, 8+len(id))
	b = binary.BigEndian.AppendUint64(b, uint64(deadline)^(1<<63))
	return append(b, id...)
}

func expiryDeadline(k []byte) int64 { return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)) }

// heldPrefix is the prefix of the held keys of session id; a uvarint length
// is self-delimiting, so no session's prefix is a prefix of another's.
func heldPrefix(id lock.SessionID) []byte {
	return appendString(make([]byte, 0, binary.MaxVarintLen64+len(id)), string(id))
}

func heldKey(id lock.SessionID, key string) []byte {
	return append(heldPrefix(id), key...)
}

// grant is a lock record:
//
//	1-10  token, uvarint
//	n     session id: uvarint length, bytes
type grant struct {
	token   uint64
	session lock.SessionID
}

func (g grant) marshal() []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(g.session))
	b = binary.AppendUvarint(b, g.token)
	return appendString(b, string(g.session))
}

func unmarshalGrant(b []byte) (grant, error) {
	d := wireDecoder{b: b}
	g := grant{token: d.uvarint(), session: lock.SessionID(d.string())}
	if err := d.finish(); err != nil {
		return grant{}, fmt.Errorf("%w: lock record: %w", journal.ErrCorrupt, err)
	}
	return g, nil
}

// Actor records hold journal.ActorState:
//
//	1-10  Tail, uvarint
//	1-10  Token, uvarint
//	1     flags: bit 0 = HasSnapshot
//	1-10  SnapshotSeq, uvarint
func marshalActor(st journal.ActorState) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+1)
	b = binary.AppendUvarint(b, st.Tail)
	b = binary.AppendUvarint(b, st.Token)
	if st.HasSnapshot {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return binary.AppendUvarint(b, st.SnapshotSeq)
}

func unmarshalActor(b []byte) (journal.ActorState, error) {
	d := wireDecoder{b: b}
	var st journal.ActorState
	st.Tail = d.uvarint()
	st.Token = d.uvarint()
	switch f := d.byte(); f {
	case 0:
	case 1:
		st.HasSnapshot = true
	default:
		d.fail(fmt.Sprintf("flags %#x", f))
	}
	st.SnapshotSeq = d.uvarint()
	if err := d.finish(); err != nil {
		return journal.ActorState{}, fmt.Errorf("%w: actor record: %w", journal.ErrCorrupt, err)
	}
	return st, nil
}

// actorPrefix is the prefix of the entry keys of actor.
func actorPrefix(actor string) []byte {
	return appendString(make([]byte, 0, binary.MaxVarintLen64+len(actor)+8), actor)
}

func entryKey(prefix []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix[:len(prefix):len(prefix)], seq)
}

func isEntryKeyOf(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

func entrySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

func dedupKey(id cmdID) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(id.origin)+8)
	b = appendString(b, id.origin)
	return binary.BigEndian.AppendUint64(b, id.seq)
}

// dedupChunk is how many results one record of the dedup bucket holds at
// most.
const dedupChunk = 64

// dedupSlack is how far past the window the dedup table grows before a
// sweep: 1/64 of the window (1562 results for DedupWindow).
func dedupSlack(window uint64) uint64 { return window / 64 }

// appendDedupRecord appends one result to a dedup chunk.
func appendDedupRecord(chunk, key, res []byte) []byte {
	return appendBytes(appendBytes(chunk, key), res)
}

// forEachDedupRecord calls fn with the dedup key and encoded result of each
// record of chunk, oldest first, and the offset of the record after it,
// until fn returns false.
func forEachDedupRecord(chunk []byte, fn func(key, res []byte, end int) bool) error {
	d := wireDecoder{b: chunk}
	for len(d.b) > 0 && d.err == nil {
		k, r := d.bytes(), d.bytes()
		if d.err == nil && !fn(k, r, len(chunk)-len(d.b)) {
			return nil
		}
	}
	if err := d.finish(); err != nil {
		return fmt.Errorf("%w: dedup chunk: %w", journal.ErrCorrupt, err)
	}
	return nil
}

func u64Key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// addDuration returns t+d in UnixNano, saturating instead of overflowing.
func addDuration(t int64, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}
