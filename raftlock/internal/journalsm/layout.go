package journalsm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
)

// The records, bucket by bucket (Buckets):
//
//	actors     actor key -> actor record (journal.ActorState)
//	log        entry key -> entry record (journal.MarshalEntry)
//	snapshots  actor key -> snapshot record (journal.MarshalSnapshot)
//
// An entry key is uvarint(len(actor)) || actor || seq (8 bytes BE)
// (EntryKey), so an actor's entries are adjacent and in seq order, and an
// entry key less its last 8 bytes is its actor's EntryPrefix, which no
// other actor's prefix starts with. raftlock's overlay groups the log
// bucket by that prefix. Snapshots carry the records to other nodes and
// to later releases: they do not change without a new format number in
// raftlock's meta record.

// MarshalActor returns the actor record of st:
//
//	1-10  Tail, uvarint
//	1-10  Token, uvarint
//	1     flags: bit 0 = HasSnapshot
//	1-10  SnapshotSeq, uvarint
func MarshalActor(st journal.ActorState) []byte {
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
	d := kv.Decoder{B: b}
	var st journal.ActorState
	st.Tail = d.Uvarint()
	st.Token = d.Uvarint()
	switch f := d.Byte(); f {
	case 0:
	case 1:
		st.HasSnapshot = true
	default:
		d.Fail(fmt.Sprintf("flags %#x", f))
	}
	st.SnapshotSeq = d.Uvarint()
	if err := d.Finish(); err != nil {
		return journal.ActorState{}, fmt.Errorf("%w: actor record: %w", journal.ErrCorrupt, err)
	}
	return st, nil
}

// EntryPrefix is the prefix of the entry keys of actor.
func EntryPrefix(actor string) []byte {
	return kv.AppendString(make([]byte, 0, binary.MaxVarintLen64+len(actor)+8), actor)
}

// EntryKey is the key of the entry at seq of the actor with the given
// EntryPrefix.
func EntryKey(prefix []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix[:len(prefix):len(prefix)], seq)
}

func isEntryKeyOf(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

func entrySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }
