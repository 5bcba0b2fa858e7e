package raftlock

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock/internal/kv"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

// The state machine's bbolt file (fsm.db, and every FSM snapshot, which is a
// copy of it) has these top-level buckets:
//
//	meta       "state" -> fsmMeta (format, applied index, clock, counters)
//	sessions   session id -> session record                  (locksm)
//	expiry     deadline || session id -> empty                (locksm)
//	held       session id || lock key -> empty               (locksm)
//	locks      lock key -> lock record                        (locksm)
//	actors     actor key -> actor record (journal.ActorState) (journalsm)
//	log        entry key -> entry record                      (journalsm)
//	snapshots  actor key -> snapshot record                   (journalsm)
//	dedup      chunk number (8 bytes BE) -> dedup records, oldest first
//
// The state machines' records, and how their keys are made, are documented
// with them (internal/locksm/layout.go, internal/journalsm/layout.go); the
// file, the meta record and the dedup table are raftlock's. An entry key
// is uvarint(len(actor)) || actor || seq (8 bytes BE), so an actor's
// entries are adjacent and in seq order. The file is written behind
// the applies (fsm_overlay.go): a flush writes thousands of records in one
// transaction, sorted, so the appends of one flush share pages, and an
// actor's entries need no separate bucket of newest entries (format 1 had
// one, "recent", to bound the pages each Raft entry rewrote).
//
// The dedup table is a log in chunks: the results of up to dedupChunk
// consecutive commands per record, each as uvarint(len(dedup key)) || dedup
// key || varint(applied at: the state machine's clock when the command was
// applied, UnixNano) || uvarint(len(result)) || result, where a dedup key
// is uvarint(len(origin)) || origin || seq (8 bytes BE). Command number n
// (counted from 1, fsmMeta.dedupNext) is in chunk (n-1)/dedupChunk. A
// command appends to the last chunk, so a flush rewrites one or two chunks
// instead of writing two records per command; a sweep deletes the oldest
// chunks and cuts the oldest results off the first chunk it keeps. Lookups
// by dedup key go through an index in memory (fsm.dedupIndex: dedup key ->
// chunk number), derived from the bucket: kept by the applies and rebuilt
// by Restore.
//
// Format 2 had the same dedup chunks without the times, and a meta record
// without dedupForgot and dedupOldest. Format 1 (before write-behind) also
// had "recent" (entry key -> entry record: each actor's newest entries,
// the older ones in log) and kept the dedup table as "dedup" (dedup key ->
// result) and "deduplog" (dedup number -> dedup key). Restore migrates a
// file of either format (a snapshot taken by an earlier release, sent by
// one or kept on disk; fsm_migrate.go), so a node upgraded in place still
// starts from its snapshots.
//
// Entry and snapshot records are exactly journal.MarshalEntry and
// journal.MarshalSnapshot; results are encodeResult. The other records are
// uvarints and length-prefixed strings, listed with their encoders (below,
// and in the state machines' layout.go).
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
const fsmFormat = 3

// MaxKeyLen is the longest lock key, in bytes, Acquire accepts (longer keys
// fail with lock.ErrInvalid). It equals journal.MaxActorLen: a lock key is
// the key of the actor whose journal it fences.
const MaxKeyLen = locksm.MaxKeyLen

// DedupWindow and DedupRetention bound what the state machine remembers
// of the commands that carried an id: the result of each is kept while it
// is among the last DedupWindow such commands OR was applied less than
// DedupRetention ago, by the state machine's clock (the leader-stamped
// clock, so every replica judges alike). Only a result outside both bounds
// is forgotten, in sweeps (each forgets about 1/64 of the window, or of
// the retention, at once), oldest first. A retry of a remembered command
// returns the original result instead of running again.
//
// A retry that comes later than that may find its result forgotten; the
// state machine then answers it ErrUnknownOutcome and does not run it (see
// applyCommand), so a caller is never told "not applied" (a conflict, a
// fence) about a command that was. At 20,000 writes/s the count keeps 5 s
// of history and the retention 30 s (600,000 results, some 50 MiB of
// index), far longer than a retry normally takes (an election, a few
// forward timeouts); below 3,300 writes/s the count keeps more than the
// retention. Both are part of the state machine's definition (every
// replica must forget the same results at the same command), hence
// constants, not Config fields.
const (
	DedupWindow    = 100_000
	DedupRetention = 30 * time.Second
)

