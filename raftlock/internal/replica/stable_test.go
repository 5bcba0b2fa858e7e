package replica

import (
	"path/filepath"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Once closed, the stable store drops writes instead of failing them, so
// that a heartbeat persisting a term after Raft's shutdown does not panic
// Raft on the closed file; before, it writes through.
func TestClosingStableDropsLateWrites(t *testing.T) {
	bs, err := raftboltdb.NewBoltStore(filepath.Join(t.TempDir(), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := &closingStable{StableStore: bs}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 2 {
		t.Fatalf("CurrentTerm = %d, %v", v, err)
	}
	s.close()
	if err := bs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bs.SetUint64([]byte("CurrentTerm"), 3); err == nil {
		t.Fatal("the closed bolt store took a write")
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatalf("SetUint64 after close: %v", err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatalf("Set after close: %v", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil {
		t.Fatal("GetUint64 after close answered")
	}
}
