package replica

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Each store keeps what was written across a close; a dir refuses the
// other kind and a second opener; an unknown kind is refused.
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

			s, err = openLogStore(dir, kind, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var l raft.Log
			if err := s.GetLog(2, &l); err != nil || string(l.Data) != "b" {
				t.Fatalf("entry 2 after a reopen: %q, %v", l.Data, err)
			}
			if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
				t.Fatalf("term after a reopen: %d, %v", term, err)
			}
		})
	}
	if _, err := openLogStore(t.TempDir(), "leveldb", 0, hclog.NewNullLogger()); err == nil {
		t.Fatal("an unknown log store opened")
	}
}
