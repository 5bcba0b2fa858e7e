package runtime_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// testSession is a real session on the coordinator whose validity the test
// controls, standing in for lock.Keeper where a test needs to revoke it.
type testSession struct {
	id      lock.SessionID
	invalid atomic.Bool
}

func (s *testSession) Session() lock.SessionID { return s.id }
func (s *testSession) Valid() bool             { return !s.invalid.Load() }

// fakeClock is a settable clock for idle timeouts.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is one runtime over real in-memory backends.
type env struct {
	t       *testing.T
	j       journal.Journal
	coord   lock.Coordinator
	session *testSession
	clock   *fakeClock
	rt      *runtime.Runtime
}

type envOpt func(*runtime.Options)

func newEnv(t *testing.T, defs []runtime.Definition, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, j: inmem.NewJournal(), clock: newFakeClock()}
	e.coord = inmem.NewCoordinator(inmem.CoordinatorOptions{Now: e.clock.Now})
	t.Cleanup(func() { _ = e.j.Close(); _ = e.coord.Close() })
	e.start(defs, opts...)
	return e
}

// start (re)builds the runtime on the env's journal and coordinator, with a
// new session, as a restarted node would.
func (e *env) start(defs []runtime.Definition, opts ...envOpt) {
	e.t.Helper()
	id, err := e.coord.CreateSession(context.Background(), "node-test", time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	e.session = &testSession{id: id}
	o := runtime.Options{
		NodeID:      "node-test",
		Journal:     e.j,
		Coordinator: e.coord,
		Session:     e.session,
		Now:         e.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	rt, err := runtime.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := rt.Register(defs...); err != nil {
		e.t.Fatal(err)
	}
	e.rt = rt
	e.t.Cleanup(func() { _ = rt.Close(context.Background()) })
}

// restart closes the runtime cleanly and starts a new one on the same
// journal: everything it knows must come from the journal.
func (e *env) restart(defs []runtime.Definition, opts ...envOpt) {
	e.t.Helper()
	if err := e.rt.Close(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	// As a node does after closing its runtime: end the session, which
	// frees the actors' locks.
	if err := e.coord.DestroySession(context.Background(), e.session.id); err != nil {
		e.t.Fatal(err)
	}
	e.start(defs, opts...)
}

// bytesOnly hides the LocalInvoker capability, forcing the encoded path.
type bytesOnly struct{ inv runtime.Invoker }

func (b bytesOnly) Invoke(ctx context.Context, typ, id, method string, payload []byte) ([]byte, error) {
	return b.inv.Invoke(ctx, typ, id, method, payload)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
