package replica

import (
	"errors"
	"testing"
)

func TestFailpointLogStoreWraps(t *testing.T) {
	boom := errors.New("boom")
	s := failpointLogStore{before: func() error { return boom }}
	if err := s.StoreLogs(nil); !errors.Is(err, boom) {
		t.Fatalf("StoreLogs: %v", err)
	}
	if err := s.StoreLog(nil); !errors.Is(err, boom) {
		t.Fatalf("StoreLog: %v", err)
	}
	if err := s.DeleteRange(1, 2); !errors.Is(err, boom) {
		t.Fatalf("DeleteRange: %v", err)
	}
}
