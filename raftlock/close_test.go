package raftlock

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
)

// TestCloseStopsEverything: after Close (twice) no goroutine of this
// package or of Raft is left, and every method fails with ErrClosed. Not
// parallel: it inspects every goroutine of the process. The garbage
// collector is off meanwhile: Close must not leave anything for the
// finalizers of dropped connections to clean up (it did: the Raft
// transport's pooled connections, and the goroutines serving them on the
// other nodes, which a test run with a large heap saw outlive the wait).
func TestCloseStopsEverything(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	f := c.nodes[c.follower()]
	if _, err := f.Append(ctx, "t/c", 1, 0, entry("x")); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.stop(i)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.Append(ctx, "t/c", 1, 1, entry("y")); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := f.Read(ctx, "t/c", 0); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, _, err := f.Holder(ctx, "t/c"); !errors.Is(err, lock.ErrClosed) {
		t.Fatalf("Holder after Close: %v", err)
	}
	if err := f.Sync(ctx); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	waitFor(t, 5*time.Second, "no raftlock or raft goroutine left", func() error {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "TestCloseStopsEverything") {
				continue
			}
			if strings.Contains(g, "loom/raftlock.") || strings.Contains(g, "hashicorp/raft.") {
				left = append(left, g)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%d goroutines left, first:\n%s", len(left), left[0])
		}
		return nil
	})
}
