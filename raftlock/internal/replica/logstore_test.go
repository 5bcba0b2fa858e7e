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
