package raftlock_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock"
)

// A Store is a coordinator and a journal: its unknown outcome is both
// contracts', and nothing else's.
func TestUnknownOutcomeMatchesBothContracts(t *testing.T) {
	err := fmt.Errorf("append %q: %w", "a/1", raftlock.ErrUnknownOutcome)
	for _, target := range []error{raftlock.ErrUnknownOutcome, lock.ErrUnknownOutcome, journal.ErrUnknownOutcome} {
		if !errors.Is(err, target) {
			t.Errorf("%v does not match %v", err, target)
		}
	}
	for _, target := range []error{lock.ErrUnavailable, journal.ErrUnavailable, journal.ErrClosed, raftlock.ErrNotLeader} {
		if errors.Is(err, target) {
			t.Errorf("%v matches %v", err, target)
		}
	}
	if got := raftlock.ErrUnknownOutcome.Error(); got != "raftlock: outcome unknown" {
		t.Errorf("message %q", got)
	}
}
