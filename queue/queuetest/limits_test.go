package queuetest

import (
	"testing"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// TestActorLimit: queue repeats the journal's actor-key limit, which it
// cannot import; the two must not drift apart.
func TestActorLimit(t *testing.T) {
	if queue.MaxActorLen != journal.MaxActorLen {
		t.Fatalf("queue.MaxActorLen = %d, journal.MaxActorLen = %d", queue.MaxActorLen, journal.MaxActorLen)
	}
}
