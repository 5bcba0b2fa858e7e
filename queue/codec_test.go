package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"maps"
	"math"
	"strings"
	"testing"
	"time"
)

// messagesEqual compares every field; times with == (location included),
// an empty payload or header map as equal to a nil one.
func messagesEqual(a, b Message) bool {
	return a.ID == b.ID && a.Actor == b.Actor && a.Method == b.Method && bytes.Equal(a.Payload, b.Payload) &&
		maps.Equal(a.Headers, b.Headers) && a.CorrelationID == b.CorrelationID && a.TraceParent == b.TraceParent &&
		a.Ordered == b.Ordered && a.DeliverAt == b.DeliverAt && a.Seq == b.Seq && a.AcceptedAt == b.AcceptedAt &&
		a.Attempts == b.Attempts && a.NextAt == b.NextAt && a.LastError == b.LastError
}

func full() Message {
	return Message{ID: "m-1", Actor: "order/7", Method: "Ship", Payload: []byte(`{"n":1}`),
		Headers: map[string]string{"z": "last", "a": "first", "": "empty key", "m": ""}, CorrelationID: "c",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Ordered: true,
		DeliverAt: time.Date(2026, 12, 5, 1, 2, 3, 4, time.UTC), Seq: 1 << 40,
		AcceptedAt: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC), Attempts: math.MaxUint32,
		NextAt: time.Date(2026, 12, 5, 1, 2, 3, 5, time.UTC), LastError: "boom"}
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	cases := map[string]Message{
		"zero":           {},
		"all fields":     full(),
		"negative times": {DeliverAt: time.Unix(-5, 3).UTC(), AcceptedAt: time.Unix(0, 0).UTC(), NextAt: minTime},
		"bounds":         {NextAt: maxTime, Seq: math.MaxUint64},
		"binary strings": {ID: "\x00\xff", Actor: "a/\x00", Method: strings.Repeat("m", 300), Payload: []byte{0}},
	}
	for name, m := range cases {
		b := MarshalMessage(m)
		got, err := UnmarshalMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !messagesEqual(got, m) {
			t.Fatalf("%s: round trip\n got %+v\nwant %+v", name, got, m)
		}
		if again := MarshalMessage(got); !bytes.Equal(again, b) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		dead := DeadLetter{Message: m, DeadAt: time.Unix(99, 1).UTC()}
		db := MarshalDeadLetter(dead)
		gotDead, err := UnmarshalDeadLetter(db)
		if err != nil || !messagesEqual(gotDead.Message, m) || gotDead.DeadAt != dead.DeadAt {
			t.Fatalf("%s: dead letter round trip: %+v, %v", name, gotDead, err)
		}
		if !bytes.Equal(MarshalDeadLetter(gotDead), db) {
			t.Fatalf("%s: dead letter re-encoding differs", name)
		}
		if _, err := UnmarshalMessage(db); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: a dead letter decoded as a message: %v", name, err)
		}
	}
}

// TestMessageDeterministic: headers are written in key order, whatever
// order the map gives them in, and times decode in UTC.
func TestMessageDeterministic(t *testing.T) {
	t.Parallel()
	m := full()
	first := MarshalMessage(m)
	for range 50 {
		if !bytes.Equal(MarshalMessage(m), first) {
			t.Fatal("two encodings of one message differ")
		}
	}
	loc := time.FixedZone("X", 3600)
	got, err := UnmarshalMessage(MarshalMessage(Message{AcceptedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, loc), Payload: []byte{}, Headers: map[string]string{}}))
	if err != nil {
		t.Fatal(err)
	}
	if got.AcceptedAt.Location() != time.UTC || got.Payload != nil || got.Headers != nil {
		t.Fatalf("decoded %+v: want UTC, nil payload, nil headers", got)
	}
}

// TestGoldenEncoding pins version 1.
func TestGoldenEncoding(t *testing.T) {
	t.Parallel()
	m := Message{ID: "i", Actor: "a/1", Method: "m", Payload: []byte("p"), Headers: map[string]string{"k": "v"},
		Ordered: true, Seq: 3, AcceptedAt: time.Unix(0, 1), NextAt: time.Unix(0, 1)}
	if got, want := hex.EncodeToString(MarshalMessage(m)), "010d0300020201690361"+"2f31016d01700101"+"6b0176000000"+"3c4af58b"; got != want {
		t.Errorf("MarshalMessage = %s, want %s", got, want)
	}
	r := Reminder{Actor: "a", Name: "n", Method: "m", DueAt: time.Unix(0, 2), Period: 3}
	if got, want := hex.EncodeToString(MarshalReminder(r)), "01020406016101"+"6e016d00"+"5cfba81a"; got != want {
		t.Errorf("MarshalReminder = %s, want %s", got, want)
	}
}

func TestReminderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []Reminder{{}, {Actor: "a/1", Name: "tick", Method: "Tick", Payload: []byte("x"), Ordered: true,
		DueAt: time.Unix(1e9, 7).UTC(), Period: time.Minute}, {Period: math.MinInt64, DueAt: minTime}} {
		b := MarshalReminder(r)
		got, err := UnmarshalReminder(b)
		if err != nil || got.Actor != r.Actor || got.Name != r.Name || got.Method != r.Method || !bytes.Equal(got.Payload, r.Payload) ||
			got.Ordered != r.Ordered || got.DueAt != r.DueAt || got.Period != r.Period {
			t.Fatalf("round trip of %+v: %+v, %v", r, got, err)
		}
		if !bytes.Equal(MarshalReminder(got), b) {
			t.Fatalf("re-encoding of %+v differs", r)
		}
	}
}

func appendCRC(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func reseal(b []byte) []byte { return appendCRC(bytes.Clone(b[:len(b)-crcLen])) }

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	good := MarshalMessage(Message{ID: "i", Actor: "a", Method: "m", Payload: []byte("xyz")})
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0x10
	v2 := bytes.Clone(good)
	v2[0] = 2
	twoHeaders := MarshalMessage(Message{Headers: map[string]string{"a": "1", "b": "2"}})
	swapped := bytes.Replace(twoHeaders, []byte("\x01a\x011\x01b\x012"), []byte("\x01b\x012\x01a\x011"), 1)
	dupKey := bytes.Replace(twoHeaders, []byte("\x01b\x012"), []byte("\x01a\x012"), 1)
	cases := []struct {
		name, text string
		b          []byte
	}{
		{"nil", "too short", nil},
		{"short", "too short", []byte{1, 2, 3, 4}},
		{"bit flip", "checksum", flip},
		{"truncated", "checksum", good[:len(good)-1]},
		{"unknown version", "version 2", reseal(v2)},
		{"overlong varint", "minimally", appendCRC([]byte{1, 0, 0x83, 0x00})},
		{"unknown flags", "flags", appendCRC(append([]byte{1, 0x20}, make([]byte, 10)...))},
		{"attempts overflow", "attempts", appendCRC([]byte{1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10})},
		{"trailing bytes", "trailing", appendCRC(append(bytes.Clone(good[:len(good)-crcLen]), 0))},
		{"length beyond the end", "exceeds", appendCRC([]byte{1, 0, 0, 0, 50})},
		{"headers out of order", "out of order", reseal(swapped)},
		{"duplicate header", "out of order", reseal(dupKey)},
		{"header count beyond the data", "header count", appendCRC([]byte{1, 0, 0, 0, 0, 0, 0, 0, 9})},
	}
	for _, tc := range cases {
		_, err := UnmarshalMessage(tc.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %v, want ErrCorrupt mentioning %q", tc.name, err, tc.text)
		}
	}
	rem := MarshalReminder(Reminder{Actor: "a", Name: "n"})
	flip = bytes.Clone(rem)
	flip[3] ^= 1
	for _, b := range [][]byte{nil, flip, appendCRC([]byte{1, 4, 0}), appendCRC([]byte{1, 0, 0, 0, 0, 0, 0, 0})} {
		if _, err := UnmarshalReminder(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("UnmarshalReminder(% x) = %v, want ErrCorrupt", b, err)
		}
	}
}

