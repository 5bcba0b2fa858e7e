package redisjournal_test

import (
	"testing"

	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestNotifyAcrossJournals: Journals of several nodes on one server and
// key prefix wake each other through publish/subscribe; another prefix is
// another cluster.
func TestNotifyAcrossJournals(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	otherPrefix := func(o *redisjournal.Options) { o.Redis.KeyPrefix = "other:" }
	queuetest.RunShared(t, open(t, srv.Addr), open(t, srv.Addr), open(t, srv.Addr, otherPrefix))
}
