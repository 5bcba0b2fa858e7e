package replica

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestWireRoundTrip: batches, forward requests and forward responses
// decode to what was encoded; a version outside the range is refused
// with the sentinel the Wire names.
func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	bad := errors.New("bad wire")
	w := Wire{Version: 2, MinVersion: 1, Malformed: bad}
	cmds := [][]byte{[]byte("a"), []byte("bc"), {}}
	stamp := time.Date(2026, 11, 26, 10, 0, 0, 123, time.UTC)
	ts, got, err := w.DecodeBatch(w.EncodeBatch(stamp, cmds))
	if err != nil || ts != stamp.UnixNano() || len(got) != 3 || string(got[1]) != "bc" {
		t.Fatalf("batch: %v %q %v", ts, got, err)
	}
	for _, v := range []byte{0, 3} {
		b := append([]byte{v}, w.EncodeBatch(stamp, cmds)[1:]...)
		if _, _, err := w.DecodeBatch(b); !errors.Is(err, bad) {
			t.Fatalf("batch of version %d: %v", v, err)
		}
	}
	if _, _, err := (Wire{Version: 1, MinVersion: 1}).DecodeBatch([]byte{2}); !errors.Is(err, ErrBadWire) {
		t.Fatalf("default sentinel: %v", err)
	}
	if _, err := w.DecodeForward(w.EncodeForward(nil)); err != nil {
		t.Fatalf("empty forward (a nudge): %v", err)
	}
	fwd, err := w.DecodeForward(w.EncodeForward(cmds))
	if err != nil || len(fwd) != 3 || string(fwd[0]) != "a" {
		t.Fatalf("forward: %q %v", fwd, err)
	}
	rs := []sum{{value: 9}, {retry: true, text: "not the leader"}, {}}
	idx, grs, err := DecodeForwardResponse(w, counterCodec{}, EncodeForwardResponse(w, counterCodec{}, 77, rs))
	if err != nil || idx != 77 || !reflect.DeepEqual(grs, rs) {
		t.Fatalf("forward response: %d %+v %v", idx, grs, err)
	}
	full := w.EncodeForwardResponse(5, [][]byte{[]byte("r")})
	for n := range len(full) {
		if _, _, err := w.DecodeForwardResponse(full[:n]); !errors.Is(err, bad) {
			t.Fatalf("prefix of %d/%d bytes: %v", n, len(full), err)
		}
	}
}

// TestWireBytes pins the framing byte for byte: Raft logs and forward
// requests written by earlier releases must still read.
func TestWireBytes(t *testing.T) {
	t.Parallel()
	w := Wire{Version: 2, MinVersion: 1}
	cmds := [][]byte{[]byte("a"), []byte("bc")}
	for _, tc := range []struct {
		name      string
		got, want []byte
	}{
		{"batch", w.EncodeBatch(time.Unix(0, -3), cmds), []byte{2, 5, 2, 1, 'a', 2, 'b', 'c'}},
		{"forward", w.EncodeForward(cmds), []byte{2, 2, 1, 'a', 2, 'b', 'c'}},
		{"nudge", w.EncodeForward(nil), []byte{2, 0}},
		{"response", w.EncodeForwardResponse(300, [][]byte{[]byte("x"), {}}), []byte{2, 0xac, 0x02, 2, 1, 'x', 0}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}
