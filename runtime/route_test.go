package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// meshNode is one runtime of an in-process mesh: the runtimes share one
// journal and one coordinator (the cluster's store) and forward calls to
// each other directly, as the gRPC transport does between processes.
type meshNode struct {
	id   string
	mesh *mesh
	rt   *runtime.Runtime
	hops atomic.Int32 // forwarded calls served here
}

type mesh struct {
	mu    sync.Mutex
	nodes map[string]*meshNode
	owner atomic.Pointer[func(actorType, id string) string] // the "ring"
}

func (n *meshNode) NodeID() string { return n.id }

func (n *meshNode) Owner(actorType, id string) (string, bool, bool) {
	o := (*n.mesh.owner.Load())(actorType, id)
	return o, o == n.id, true
}

func (n *meshNode) Forward(ctx context.Context, node string, c runtime.Call) ([]byte, error) {
	n.mesh.mu.Lock()
	dst := n.mesh.nodes[node]
	n.mesh.mu.Unlock()
	if dst == nil {
		return nil, fmt.Errorf("%w: node %s unknown", runtime.ErrUnavailable, node)
	}
	dst.hops.Add(1)
	return dst.rt.InvokeForwarded(ctx, c)
}

func newMesh(t *testing.T, ids ...string) (*mesh, journal.Journal, lock.Coordinator) {
	t.Helper()
	return newMeshWith(t, runtime.PoolConfig{}, ids...)
}