func TestCheckMessage(t *testing.T) {
	t.Parallel()
	ok := Message{ID: "i", Actor: "a/1", Method: "m"}
	cases := []struct {
		name  string
		edit  func(*Message)
		valid bool
	}{
		{"valid", func(m *Message) {}, true},
		{"longest id", func(m *Message) { m.ID = strings.Repeat("i", MaxIDLen) }, true},
		{"longest actor", func(m *Message) { m.Actor = strings.Repeat("a", MaxActorLen) }, true},
		{"stamped fields ignored", func(m *Message) { m.AcceptedAt, m.NextAt = time.Time{}.Add(1), time.Time{}.Add(1) }, true},
		{"empty id", func(m *Message) { m.ID = "" }, false},
		{"long id", func(m *Message) { m.ID = strings.Repeat("i", MaxIDLen+1) }, false},
		{"empty actor", func(m *Message) { m.Actor = "" }, false},
		{"long actor", func(m *Message) { m.Actor = strings.Repeat("a", MaxActorLen+1) }, false},
		{"empty method", func(m *Message) { m.Method = "" }, false},
		{"far DeliverAt", func(m *Message) { m.DeliverAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
		{"ancient DeliverAt", func(m *Message) { m.DeliverAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
	}
	for _, tc := range cases {
		m := ok
		tc.edit(&m)
		if err := CheckMessage(m); (err == nil) != tc.valid || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: CheckMessage = %v, valid %v", tc.name, err, tc.valid)
		}
	}
}

func TestCheckReminder(t *testing.T) {
	t.Parallel()
	ok := Reminder{Actor: "a/1", Name: "n", Method: "m", DueAt: time.Unix(1, 0)}
	cases := []struct {
		name  string
		edit  func(*Reminder)
		valid bool
	}{
		{"valid", func(r *Reminder) {}, true},
		{"periodic", func(r *Reminder) { r.Period = time.Second }, true},
		{"ids just fit", func(r *Reminder) { r.Name = strings.Repeat("n", MaxIDLen-len("reminder:a/1::")-20) }, true},
		{"ids too long", func(r *Reminder) { r.Name = strings.Repeat("n", MaxIDLen-len("reminder:a/1::")-19) }, false},
		{"empty actor", func(r *Reminder) { r.Actor = "" }, false},
		{"empty name", func(r *Reminder) { r.Name = "" }, false},
		{"long name", func(r *Reminder) { r.Name = strings.Repeat("n", MaxNameLen+1) }, false},
		{"empty method", func(r *Reminder) { r.Method = "" }, false},
		{"zero DueAt", func(r *Reminder) { r.DueAt = time.Time{} }, false},
		{"far DueAt", func(r *Reminder) { r.DueAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
		{"negative period", func(r *Reminder) { r.Period = -1 }, false},
	}
	for _, tc := range cases {
		r := ok
		tc.edit(&r)
		if err := CheckReminder(r); (err == nil) != tc.valid || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: CheckReminder = %v, valid %v", tc.name, err, tc.valid)
		}
	}
	if id := ReminderID("a/1", "tick", -5); id != "reminder:a/1:tick:-5" {
		t.Errorf("ReminderID = %q", id)
	}
}

func FuzzUnmarshalMessage(f *testing.F) {
	f.Add(MarshalMessage(Message{}))
	f.Add(MarshalMessage(full()))
	f.Add(MarshalDeadLetter(DeadLetter{Message: full(), DeadAt: time.Unix(5, 0)}))
	f.Add(MarshalReminder(Reminder{Actor: "a", Name: "n", Method: "m", DueAt: time.Unix(1, 0), Period: time.Second}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given, and resealed so the fuzzer explores behind the checksum.
		for _, rec := range [][]byte{b, appendCRC(bytes.Clone(b))} {
			if m, err := UnmarshalMessage(rec); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("UnmarshalMessage: %v does not wrap ErrCorrupt", err)
				}
			} else if again := MarshalMessage(m); !bytes.Equal(again, rec) {
				t.Fatalf("message % x accepted, re-encodes as % x", rec, again)
			}
			if d, err := UnmarshalDeadLetter(rec); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("UnmarshalDeadLetter: %v does not wrap ErrCorrupt", err)
				}
			} else if again := MarshalDeadLetter(d); !bytes.Equal(again, rec) {
				t.Fatalf("dead letter % x accepted, re-encodes as % x", rec, again)
			}
			if r, err := UnmarshalReminder(rec); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("UnmarshalReminder: %v does not wrap ErrCorrupt", err)
				}
			} else if again := MarshalReminder(r); !bytes.Equal(again, rec) {
				t.Fatalf("reminder % x accepted, re-encodes as % x", rec, again)
			}
		}
	})
}
