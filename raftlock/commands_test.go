package raftlock

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	id := cmdID{"n1/00ff", 42}
	for _, c := range []command{
		{op: opNoop},
		{op: opLeaderStart, id: id},
		{op: opReap},
		{op: opCreateSession, id: id, owner: "node-a", ttl: 3 * time.Second},
		{op: opCreateSessionAs, id: id, owner: "node-a", ttl: 3 * time.Second, session: "s4.1f"},
		{op: opRenew, id: id, session: "s1.abc"},
		{op: opDestroySession, id: id, session: "s1.abc"},
		{op: opAcquire, id: id, session: "s1.abc", key: "type/id"},
		{op: opRelease, id: id, session: "s1.abc", key: "type/id"},
		{op: opAppend, id: id, key: "type/id", token: 7, seq: 3, records: [][]byte{[]byte("r1"), {}, []byte("r3")}},
		{op: opSaveSnapshot, id: id, key: "type/id", token: 7, seq: 2, records: [][]byte{[]byte("snap")}},
		{op: opTruncate, id: id, key: "type/id", token: 7, seq: 2},
		{op: opEndOwner, id: id, owner: "node-a", session: "s1.abc"},
		{op: opRenew, id: id, born: t0.UnixNano(), session: "s1.abc"},
		{op: opAppend, id: id, born: -1, retry: true, key: "type/id", token: 7, seq: 3, records: [][]byte{[]byte("r1")}},
	} {
		b := encodeCommand(c)
		got, err := decodeCommand(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.op, err)
		}
		if c.op == opAppend { // an empty record decodes as an empty, non-nil slice
			for i := range got.records {
				if len(got.records[i]) == 0 {
					got.records[i] = []byte{}
				}
			}
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: round trip\n got %+v\nwant %+v", c.op, got, c)
		}
		// Every strict prefix is rejected, never misread.
		for n := range len(b) {
			if _, err := decodeCommand(b[:n]); !errors.Is(err, errBadWire) {
				t.Fatalf("%s: prefix of %d/%d bytes: err %v", c.op, n, len(b), err)
			}
		}
		if _, err := decodeCommand(append(b, 0)); !errors.Is(err, errBadWire) {
			t.Fatalf("%s: trailing byte accepted", c.op)
		}
	}
	if _, err := decodeCommand([]byte{byte(opMax), 0, 0}); !errors.Is(err, errBadWire) {
		t.Fatalf("unknown op: %v", err)
	}
	// A command written before birth times and retry flags existed reads
	// as a first attempt born at 0.
	legacy := []byte{byte(opRenew), 1, 'o', 9, 2, 's', '1'}
	if c, err := decodeCommand(legacy); err != nil || c.id != (cmdID{"o", 9}) || c.born != 0 || c.retry || c.session != "s1" {
		t.Fatalf("legacy command = %+v, %v", c, err)
	}
	// Flags that do not fit the id are refused.
	for _, b := range [][]byte{
		{byte(opRenew) | flagRetry, 1, 'o', 9, 2, 's', '1'}, // a retry without a birth time
		{byte(opNoop) | flagBorn, 0, 0, 0},                  // a birth time without an id
	} {
		if _, err := decodeCommand(b); !errors.Is(err, errBadWire) {
			t.Fatalf("decodeCommand(%x) = %v; want errBadWire", b, err)
		}
	}
}

func TestBatchAndForwardRoundTrip(t *testing.T) {
	t.Parallel()
	cmds := [][]byte{[]byte("a"), []byte("bc"), {}}
	stamp := time.Date(2026, 11, 26, 10, 0, 0, 123, time.UTC)
	ts, got, err := decodeBatch(encodeBatch(stamp, cmds))
	if err != nil || ts != stamp.UnixNano() || len(got) != 3 || string(got[1]) != "bc" {
		t.Fatalf("batch: %v %q %v", ts, got, err)
	}
	if _, _, err := decodeBatch(append([]byte{wireVersion + 1}, encodeBatch(stamp, cmds)[1:]...)); !errors.Is(err, errBadWire) {
		t.Fatalf("batch of version %d accepted: %v", wireVersion+1, err)
	}
	if _, _, err := decodeBatch(append([]byte{0}, encodeBatch(stamp, cmds)[1:]...)); !errors.Is(err, errBadWire) {
		t.Fatalf("batch of version 0 accepted: %v", err)
	}
	// A batch of version 1, from a log written before commands carried
	// their birth time, still reads.
	if ts, got, err := decodeBatch(append([]byte{1}, encodeBatch(stamp, cmds)[1:]...)); err != nil || ts != stamp.UnixNano() || len(got) != 3 {
		t.Fatalf("batch of version 1: %v %q %v", ts, got, err)
	}
	fwd, err := decodeForward(encodeForward(cmds))
	if err != nil || len(fwd) != 3 || string(fwd[0]) != "a" {
		t.Fatalf("forward: %q %v", fwd, err)
	}
	rs := []result{{code: codeOK, value: 9}, {code: codeHeld, value: 3, text: "k", owner: "n2"}, {code: codeRetry}}
	idx, grs, err := decodeForwardResponse(encodeForwardResponse(77, rs))
	if err != nil || idx != 77 || !reflect.DeepEqual(grs, rs) {
		t.Fatalf("forward response: %d %+v %v", idx, grs, err)
	}
	if _, err := decodeResult([]byte{byte(codeMax), 0, 0, 0}); !errors.Is(err, errBadWire) {
		t.Fatalf("unknown result code accepted: %v", err)
	}
}

// TestResultErrors: every rule violation the state machine reports comes
// back to the caller as the contract's sentinel, with the FSM's message.
func TestResultErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want error
	}{
		{journal.ActorState{Token: 5}.CheckAppend("a", 4, 0), journal.ErrFenced},
		{journal.ActorState{}.CheckAppend("a", 1, 3), journal.ErrConflict},
		{journal.CheckActor(""), journal.ErrInvalid},
		{&lock.HeldError{Key: "k", Holder: "n2", Token: 3}, lock.ErrHeld},
		{errors.Join(lock.ErrSessionExpired), lock.ErrSessionExpired},
		{lock.ErrNotHeld, lock.ErrNotHeld},
		{locksm.CheckKey(""), lock.ErrInvalid},
	} {
		r, err := decodeResult(encodeResult(resultOf(tc.err)))
		if err != nil {
			t.Fatal(err)
		}
		got := r.err()
		if !errors.Is(got, tc.want) || got.Error() != tc.err.Error() {
			t.Errorf("%v came back as %v (%T)", tc.err, got, got)
		}
	}
	var he *lock.HeldError
	if r := resultOf(&lock.HeldError{Key: "k", Holder: "n2", Token: 3}); !errors.As(r.err(), &he) || *he != (lock.HeldError{Key: "k", Holder: "n2", Token: 3}) {
		t.Errorf("HeldError came back as %v", r.err())
	}
	if err := errClosed; !errors.Is(err, journal.ErrClosed) || !errors.Is(err, lock.ErrClosed) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("errClosed = %v", err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeCommand(command{op: opAppend, id: cmdID{"o", 1}, key: "a", token: 1, records: [][]byte{[]byte("x")}}))
	f.Add(encodeCommand(command{op: opCreateSession, id: cmdID{"o", 2}, owner: "n", ttl: time.Second}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		c2, err := decodeCommand(encodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if c2.op != c.op || c2.id != c.id || c2.key != c.key || len(c2.records) != len(c.records) {
			t.Fatalf("round trip changed the command: %+v vs %+v", c, c2)
		}
	})
}
