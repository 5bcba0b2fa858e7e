package raftlock

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/internal/queuesm"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
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
//	q.*        the message queues: the buckets of internal/queuesm
//	           (queuesm.BucketNames; layout.go there)
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
// The dedup table is the replica layer's (internal/replica/dedup documents
// its records): chunks of up to 64 results, each with the time it was
// applied, under an 8-byte chunk number; a dedup key is
// uvarint(len(origin)) || origin || seq (8 bytes BE), the command's id.
// Lookups by dedup key go through an index in memory (fsm.dedupIndex: dedup
// key -> chunk number), derived from the bucket: kept by the applies and
// rebuilt by Restore.
//
// Format 4 added the q.* buckets; format 3 is format 4 without them (no
// messages), and its meta record differs only in the format byte. A
// release before the queues refuses a snapshot of format 4 rather than
// restore the journals without their queues.
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
// journal.MarshalSnapshot; the results in the dedup table are
// encodeResult. The other records are
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

	// allBuckets is indexed by bucketID: raftlock's, then the queue
	// machine's (queuesm.BucketNames, "q." and a name).
	allBuckets = func() [numBuckets][]byte {
		all := [numBuckets][]byte{bMeta: bucketMeta, bSessions: bucketSessions, bExpiry: bucketExpiry,
			bHeld: bucketHeld, bLocks: bucketLocks, bActors: bucketActors, bLog: bucketLog,
			bSnapshots: bucketSnapshots, bDedup: bucketDedup}
		for i, name := range queuesm.BucketNames {
			all[bQueue0+bucketID(i)] = []byte(name)
		}
		return all
	}()

	keyState = []byte("state")
)

// fsmFormat is the layout version stored in fsmMeta.
const fsmFormat = 4

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
	applied uint64          // index of the last Raft entry applied
	time    int64           // the state machine's clock: the latest leader stamp, UnixNano
	locks   locksm.Counters // the last fencing token granted, the last session number issued
	// dedup is the dedup table's bookkeeping: dedup numbers issued,
	// entries held, when the newest result it forgot was applied
	// (math.MinInt64 if it forgot none: it holds every result applied
	// later), and when its oldest result was applied.
	dedup dedup.State
}

const metaLen = 1 + 8*8

func (m fsmMeta) marshal() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, fsmFormat)
	for _, v := range [...]uint64{m.applied, uint64(m.time), m.locks.Token, m.locks.Sessions, m.dedup.Next, m.dedup.Count,
		uint64(m.dedup.Forgot), uint64(m.dedup.Oldest)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func unmarshalMeta(b []byte) (fsmMeta, error) {
	if len(b) != metaLen || b[0] != fsmFormat {
		return fsmMeta{}, fmt.Errorf("%w: state machine meta record of %d bytes, format %v", journal.ErrCorrupt, len(b), b[:min(len(b), 1)])
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[1+8*i:]) }
	return fsmMeta{applied: u(0), time: int64(u(1)), locks: locksm.Counters{Token: u(2), Sessions: u(3)},
		dedup: dedup.State{Next: u(4), Count: u(5), Forgot: int64(u(6)), Oldest: int64(u(7))}}, nil
}

// newMeta is the meta record of an empty state machine.
func newMeta() fsmMeta { return fsmMeta{dedup: dedup.NewState()} }

func dedupKey(id cmdID) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(id.origin)+8)
	b = appendString(b, id.origin)
	return binary.BigEndian.AppendUint64(b, id.seq)
}

func u64Key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
