package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		e    Entry
	}{
		{"zero", Entry{}},
		{"all fields", Entry{Seq: 42, Kind: KindInvocation, Actor: "account/7", Method: "Deposit", Payload: []byte(`{"amount":5}`),
			Time: time.Date(2026, 11, 26, 9, 30, 0, 999999999, time.UTC), CorrelationID: "c-1",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Token: 1 << 40, IdempotencyKey: "idem"}},
		{"max integers", Entry{Seq: math.MaxUint64, Token: math.MaxUint64, Kind: 255}},
		{"binary strings", Entry{Actor: "\x00\xff", Method: strings.Repeat("m", 300), Payload: []byte{0}}},
		{"epoch", Entry{Time: time.Unix(0, 0).UTC()}},
		{"negative time", Entry{Time: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"time bounds", Entry{Time: minTime}},
		{"time upper bound", Entry{Time: maxTime}},
		{"big payload", Entry{Payload: bytes.Repeat([]byte{7}, 1<<16)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := MarshalEntry(tc.e)
			got, err := UnmarshalEntry(b)
			if err != nil {
				t.Fatalf("UnmarshalEntry: %v", err)
			}
			if !entriesEqual(got, tc.e) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.e)
			}
			if again := MarshalEntry(got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n% x\n% x", again, b)
			}
		})
	}
}

// entriesEqual compares exactly; Time with == (location included).
func entriesEqual(a, b Entry) bool {
	return a.Seq == b.Seq && a.Kind == b.Kind && a.Actor == b.Actor && a.Method == b.Method &&
		bytes.Equal(a.Payload, b.Payload) && a.Time == b.Time && a.CorrelationID == b.CorrelationID &&
		a.TraceID == b.TraceID && a.Token == b.Token && a.IdempotencyKey == b.IdempotencyKey
}

func TestEntryNormalisation(t *testing.T) {
	loc := time.FixedZone("X", -5*3600)
	in := Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, loc), Payload: []byte{}}
	got, err := UnmarshalEntry(MarshalEntry(in))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(in.Time) || got.Time.Location() != time.UTC {
		t.Errorf("time %v decoded as %v, want the same instant in UTC", in.Time, got.Time)
	}
	if got.Payload != nil {
		t.Errorf("empty payload decoded as %#v, want nil", got.Payload)
	}
	// Out-of-range times are clamped by MarshalEntry (Append rejects them).
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if TimeRepresentable(far) {
		t.Fatalf("year 3000 reported representable")
	}
	got, _ = UnmarshalEntry(MarshalEntry(Entry{Time: far}))
	if got.Time != maxTime {
		t.Errorf("year 3000 decoded as %v, want %v", got.Time, maxTime)
	}
}

// TestGoldenEncoding pins version 1: these bytes are in the package
// documentation and must never change.
func TestGoldenEncoding(t *testing.T) {
	e := Entry{Seq: 1, Kind: KindInvocation, Token: 7, Actor: "a", Method: "m", Payload: []byte("hi"), Time: time.Unix(0, 1)}
	if got, want := hex.EncodeToString(MarshalEntry(e)), "0101010701020161016d000000026869c9857942"; got != want {
		t.Errorf("MarshalEntry = %s, want %s", got, want)
	}
	s := Snapshot{Seq: 3, Token: 7, Data: []byte("s")}
	if got, want := hex.EncodeToString(MarshalSnapshot(s)), "01030701731adbcb47"; got != want {
		t.Errorf("MarshalSnapshot = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(marshalMeta(ActorState{Tail: 9, Token: 7, HasSnapshot: true, SnapshotSeq: 3})), "0109070103"; !strings.HasPrefix(got, want) || len(got) != len(want)+8 {
		t.Errorf("marshalMeta = %s, want %s + crc", got, want)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, s := range []Snapshot{{}, {Seq: 1, Token: 2, Data: []byte("state")}, {Seq: math.MaxUint64, Token: math.MaxUint64, Data: bytes.Repeat([]byte{1}, 5000)}} {
		b := MarshalSnapshot(s)
		got, err := UnmarshalSnapshot(b)
		if err != nil {
			t.Fatalf("UnmarshalSnapshot(%+v): %v", s, err)
		}
		if got.Seq != s.Seq || got.Token != s.Token || !bytes.Equal(got.Data, s.Data) || (len(s.Data) == 0) != (got.Data == nil) {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
	}
}

// reseal replaces b's CRC with a correct one, to build records that pass
// the checksum but are otherwise malformed.
func reseal(b []byte) []byte {
	b = bytes.Clone(b[:len(b)-crcLen])
	return appendCRC(b)
}

func appendCRC(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func TestUnmarshalErrors(t *testing.T) {
	good := MarshalEntry(Entry{Seq: 3, Kind: KindInvocation, Actor: "a", Payload: []byte("xyz")})
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0x10
	v2 := bytes.Clone(good)
	v2[0] = 2
	overlong := appendCRC([]byte{1, 0x83, 0x00}) // seq 3 encoded in 2 bytes
	badFlags := appendCRC(append([]byte{1, 1, 1, 1, 0x80}, make([]byte, 6)...))
	trailing := appendCRC(append(bytes.Clone(good[:len(good)-crcLen]), 0))
	longLen := appendCRC([]byte{1, 1, 1, 1, 0, 50})
	cases := []struct {
		name        string
		b           []byte
		wantVersion bool
		wantText    string
	}{
		{"nil", nil, false, "too short"},
		{"short", []byte{1, 2, 3, 4}, false, "too short"},
		{"bit flip", flip, false, "checksum"},
		{"truncated", good[:len(good)-1], false, "checksum"},
		{"unknown version", reseal(v2), true, "version 2"},
		{"bad version, bad crc", v2, false, "checksum"},
		{"overlong varint", overlong, false, "minimally"},
		{"unknown flags", badFlags, false, "flags"},
		{"trailing bytes", trailing, false, "trailing"},
		{"length beyond end", longLen, false, "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalEntry(tc.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if errors.Is(err, ErrUnknownVersion) != tc.wantVersion {
				t.Fatalf("err = %v, ErrUnknownVersion wrapped: %v, want %v", err, !tc.wantVersion, tc.wantVersion)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.wantText)
			}
		})
	}
	if _, err := UnmarshalSnapshot(flip[:3]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("UnmarshalSnapshot(short) = %v, want ErrCorrupt", err)
	}
}

func FuzzUnmarshalEntry(f *testing.F) {
	f.Add(MarshalEntry(Entry{}))
	f.Add(MarshalEntry(Entry{Seq: 1, Kind: KindInvocation, Actor: "a", Method: "m", Payload: []byte("hi"), Time: time.Unix(0, 1), Token: 7}))
	f.Add(MarshalEntry(Entry{Seq: math.MaxUint64, Time: time.Unix(-1, 0), CorrelationID: "c", TraceID: "t", IdempotencyKey: "k"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// b as stored, and b with a valid CRC appended, so that the fuzzer
		// also explores the decoder behind the checksum.
		for _, rec := range [][]byte{b, appendCRC(bytes.Clone(b))} {
			e, err := UnmarshalEntry(rec)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				continue
			}
			// Accepted records are canonical: they re-encode to the same bytes.
			if again := MarshalEntry(e); !bytes.Equal(again, rec) {
				t.Fatalf("accepted % x but re-encodes as % x", rec, again)
			}
			if n := len(e.Payload); n > 0 && &e.Payload[0] == &rec[len(rec)-crcLen-n] {
				t.Fatalf("decoded payload aliases the input")
			}
		}
	})
}
