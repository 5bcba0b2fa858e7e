package redisjournal_test

import (
	"testing"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/journal/journaltest"
)

// open opens a journal on the server at addr, closed when t ends.
func open(t testing.TB, addr string, mod ...func(*redisjournal.Options)) *redisjournal.Journal {
	t.Helper()
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: addr}
	for _, m := range mod {
		m(&o)
	}
	j, err := redisjournal.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestConformance runs journaltest against a real redis-server, one server
// per subtest. Reopen is a new journal (a new client) over the same
// server: what a restarted node process sees.
func TestConformance(t *testing.T) {
	servers := map[journal.Journal]*redistest.Server{}
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			s := redistest.Start(t, redistest.Options{})
			j := open(t, s.Addr)
			servers[j] = s
			return j
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			s := servers[old]
			j := open(t, s.Addr)
			servers[j] = s
			return j
		},
	})
}
