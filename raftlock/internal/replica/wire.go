package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
)

// ErrBadWire is what decoding failures wrap when Wire.Malformed is nil.
var ErrBadWire = errors.New("replica: malformed encoding")

// Wire is the framing of a group's Raft entries (batches), forward
// requests and forward responses, in which commands and results are
// opaque bytes. Each starts with a version byte: the writer writes
// Version, a reader refuses any value below MinVersion or above Version.
// The framing itself has not changed since version 1; the version is its
// user's, who raises it when the commands or results inside change, so
// that a release that would misread them refuses them instead.
//
//	batch:            version | stamp (zig-zag varint, UnixNano) | commands
//	forward request:  version | commands
//	forward response: version | index (uvarint) | results
//
// where a list (commands, results) is a uvarint count, then each item as
// a uvarint length and its bytes.
type Wire struct {
	Version    byte
	MinVersion byte
	// Malformed is the sentinel decoding failures wrap; nil means
	// ErrBadWire.
	Malformed error
}

func (w Wire) decoder(b []byte) kv.Decoder {
	bad := w.Malformed
	if bad == nil {
		bad = ErrBadWire
	}
	d := kv.Decoder{B: b, Wraps: bad}
	if v := d.Byte(); d.Err == nil && (v < w.MinVersion || v > w.Version) {
		d.Fail(fmt.Sprintf("version %d, this build reads versions %d to %d", v, w.MinVersion, w.Version))
	}
	return d
}

// EncodeBatch returns a Raft log entry: the commands cmds, stamped with
// the leader's clock.
func (w Wire) EncodeBatch(stamp time.Time, cmds [][]byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+sizeOf(cmds))
	b = append(b, w.Version)
	b = binary.AppendVarint(b, stamp.UnixNano())
	return kv.AppendList(b, cmds)
}

// DecodeBatch parses a Raft log entry made by EncodeBatch. The commands
// alias b.
func (w Wire) DecodeBatch(b []byte) (stamp int64, cmds [][]byte, err error) {
	d := w.decoder(b)
	stamp = d.Varint()
	cmds = d.List()
	return stamp, cmds, d.Finish()
}

// EncodeForward returns a forward request: commands without a stamp,
// which the leader stamps itself. With no commands it is a nudge (see
// Group.HandleForward).
func (w Wire) EncodeForward(cmds [][]byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+sizeOf(cmds))
	b = append(b, w.Version)
	return kv.AppendList(b, cmds)
}

// DecodeForward parses a forward request. The commands alias b.
func (w Wire) DecodeForward(b []byte) ([][]byte, error) {
	d := w.decoder(b)
	cmds := d.List()
	return cmds, d.Finish()
}

// EncodeForwardResponse returns the answer to a forward request: the Raft
// index the follower's callers must see applied locally, and one encoded
// result per command, in order.
func (w Wire) EncodeForwardResponse(index uint64, results [][]byte) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+sizeOf(results))
	b = append(b, w.Version)
	b = binary.AppendUvarint(b, index)
	return kv.AppendList(b, results)
}

// DecodeForwardResponse parses a forward response. The results alias b.
func (w Wire) DecodeForwardResponse(b []byte) (index uint64, results [][]byte, err error) {
	d := w.decoder(b)
	index = d.Uvarint()
	results = d.List()
	if err := d.Finish(); err != nil {
		return 0, nil, err
	}
	return index, results, nil
}

// EncodeForwardResponse is the forward response of results, encoded by c,
// applied at index.
func EncodeForwardResponse[R any](w Wire, c Codec[R], index uint64, results []R) []byte {
	raw := make([][]byte, len(results))
	for i, r := range results {
		raw[i] = c.EncodeResult(r)
	}
	return w.EncodeForwardResponse(index, raw)
}

// DecodeForwardResponse parses a forward response and decodes its results
// with c.
func DecodeForwardResponse[R any](w Wire, c Codec[R], b []byte) (index uint64, results []R, err error) {
	index, raw, err := w.DecodeForwardResponse(b)
	if err != nil {
		return 0, nil, err
	}
	results = make([]R, len(raw))
	for i, r := range raw {
		if results[i], err = c.DecodeResult(r); err != nil {
			return 0, nil, err
		}
	}
	return index, results, nil
}

func sizeOf(items [][]byte) int {
	n := 0
	for _, it := range items {
		n += binary.MaxVarintLen64 + len(it)
	}
	return n
}
