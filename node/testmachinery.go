package node

import "errors"

// ErrNotBuiltIn is returned by New for Options that only a binary built
// with the loomchaos tag has: the chaos hook and the unsafe modes. A
// production build cannot cut its network, skew its clocks, acknowledge
// before the journal is durable or ignore locks, whatever it is asked.
var ErrNotBuiltIn = errors.New("node: test machinery not built into this binary (build with -tags loomchaos)")

// ChaosEvent is one line of a node's activation log, what the chaos suite's
// single-activation checker reads.
type ChaosEvent struct {
	// Time is the wall clock in ns since the epoch, real (not the
	// hook's skewed clock): processes on one machine share it.
	Time  int64  `json:"t"`
	Node  string `json:"node"`
	PID   int    `json:"pid"`
	Event string `json:"ev"`
	Actor string `json:"actor"`
	Token uint64 `json:"token,omitempty"`
	// First and Last are the seqs a write was given.
	First uint64 `json:"first,omitempty"`
	Last  uint64 `json:"last,omitempty"`
	// Reason says why an actor was deactivated or a write refused.
	Reason string `json:"reason,omitempty"`
}

// ChaosEvent.Event values.
const (
	EventAcquired    = "acquired"    // the lock was granted (Token)
	EventActivated   = "activated"   // loaded and serving under Token
	EventFailed      = "failed"      // the activation failed (Reason)
	EventDeactivated = "deactivated" // left memory (Reason)
	EventWrite       = "write"       // the journal accepted seqs First..Last under Token
	EventFenced      = "fenced"      // the journal refused a write under Token as fenced
)
