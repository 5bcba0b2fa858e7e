package raftlock

import (
	"time"

	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// The replica layer's framing with raftlock's version and results
// (commands.go: wire), as the tests build and read Raft entries and
// forward requests.

func encodeBatch(stamp time.Time, cmds [][]byte) []byte { return wire.EncodeBatch(stamp, cmds) }

func decodeBatch(b []byte) (int64, [][]byte, error) { return wire.DecodeBatch(b) }

func encodeForward(cmds [][]byte) []byte { return wire.EncodeForward(cmds) }

func decodeForward(b []byte) ([][]byte, error) { return wire.DecodeForward(b) }

func encodeForwardResponse(index uint64, results []result) []byte {
	return replica.EncodeForwardResponse(wire, codec{}, index, results)
}

func decodeForwardResponse(b []byte) (uint64, []result, error) {
	return replica.DecodeForwardResponse(wire, codec{}, b)
}
