package messaging_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// TestClassify: what a delivery's error means for its message, as a
// dispatcher or a broker's consumer acts on it.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want messaging.Class
	}{
		{"settled", fmt.Errorf("%w: %w", runtime.ErrMessageSettled, fmt.Errorf("%w: %w", journal.ErrAck, queue.ErrKnownID)), messaging.Settled},
		{"unknown type", fmt.Errorf("x: %w", runtime.ErrUnknownType), messaging.Permanent},
		{"unknown method", runtime.ErrUnknownMethod, messaging.Permanent},
		{"bad payload", runtime.ErrBadPayload, messaging.Permanent},
		{"handler failed", &runtime.MethodError{Actor: "t/a", Method: "m", Err: errors.New("no")}, messaging.Failed},
		{"handler failed on an unavailable call", &runtime.MethodError{Actor: "t/a", Method: "m", Err: runtime.ErrUnavailable}, messaging.Failed},
		{"owner unreachable", fmt.Errorf("%w: node-2", runtime.ErrUnavailable), messaging.Unavailable},
		{"behind a queued ordered message", fmt.Errorf("%w: %w", runtime.ErrUnavailable, fmt.Errorf("%w: %w", journal.ErrAck, queue.ErrNotHead)), messaging.Unavailable},
		{"shutting down", runtime.ErrShuttingDown, messaging.Unavailable},
	} {
		if got := messaging.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}
