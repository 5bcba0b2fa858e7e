package journal

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedJournal opens a FileJournal whose committer holds its first batch
// before applying it until release is called, and records every batch
// size. openGatedAfter makes its requests first, committed as usual.
type gatedJournal struct {
	*FileJournal
	gate    chan struct{}
	mu      sync.Mutex
	armed   bool
	sizes   []int
	release func()
}

func openGated(t *testing.T, opts FileOptions) *gatedJournal {
	t.Helper()
	return openGatedAfter(t, opts, nil)
}

// openGatedAfter is openGated, calling setup (if not nil) before the gate
// is armed: its requests are committed and not counted.
func openGatedAfter(t *testing.T, opts FileOptions, setup func(f *FileJournal)) *gatedJournal {
	t.Helper()
	f, err := OpenFile(filepath.Join(t.TempDir(), "j.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedJournal{FileJournal: f, gate: make(chan struct{})}
	g.release = sync.OnceFunc(func() { close(g.gate) })
	t.Cleanup(func() {
		g.release()
		_ = f.Close()
	})
	f.testHookBatch = func(n int) {
		g.mu.Lock()
		if !g.armed {
			g.mu.Unlock()
			return
		}
		g.sizes = append(g.sizes, n)
		first := len(g.sizes) == 1
		g.mu.Unlock()
		if first {
			<-g.gate
		}
	}
	if setup != nil {
		setup(f)
	}
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	return g
}

func (g *gatedJournal) batchSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.sizes)
}

func (g *gatedJournal) queued() int {
	g.FileJournal.mu.Lock()
	defer g.FileJournal.mu.Unlock()
	n := 0
	for _, r := range g.queue {
		if r.state == stateQueued {
			n++
		}
	}
	return n
}

type result struct {
	tail uint64
	err  error
}

// start runs op on a new goroutine and waits until it has been queued.
func (g *gatedJournal) start(t *testing.T, op func() (uint64, error)) <-chan result {
	t.Helper()
	before := g.queued()
	ch := make(chan result, 1)
	go func() {
		tail, err := op()
		ch <- result{tail, err}
	}()
	waitFor(t, "the request to be queued", func() bool { return g.queued() == before+1 })
	return ch
}

// block starts a request that the committer takes and holds at the gate.
func (g *gatedJournal) block(t *testing.T) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		tail, err := g.Append(context.Background(), "gate", 1, 0, []Entry{{}})
		ch <- result{tail, err}
	}()
	waitFor(t, "the committer to hold the first batch", func() bool { return len(g.batchSizes()) == 1 })
	return ch
}

func one() []Entry { return []Entry{{Kind: KindInvocation}} }

// TestGroupCommitOneTransaction queues requests of every kind behind a
// blocked commit and checks that they are applied in one transaction, in
// queue order, each seeing the effects of the earlier ones, with rejected
// requests failing alone.
func TestGroupCommitOneTransaction(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	ctx := context.Background()
	gate := g.block(t)
	commitsBefore := g.commits.Load()

	a1 := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 5, 0, one()) })
	a2 := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 5, 1, one()) }) // sees a1
	fenced := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 4, 2, one()) })
	conflict := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 5, 1, one()) })
	snap := g.start(t, func() (uint64, error) {
		return 0, g.SaveSnapshot(ctx, "a", 5, Snapshot{Seq: 2, Data: []byte("s")}) // needs a2
	})
	trunc := g.start(t, func() (uint64, error) { return 0, g.Truncate(ctx, "a", 6, 2) }) // needs snap
	afterTrunc := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 5, 2, one()) })
	b := g.start(t, func() (uint64, error) { return g.Append(ctx, "b", 1, 0, []Entry{{}, {}}) })
	g.release()

	for _, c := range []struct {
		name     string
		ch       <-chan result
		wantTail uint64
		wantErr  error
	}{
		{"gate", gate, 1, nil},
		{"a1", a1, 1, nil},
		{"a2", a2, 2, nil},
		{"fenced", fenced, 0, ErrFenced},
		{"conflict", conflict, 0, ErrConflict},
		{"snapshot", snap, 0, nil},
		{"truncate", trunc, 0, nil},
		{"append under the truncate's lower token", afterTrunc, 0, ErrFenced},
		{"b", b, 2, nil},
	} {
		r := <-c.ch
		if r.tail != c.wantTail || !errors.Is(r.err, c.wantErr) || (c.wantErr == nil) != (r.err == nil) {
			t.Errorf("%s: tail %d err %v, want tail %d err %v", c.name, r.tail, r.err, c.wantTail, c.wantErr)
		}
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 8}) {
		t.Errorf("batch sizes %v, want [1 8]", sizes)
	}
	if n := g.commits.Load() - commitsBefore; n != 2 {
		t.Errorf("the gate and the queued requests took %d commits, want 2", n)
	}
	if tl, _ := g.Tail(ctx, "a"); tl != (Tail{Seq: 2, Token: 6}) {
		t.Errorf("Tail(a) = %+v, want {2 6}", tl)
	}
	if es, _ := g.Read(ctx, "a", 0); len(es) != 0 {
		t.Errorf("Read(a) = %d entries, want none (truncated through 2)", len(es))
	}
}

