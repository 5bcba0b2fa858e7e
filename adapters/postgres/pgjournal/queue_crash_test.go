package pgjournal_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// TestQueueCrash kills every server process (SIGKILL) while goroutines
// enqueue messages and acknowledge them through appends, then restarts the
// server and checks that nothing accepted was lost: every accepted message
// is either still pending or acknowledged by an entry in its actor's log,
// every acknowledgement that returned nil is in the log and its message
// gone, and every accepted id is still a duplicate with its first Seq.
func TestQueueCrash(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	db := s.CreateDatabase(t)
	j := open(t, s, db, "loom")
	const writers, killAfter = 8, 200
	type acc struct {
		actor   string
		seq     uint64
		ordered bool
	}
	var (
		mu       sync.Mutex
		accepted = map[string]acc{}
		acked    = map[string]bool{}
		acks     atomic.Int64
		enough   = make(chan struct{})
		once     sync.Once
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			actor := fmt.Sprintf("crash/%d", w)
			var tail uint64
			var last string
			for i := 0; ; i++ {
				id := fmt.Sprintf("%s#%d", actor, i)
				a, err := j.Enqueue(t.Context(), queue.Message{ID: id, Actor: actor, Method: "m", Payload: []byte(id), Ordered: i%2 == 0})
				if err != nil {
					return
				}
				mu.Lock()
				accepted[id] = acc{actor, a.Seq, i%2 == 0}
				mu.Unlock()
				if i%2 == 1 { // ack the pair: the ordered one first
					nt, err := j.Append(t.Context(), actor, 1, tail, []journal.Entry{
						{Kind: journal.KindInvocation, Method: "m"},
						{Kind: journal.KindMessageAck, IdempotencyKey: last},
						{Kind: journal.KindMessageAck, IdempotencyKey: id},
					})
					if err != nil {
						return
					}
					tail = nt
					mu.Lock()
					acked[last], acked[id] = true, true
					mu.Unlock()
					if acks.Add(1) == killAfter {
						once.Do(func() { close(enough) })
					}
				}
				last = id
			}
		})
	}
	<-enough
	s.Kill()
	wg.Wait()
	_ = j.Close()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	j = open(t, s, db, "loom")

	logAcks := map[string]bool{}
	pending := map[string]bool{}
	for w := range writers {
		actor := fmt.Sprintf("crash/%d", w)
		es, err := j.Read(t.Context(), actor, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Kind == journal.KindMessageAck {
				logAcks[e.IdempotencyKey] = true
			}
		}
		msgs, err := j.Due(t.Context(), actor, time.Now().Add(time.Hour), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			pending[m.ID] = true
		}
	}
	st, err := j.Stats(t.Context())
	if err != nil || len(st) != 1 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	stillPending := 0
	for id, a := range accepted {
		if acked[id] && !logAcks[id] {
			t.Fatalf("%s: acknowledged, but its ack entry is not in the log", id)
		}
		if !logAcks[id] {
			stillPending++
			if !a.ordered && !pending[id] {
				t.Fatalf("%s: accepted, not acknowledged, and not due after restart", id)
			}
		}
		dup, err := j.Enqueue(t.Context(), queue.Message{ID: id, Actor: a.actor, Method: "m"})
		if err != nil || !dup.Duplicate || dup.Seq != a.seq {
			t.Fatalf("%s: Enqueue after restart = %+v, %v; want a duplicate of seq %d", id, dup, err, a.seq)
		}
	}
	for id := range pending {
		if logAcks[id] {
			t.Fatalf("%s: pending after restart, and acknowledged in the log", id)
		}
	}
	// An Enqueue cut off by the kill may have been applied without its
	// answer: at most one per writer is pending beyond those accepted.
	if st[0].Pending < stillPending || st[0].Pending > stillPending+writers {
		t.Fatalf("%d messages pending after restart, want %d to %d (%d accepted, %d acknowledged)", st[0].Pending, stillPending, stillPending+writers, len(accepted), len(logAcks))
	}
	t.Logf("%d accepted, %d acks returned, %d acks in the logs, %d pending after the kill", len(accepted), len(acked), len(logAcks), stillPending)
}