// fsmMeta is the state machine's bookkeeping, one record in meta/state:
//
//	1     format (fsmFormat)
//	8x8   applied index, clock (UnixNano, two's complement), last token,
//	      last session number, dedup numbers issued, dedup entries held,
//	      dedupForgot, dedupOldest (both UnixNano, two's complement);
//	      each 8 bytes big-endian
type fsmMeta struct {
	applied    uint64          // index of the last Raft entry applied
	time       int64           // the state machine's clock: the latest leader stamp, UnixNano
	locks      locksm.Counters // the last fencing token granted, the last session number issued
	dedupNext  uint64          // dedup numbers issued so far
	dedupCount uint64          // entries in the dedup table
	// dedupForgot is when the newest result the dedup table forgot was
	// applied (math.MinInt64 if it forgot none): the table holds every
	// result applied later. dedupOldest is when its oldest result was
	// applied (meaningless while it is empty).
	dedupForgot int64
	dedupOldest int64
}

const metaLen = 1 + 8*8

func (m fsmMeta) marshal() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, fsmFormat)
	for _, v := range [...]uint64{m.applied, uint64(m.time), m.locks.Token, m.locks.Sessions, m.dedupNext, m.dedupCount,
		uint64(m.dedupForgot), uint64(m.dedupOldest)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func unmarshalMeta(b []byte) (fsmMeta, error) {
	if len(b) != metaLen || b[0] != fsmFormat {
		return fsmMeta{}, fmt.Errorf("%w: state machine meta record of %d bytes, format %v", journal.ErrCorrupt, len(b), b[:min(len(b), 1)])
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[1+8*i:]) }
	return fsmMeta{applied: u(0), time: int64(u(1)), locks: locksm.Counters{Token: u(2), Sessions: u(3)}, dedupNext: u(4), dedupCount: u(5),
		dedupForgot: int64(u(6)), dedupOldest: int64(u(7))}, nil
}

// newMeta is the meta record of an empty state machine.
func newMeta() fsmMeta { return fsmMeta{dedupForgot: math.MinInt64} }

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

// dedupSlackTime is how long past the retention the oldest result stays
// before a sweep: 1/64 of the retention (about 470 ms for DedupRetention).
func dedupSlackTime(retention int64) int64 { return retention / 64 }

// addDuration returns t+d in UnixNano, saturating instead of overflowing
// (a retention added to a clock near the end of time).
func addDuration(t int64, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

// appendDedupRecord appends one result, applied at the clock at, to a
// dedup chunk.
func appendDedupRecord(chunk, key []byte, at int64, res []byte) []byte {
	chunk = appendBytes(chunk, key)
	chunk = binary.AppendVarint(chunk, at)
	return appendBytes(chunk, res)
}

// forEachDedupRecord calls fn with the dedup key, the time applied and the
// encoded result of each record of chunk, oldest first, and the offset of
// the record after it, until fn returns false.
func forEachDedupRecord(chunk []byte, fn func(key []byte, at int64, res []byte, end int) bool) error {
	d := kv.Decoder{B: chunk, Wraps: errBadWire}
	for len(d.B) > 0 && d.Err == nil {
		k, at, r := d.Bytes(), d.Varint(), d.Bytes()
		if d.Err == nil && !fn(k, at, r, len(chunk)-len(d.B)) {
			return nil
		}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: dedup chunk: %w", journal.ErrCorrupt, err)
	}
	return nil
}

func u64Key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
