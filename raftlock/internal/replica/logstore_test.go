package replica

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Each store keeps what was written across a close; a dir refuses the
// other kind and a second opener, and auto opens the kind it holds; a new
// dir's auto is raft-wal; an unknown kind is refused.
func TestOpenLogStore(t *testing.T) {
	for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openLogStore(dir, kind, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			logs := []*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if _, err := openLogStore(dir, kind, 0, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "locked by another process") {
				t.Fatalf("a second open while the first holds the dir: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			other := LogStoreWAL
			if kind == LogStoreWAL {
				other = LogStoreBolt
			}
			if _, err := openLogStore(dir, other, 0, hclog.NewNullLogger()); !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("opening a %s dir as %s: %v", kind, other, err)
			}

			// Auto opens what the dir holds.
			s, err = openLogStore(dir, LogStoreAuto, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, isWAL := s.(*walStore); isWAL != (kind == LogStoreWAL) {
				t.Fatalf("auto opened a %s dir as %T", kind, s)
			}
			var l raft.Log
			if err := s.GetLog(2, &l); err != nil || string(l.Data) != "b" {
				t.Fatalf("entry 2 after a reopen: %q, %v", l.Data, err)
			}
			if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
				t.Fatalf("term after a reopen: %d, %v", term, err)
			}
		})
	}
	for _, auto := range []string{"", LogStoreAuto} {
		s, err := openLogStore(t.TempDir(), auto, 0, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		if _, isWAL := s.(*walStore); !isWAL {
			t.Errorf("a new dir's log store %q is %T, want raft-wal", auto, s)
		}
		s.Close()
	}
	if _, err := openLogStore(t.TempDir(), "leveldb", 0, hclog.NewNullLogger()); err == nil {
		t.Fatal("an unknown log store opened")
	}
}

// Raft clears a log suffix when a new leader's log disagrees with a
// follower's. The log must read back whole after that and a restart,
// whether or not entries were appended after the truncation
// (raft-wal v0.4.0 sealed the tail segment without its index, and the
// reopened log failed with "sealed segment has no index block").
func TestLogStoreTruncateTailThenReopen(t *testing.T) {
	for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
		for _, appendAfter := range []bool{false, true} {
			name := kind + "/truncated-tail"
			if appendAfter {
				name = kind + "/truncated-tail-then-appended"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				s, err := openLogStore(dir, kind, 0, hclog.NewNullLogger())
				if err != nil {
					t.Fatal(err)
				}
				want := map[uint64]uint64{} // index → term
				var logs []*raft.Log
				for i := uint64(1); i <= 10; i++ {
					logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte{byte(i)}})
					want[i] = 1
				}
				if err := s.StoreLogs(logs); err != nil {
					t.Fatal(err)
				}
				if err := s.DeleteRange(8, 10); err != nil {
					t.Fatal(err)
				}
				delete(want, 8)
				delete(want, 9)
				delete(want, 10)
				if appendAfter {
					logs = logs[:0]
					for i := uint64(8); i <= 12; i++ {
						logs = append(logs, &raft.Log{Index: i, Term: 2, Data: []byte{byte(i)}})
						want[i] = 2
					}
					if err := s.StoreLogs(logs); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}

				s, err = openLogStore(dir, kind, 0, hclog.NewNullLogger())
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				last, err := s.LastIndex()
				if err != nil || last != uint64(len(want)) {
					t.Fatalf("last index after a reopen: %d, %v; want %d", last, err, len(want))
				}
				for i := uint64(1); i <= last; i++ {
					var l raft.Log
					if err := s.GetLog(i, &l); err != nil {
						t.Fatalf("entry %d after a reopen: %v", i, err)
					}
					if l.Term != want[i] || l.Data[0] != byte(i) {
						t.Fatalf("entry %d after a reopen: term %d data %v, want term %d", i, l.Term, l.Data, want[i])
					}
				}
			})
		}
	}
}
