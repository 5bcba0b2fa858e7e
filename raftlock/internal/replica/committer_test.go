package replica

import "testing"

// TestCommitterFlagsRetries: the committer sends a call's first attempt
// as it was encoded and every later one flagged as a retry (Codec.
// MarkRetry); a command without an id is never flagged.
func TestCommitterFlagsRetries(t *testing.T) {
	t.Parallel()
	g := &Group[sum]{cfg: Config[sum]{MaxBatch: 8, MaxBatchBytes: 1 << 20}, codec: counterCodec{}, wake: make(chan struct{}, 1)}
	withID := encodeAdd(add{origin: "n1/x", seq: 1, born: 5, delta: 1})
	noID := encodeAdd(add{origin: "office"})
	calls := []*call[sum]{{ctx: t.Context(), cmd: withID}, {ctx: t.Context(), cmd: noID}}
	if err := g.enqueue(calls...); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		batch := g.take(route{self: true})
		if len(batch) != 2 {
			t.Fatalf("attempt %d: took %d calls", attempt, len(batch))
		}
		a, err := decodeAdd(batch[0].cmd)
		if err != nil || a.retry != (attempt > 1) || a.born != 5 || a.seq != 1 {
			t.Fatalf("attempt %d: sent %+v (%v); want retry %v", attempt, a, err, attempt > 1)
		}
		if n, err := decodeAdd(batch[1].cmd); err != nil || n.retry || batch[1].cmd[0] != 0 {
			t.Fatalf("attempt %d: the command without an id became %+v (%v)", attempt, n, err)
		}
		g.requeue(batch)
	}
}
