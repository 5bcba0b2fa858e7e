package cosmoslock

import (
	"context"
	"time"
)

// NewWithClock is New with the coordinator's clock injected: it exists
// only in test binaries. A production Coordinator reads time.Now and
// nothing else, so no option can move its clock.
func NewWithClock(ctx context.Context, o Options, now func() time.Time) (*Coordinator, error) {
	return newCoordinator(ctx, o, now)
}
