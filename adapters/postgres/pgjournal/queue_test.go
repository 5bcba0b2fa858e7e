package pgjournal_test

import (
	"context"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/queue"
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

// TestWakeCountsConcurrentWrites: two transactions that add messages to
// one actor's queue at once leave the actor's wake at the earlier of the
// two, whichever commits last (the later one waits for the earlier and
// computes after it).
func TestWakeCountsConcurrentWrites(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	j := open(t, s, db, schema)
	ctx := t.Context()
	enqueue := postgres.Expand(`SELECT o_wake FROM {s}.queue_enqueue($1, NULL, $2, 'w/1', 'w', $3, false, true, $4)`, schema)
	body := func(id string) []byte { return queue.MarshalMessage(queue.Message{ID: id, Actor: "w/1", Method: "m"}) }
	early, late := time.Now().Add(time.Hour).UnixNano(), time.Now().Add(2*time.Hour).UnixNano()

	c1 := s.Conn(t, db)
	tx1, err := c1.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(context.Background())
	if _, err := tx1.Exec(ctx, enqueue, time.Now().UnixNano(), []byte("early"), body("early"), early); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c2 := s.Conn(t, db)
		_, err := c2.Exec(ctx, enqueue, time.Now().UnixNano(), []byte("late"), body("late"), late)
		done <- err
	}()
	waitFor(t, s.Conn(t, db), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
		postgres.Expand("{s}.queue_enqueue", schema))
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs, err := j.Ready(ctx, time.Unix(0, late), 10)
	if err != nil || len(rs) != 1 || rs[0].Actor != "w/1" || rs[0].At.UnixNano() != early {
		t.Fatalf("Ready = %+v, %v; want w/1 at the earlier message's instant", rs, err)
	}
}