func TestGroupCommitMaxBatch(t *testing.T) {
	opts := DefaultFileOptions()
	opts.MaxBatch = 2
	g := openGated(t, opts)
	gate := g.block(t)
	var chs []<-chan result
	for i := range 5 {
		actor := string(rune('a' + i))
		chs = append(chs, g.start(t, func() (uint64, error) { return g.Append(context.Background(), actor, 1, 0, one()) }))
	}
	g.release()
	for i, ch := range append(chs, gate) {
		if r := <-ch; r.err != nil || r.tail != 1 {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 2, 2, 1}) {
		t.Errorf("batch sizes %v, want [1 2 2 1]", sizes)
	}
}

// TestContextWhileQueued: a request whose context ends while it waits in
// the queue returns at once with ctx.Err() and never takes effect.
func TestContextWhileQueued(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	gate := g.block(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 1, 0, one()) })
	cancel()
	r := <-ch // returns while the committer is still held at the gate
	if !errors.Is(r.err, context.Canceled) || r.err != context.Canceled {
		t.Fatalf("Append = %v, want exactly context.Canceled", r.err)
	}
	g.release()
	<-gate
	// A later request on the same journal is committed after the withdrawn
	// one would have been; the withdrawn one left no trace.
	if _, err := g.Append(context.Background(), "b", 1, 0, one()); err != nil {
		t.Fatal(err)
	}
	if tl, _ := g.Tail(context.Background(), "a"); tl != (Tail{}) {
		t.Fatalf("Tail(a) = %+v after a withdrawn append, want zero", tl)
	}
	if sizes := g.batchSizes(); !slices.Equal(sizes, []int{1, 1}) {
		t.Errorf("batch sizes %v, want [1 1] (the withdrawn request is never taken)", sizes)
	}
}

// TestContextAfterTaken: once the committer has taken a request it commits
// regardless; a caller whose context ends then is told the outcome is
// unknown.
func TestContextAfterTaken(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan result, 1)
	go func() {
		tail, err := g.Append(ctx, "a", 1, 0, one())
		ch <- result{tail, err}
	}()
	waitFor(t, "the committer to take the request", func() bool { return len(g.batchSizes()) == 1 })
	cancel()
	r := <-ch
	if !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "outcome unknown") {
		t.Fatalf("Append = %v, want context.Canceled with outcome unknown", r.err)
	}
	g.release()
	// The next request is committed after the taken one.
	if _, err := g.Append(context.Background(), "b", 1, 0, one()); err != nil {
		t.Fatal(err)
	}
	if tl, _ := g.Tail(context.Background(), "a"); tl.Seq != 1 {
		t.Fatalf("Tail(a) = %+v, want the taken append committed", tl)
	}
}

// TestCloseDrainsQueue: Close rejects new requests at once but commits
// every request already queued before it returns.
func TestCloseDrainsQueue(t *testing.T) {
	g := openGated(t, DefaultFileOptions())
	ctx := context.Background()
	gate := g.block(t)
	a := g.start(t, func() (uint64, error) { return g.Append(ctx, "a", 1, 0, one()) })
	b := g.start(t, func() (uint64, error) { return g.Append(ctx, "b", 1, 0, one()) })
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	waitFor(t, "Close to start", func() bool {
		g.FileJournal.mu.Lock()
		defer g.FileJournal.mu.Unlock()
		return g.closed
	})
	if _, err := g.Append(ctx, "c", 1, 0, one()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append during Close = %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while requests were still queued", err)
	default:
	}
	g.release()
	for _, ch := range []<-chan result{gate, a, b} {
		if r := <-ch; r.err != nil {
			t.Fatalf("queued request: %v", r.err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	j, err := OpenFile(g.path, DefaultFileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, actor := range []string{"a", "b"} {
		if tl, _ := j.Tail(ctx, actor); tl.Seq != 1 {
			t.Errorf("after reopen, Tail(%s) = %+v, want seq 1", actor, tl)
		}
	}
}
