package main

import (
	"os"
	"sync"
	"testing"
	"time"
)

func TestRawRaftCommitsEveryApply(t *testing.T) {
	rr, err := startRawRaft(3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if err := rr.apply(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// An Apply returns once the leader's state machine has applied it.
	l := rr.leader()
	if l == nil {
		t.Fatal("no leader")
	}
	for i, n := range rr.nodes {
		if n == l {
			if got := rr.fsms[i].n.Load(); got != 200 {
				t.Errorf("the leader applied %d commands, want 200", got)
			}
		}
	}
	rr.close()
	if _, err := os.Stat(rr.dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", rr.dir, err)
	}
}
