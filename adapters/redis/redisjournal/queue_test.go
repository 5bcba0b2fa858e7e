package redisjournal_test

import (
	"testing"

	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestQueueConformance runs queuetest against a real redis-server, one per
// subtest: redistest.Start fails the test if the server cannot start.
func TestQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, opts queuetest.Options) queuetest.Backend {
		s := redistest.Start(t, redistest.Options{})
		return open(t, s.Addr, func(o *redisjournal.Options) { o.QueueRetention = opts.Retention })
	})
}
