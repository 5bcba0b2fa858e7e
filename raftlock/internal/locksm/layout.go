package locksm

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// The records, bucket by bucket (Buckets):
//
//	sessions   session id -> session record
//	expiry     deadline (8 bytes, order-preserving) || session id -> empty
//	held       uvarint(len(session id)) || session id || lock key -> empty
//	locks      lock key -> lock record (grant)
//
// The records are uvarints and length-prefixed strings, listed with their
// encoders below. Snapshots carry them to other nodes and to later
// releases: they do not change without a new format number in raftlock's
// meta record.

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
	return kv.AppendString(b, s.owner)
}

func unmarshalSession(b []byte) (session, error) {
	d := kv.Decoder{B: b}
	s := session{ttl: int64(d.Uvarint()), deadline: int64(d.Uint64()), owner: d.String()}
	if err := d.Finish(); err != nil {
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
	return kv.AppendString(make([]byte, 0, binary.MaxVarintLen64+len(id)), string(id))
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
	return kv.AppendString(b, string(g.session))
}

func unmarshalGrant(b []byte) (grant, error) {
	d := kv.Decoder{B: b}
	g := grant{token: d.Uvarint(), session: lock.SessionID(d.String())}
	if err := d.Finish(); err != nil {
		return grant{}, fmt.Errorf("%w: lock record: %w", journal.ErrCorrupt, err)
	}
	return g, nil
}

// addDuration returns t+d in UnixNano, saturating instead of overflowing.
func addDuration(t int64, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}
