package kv

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// TestDecoder: what the Append functions write decodes back, every strict
// prefix fails with the sentinel the decoder wraps, and a failure sticks.
func TestDecoder(t *testing.T) {
	t.Parallel()
	b := AppendString(nil, "s")
	b = binary.AppendVarint(b, -300)
	b = AppendBytes(b, []byte{1, 2})
	b = AppendList(b, [][]byte{[]byte("x"), {}, []byte("yz")})
	b = binary.AppendUvarint(b, 7)
	d := Decoder{B: b}
	s, v, by, list, u := d.String(), d.Varint(), d.Bytes(), d.List(), d.Uvarint()
	if err := d.Finish(); err != nil || s != "s" || v != -300 || !slices.Equal(by, []byte{1, 2}) || u != 7 ||
		len(list) != 3 || string(list[0]) != "x" || len(list[1]) != 0 || string(list[2]) != "yz" {
		t.Fatalf("decoded %q %d %v %q %d, %v", s, v, by, list, u, err)
	}
	if len(by) != cap(by) {
		t.Fatalf("Bytes returned a slice of cap %d, len %d: appending would overwrite the input", cap(by), len(by))
	}
	bad := errors.New("bad wire")
	for n := range len(b) {
		d := Decoder{B: b[:n], Wraps: bad}
		_, _, _, _, _ = d.String(), d.Varint(), d.Bytes(), d.List(), d.Uvarint()
		if err := d.Finish(); !errors.Is(err, bad) || errors.Is(err, ErrRecord) {
			t.Fatalf("prefix of %d/%d bytes: %v", n, len(b), err)
		}
	}
	d = Decoder{B: []byte{5}}
	if d.List(); !errors.Is(d.Finish(), ErrRecord) {
		t.Fatalf("a count beyond the data: %v", d.Err)
	}
}