// newMeshWith is newMesh with every type's pool configured as pc (the
// zero value: the default).
func newMeshWith(t *testing.T, pc runtime.PoolConfig, ids ...string) (*mesh, journal.Journal, lock.Coordinator) {
	t.Helper()
	j := inmem.NewJournal()
	c := inmem.NewCoordinator(inmem.CoordinatorOptions{})
	m := &mesh{nodes: map[string]*meshNode{}}
	first := func(string, string) string { return ids[0] }
	m.owner.Store(&first)
	for _, id := range ids {
		sid, err := c.CreateSession(context.Background(), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		n := &meshNode{id: id, mesh: m}
		o := runtime.Options{NodeID: id, Journal: j, Coordinator: c, Session: &testSession{id: sid}, Router: n}
		if pc.MaxSize > 0 {
			o.Pool = func(string) runtime.PoolConfig { return pc }
		}
		rt, err := runtime.New(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Register(allTypes...); err != nil {
			t.Fatal(err)
		}
		n.rt = rt
		m.nodes[id] = n
		t.Cleanup(func() { _ = rt.Close(context.Background()) })
	}
	return m, j, c
}

func (m *mesh) place(f func(actorType, id string) string) { m.owner.Store(&f) }

func (m *mesh) active(actorType string) map[string]int {
	out := map[string]int{}
	for id, n := range m.nodes {
		out[id] = n.rt.Active(actorType)
	}
	return out
}

func TestCallsThroughAnyNodeReachOneActivation(t *testing.T) {
	newProbe()
	m, _, _ := newMesh(t, "a", "b", "c")
	m.place(func(_, id string) string { return "b" })
	ctx := context.Background()
	total := 0
	for i := 0; i < 30; i++ {
		via := m.nodes[[]string{"a", "b", "c"}[i%3]]
		v, err := TallyAdd.Call(ctx, via.rt, "x", 1)
		if err != nil {
			t.Fatal(err)
		}
		total++
		if v != total {
			t.Fatalf("call %d via %s = %d, want %d", i, via.id, v, total)
		}
	}
	if got := m.active("tally"); got["b"] != 1 || got["a"]+got["c"] != 0 {
		t.Fatalf("activations %v, want exactly one, on b", got)
	}
	// The encoded path routes the same way.
	for _, id := range []string{"a", "c"} {
		b, err := m.nodes[id].rt.Invoke(ctx, "tally", "x", "get", nil)
		if err != nil || string(b) != "30" {
			t.Fatalf("get via %s = %s, %v", id, b, err)
		}
	}
}

func TestLockHolderWinsOverTheRing(t *testing.T) {
	newProbe()
	m, _, _ := newMesh(t, "a", "b", "c")
	ctx := context.Background()
	m.place(func(_, _ string) string { return "c" })
	if _, err := TallyAdd.Call(ctx, m.nodes["a"].rt, "h", 5); err != nil { // activates on c
		t.Fatal(err)
	}
	// The ring changes its mind, but c still holds the actor: a call via a
	// goes to the new ring owner b, which finds the lock held by c and
	// forwards there.
	m.place(func(_, _ string) string { return "b" })
	v, err := TallyAdd.Call(ctx, m.nodes["a"].rt, "h", 1)
	if err != nil || v != 6 {
		t.Fatalf("= %d, %v; want 6", v, err)
	}
	if got := m.active("tally"); got["c"] != 1 || got["b"] != 0 {
		t.Fatalf("activations %v, want one on c", got)
	}
	// Hand-off: c gives up what the ring places elsewhere; b takes over
	// with all the state.
	n, err := m.nodes["c"].rt.Rebalance(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Rebalance = %d, %v", n, err)
	}
	v, err = TallyAdd.Call(ctx, m.nodes["a"].rt, "h", 1)
	if err != nil || v != 7 {
		t.Fatalf("after hand-off = %d, %v; want 7", v, err)
	}
	if got := m.active("tally"); got["b"] != 1 || got["c"] != 0 {
		t.Fatalf("activations %v, want one on b", got)
	}
}

// The locks a node keeps of evicted actors are where their calls go
// while it keeps them, and Rebalance gives up those the ring places
// elsewhere.
func TestKeptLocksFollowTheRing(t *testing.T) {
	newProbe()
	m, _, c := newMeshWith(t, runtime.PoolConfig{MaxSize: 1, EvictionPolicy: runtime.EvictLRU}, "a", "b")
	ctx := context.Background()
	m.place(func(_, _ string) string { return "a" })
	for _, id := range []string{"x", "y"} { // x evicted on a, its lock kept
		if _, err := TallyAdd.Call(ctx, m.nodes["a"].rt, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	holder := func(id string) string {
		info, held, err := c.Holder(ctx, "tally/"+id)
		if err != nil || !held {
			t.Fatalf("tally/%s: held %v, %v", id, held, err)
		}
		return info.Owner
	}
	if h := holder("x"); h != "a" {
		t.Fatalf("x's lock is %s's, want a's (kept)", h)
	}
	// The ring moves everything to b; a still holds x, so b forwards x's
	// call to a, which activates it under the lock it kept.
	m.place(func(_, _ string) string { return "b" })
	if v, err := TallyAdd.Call(ctx, m.nodes["b"].rt, "x", 1); err != nil || v != 2 {
		t.Fatalf("x via b = %d, %v; want 2", v, err)
	}
	if got := m.active("tally"); got["a"] != 1 || got["b"] != 0 {
		t.Fatalf("activations %v, want x on a", got)
	}
	// Hand-off: a gives up x (active) and y (evicted, kept).
	if n, err := m.nodes["a"].rt.Rebalance(ctx); err != nil || n != 1 {
		t.Fatalf("Rebalance = %d, %v; want 1 handed off", n, err)
	}
	if _, held, _ := c.Holder(ctx, "tally/y"); held {
		t.Fatal("a kept y's lock after the ring moved it")
	}
	for id, want := range map[string]int{"x": 3, "y": 2} {
		if v, err := TallyAdd.Call(ctx, m.nodes["a"].rt, id, 1); err != nil || v != want {
			t.Fatalf("%s via a = %d, %v; want %d", id, v, err, want)
		}
		if h := holder(id); h != "b" {
			t.Fatalf("%s's lock is %s's, want b's", id, h)
		}
	}
}

func TestForwardingIsBounded(t *testing.T) {
	newProbe()
	m, _, c := newMesh(t, "a", "b")
	ctx := context.Background()
	// A session of a node that is not in the mesh holds the lock: every
	// forward toward it fails, and nothing loops.
	ghost, err := c.CreateSession(ctx, "ghost", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, ghost, "tally/z"); err != nil {
		t.Fatal(err)
	}
	m.place(func(_, _ string) string { return "b" })
	_, err = TallyAdd.Call(ctx, m.nodes["a"].rt, "z", 1)
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if h := m.nodes["a"].hops.Load() + m.nodes["b"].hops.Load(); h > runtime.MaxHops {
		t.Fatalf("%d hops, limit %d", h, runtime.MaxHops)
	}
}

func TestExecuteIsLocalOnly(t *testing.T) {
	newProbe()
	m, _, _ := newMesh(t, "a", "b")
	m.place(func(_, _ string) string { return "b" })
	err := runtime.Execute(context.Background(), m.nodes["a"].rt, Tally, "e", func(runtime.Context, *tallyActor) error { return nil })
	if !errors.Is(err, runtime.ErrNotLocal) {
		t.Fatalf("err = %v, want ErrNotLocal", err)
	}
	if err := runtime.Execute(context.Background(), m.nodes["b"].rt, Tally, "e", func(runtime.Context, *tallyActor) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
