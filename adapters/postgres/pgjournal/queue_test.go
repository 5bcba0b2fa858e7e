package pgjournal_test

import (
	"testing"

	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestQueueConformance runs queuetest against a real server, each subtest
// in a schema of its own.
func TestQueueConformance(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	queuetest.Run(t, func(t *testing.T, opts queuetest.Options) queuetest.Backend {
		return open(t, s, db, uniqueSchema(), func(o *pgjournal.Options) { o.QueueRetention = opts.Retention })
	})
}
