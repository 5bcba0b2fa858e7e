package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// ---- test actor types ----

type greeter struct{ greeted int }

var Greeter = runtime.NewType("greeter", func(string) *greeter { return &greeter{} })

var Greet = runtime.AddMethod(Greeter, "greet", func(ctx runtime.Context, g *greeter, name string) (string, error) {
	g.greeted++ // in-memory only: not durable
	return "Hello, " + name + " from " + ctx.ActorID(), nil
})

// tally is a counter whose methods exercise every path of a turn.
type tally struct {
	inTurn  atomic.Bool
	overlap *atomic.Bool
}

type probe struct {
	mu            sync.Mutex
	deactivated   []string
	overlap       atomic.Bool
	gate          chan struct{} // "block" waits on it
	entered       chan string   // "block" announces itself
	order         []int
	activations   atomic.Int32
	activateError error
}

func (p *probe) record(id string) {
	p.mu.Lock()
	p.deactivated = append(p.deactivated, id)
	p.mu.Unlock()
}

func (p *probe) deactivatedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.deactivated...)
}

var theProbe *probe // set by newTally; tests using Tally are not parallel

type tallyActor struct {
	tally
	id string
}

func (a *tallyActor) OnActivate(ctx runtime.Context) error {
	theProbe.activations.Add(1)
	return theProbe.activateError
}

func (a *tallyActor) OnDeactivate(ctx runtime.Context) error {
	theProbe.record(a.id)
	return nil
}

var Tally = runtime.NewType("tally", func(id string) *tallyActor { return &tallyActor{id: id} })

func enter(a *tallyActor) func() {
	if a.inTurn.Swap(true) {
		theProbe.overlap.Store(true)
	}
	return func() { a.inTurn.Store(false) }
}

var TallyAdd = runtime.AddMethod(Tally, "add", func(ctx runtime.Context, a *tallyActor, n int) (int, error) {
	defer enter(a)()
	v, _, err := runtime.GetState[int](ctx.State(), "n")
	if err != nil {
		return 0, err
	}
	v += n
	return v, runtime.SetState(ctx.State(), "n", v)
})

var TallyGet = runtime.AddMethod(Tally, "get", func(ctx runtime.Context, a *tallyActor, _ struct{}) (int, error) {
	v, _, err := runtime.GetState[int](ctx.State(), "n")
	return v, err
})

// addThenPanic sets state, then panics: the change must be discarded.
var TallyPanic = runtime.AddMethod(Tally, "panic", func(ctx runtime.Context, a *tallyActor, _ struct{}) (int, error) {
	_ = runtime.SetState(ctx.State(), "n", -1000)
	panic("boom")
})

// addThenFail sets state, then returns an error: the change is discarded.
var errNope = errors.New("nope")
var TallyFail = runtime.AddMethod(Tally, "fail", func(ctx runtime.Context, a *tallyActor, _ struct{}) (int, error) {
	_ = runtime.SetState(ctx.State(), "n", -1000)
	return 0, errNope
})

// block announces itself, records its caller's number, and waits on the gate.
var TallyBlock = runtime.AddMethod(Tally, "block", func(ctx runtime.Context, a *tallyActor, n int) (int, error) {
	defer enter(a)()
	theProbe.mu.Lock()
	theProbe.order = append(theProbe.order, n)
	theProbe.mu.Unlock()
	theProbe.entered <- a.id
	<-theProbe.gate
	return n, nil
})

// record appends n to the order without blocking.
var TallyRecord = runtime.AddMethod(Tally, "record", func(ctx runtime.Context, a *tallyActor, n int) (int, error) {
	defer enter(a)()
	theProbe.mu.Lock()
	theProbe.order = append(theProbe.order, n)
	theProbe.mu.Unlock()
	return n, nil
})

func newProbe() *probe {
	theProbe = &probe{gate: make(chan struct{}), entered: make(chan string, 64)}
	return theProbe
}

var allTypes = []runtime.Definition{Greeter, Tally}

// ---- tests ----

func TestTypedCallLocalAndEncoded(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	for name, inv := range map[string]runtime.Invoker{"local": e.rt, "encoded": bytesOnly{e.rt}} {
		got, err := Greet.Call(ctx, inv, "greeter-1", "World")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := "Hello, World from greeter-1"; got != want {
			t.Fatalf("%s: got %q, want %q", name, got, want)
		}
	}
	// The raw Invoker path speaks JSON.
	b, err := e.rt.Invoke(ctx, "greeter", "g2", "greet", []byte(`"Ada"`))
	if err != nil || string(b) != `"Hello, Ada from g2"` {
		t.Fatalf("Invoke = %s, %v", b, err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if v, err := TallyAdd.Call(ctx, e.rt, "c", i); err != nil || v != i*(i+1)/2 {
			t.Fatalf("add %d = %d, %v", i, v, err)
		}
	}
	e.restart(allTypes)
	if v, err := TallyGet.Call(ctx, e.rt, "c", struct{}{}); err != nil || v != 6 {
		t.Fatalf("after restart get = %d, %v; want 6", v, err)
	}
	// One journal entry per state-changing turn; reads write nothing.
	entries, err := e.j.Read(ctx, "tally/c", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("journal has %d entries, want 3", len(entries))
	}
	for i, en := range entries {
		if en.Kind != journal.KindInvocation || en.Method != "add" || en.Seq != uint64(i+1) {
			t.Fatalf("entry %d = %+v", i, en)
		}
	}
}

func TestOneTurnAtATime(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	var wg sync.WaitGroup
	const callers, each = 16, 25
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := TallyAdd.Call(ctx, e.rt, "hot", 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p.overlap.Load() {
		t.Fatal("two turns of one actor overlapped")
	}
	if v, _ := TallyGet.Call(ctx, e.rt, "hot", struct{}{}); v != callers*each {
		t.Fatalf("total = %d, want %d", v, callers*each)
	}
}

func TestMailboxIsFIFOAndActorsRunInParallel(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	done := make(chan error, 16)
	go func() { _, err := TallyBlock.Call(ctx, e.rt, "fifo", 0); done <- err }()
	<-p.entered // actor "fifo" is now busy
	const n = 8
	for i := 1; i <= n; i++ {
		go func() { _, err := TallyRecord.Call(ctx, e.rt, "fifo", i); done <- err }()
		waitFor(t, fmt.Sprintf("caller %d queued", i), func() bool { return e.rt.MailboxDepth("tally", "fifo") == i })
	}
	// Another actor is not held up by the busy one.
	if _, err := TallyAdd.Call(ctx, e.rt, "other", 1); err != nil {
		t.Fatal(err)
	}
	close(p.gate)
	for i := 0; i <= n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, v := range p.order {
		if v != i {
			t.Fatalf("turn order %v, want 0..%d", p.order, n)
		}
	}
}

func TestCancelWhileWaitingInMailbox(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	done := make(chan error, 1)
	go func() { _, err := TallyBlock.Call(context.Background(), e.rt, "busy", 0); done <- err }()
	<-p.entered
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				waitFor(t, "queued", func() bool { return e.rt.MailboxDepth("tally", "busy") == 1 })
				cancel()
			}()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			_, err := TallyAdd.Call(ctx, e.rt, "busy", 1)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	close(p.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The abandoned calls never ran.
	if v, _ := TallyGet.Call(context.Background(), e.rt, "busy", struct{}{}); v != 0 {
		t.Fatalf("value = %d, want 0: a cancelled call ran", v)
	}
}

func TestPanicAndMethodErrorDiscardTheTurn(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "x", 5); err != nil {
		t.Fatal(err)
	}
	_, err := TallyPanic.Call(ctx, e.rt, "x", struct{}{})
	if !errors.Is(err, runtime.ErrActorPanic) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic err = %v", err)
	}
	if e.rt.Active("tally") != 0 {
		t.Fatal("a panicked actor must be deactivated")
	}
	_, err = TallyFail.Call(ctx, e.rt, "x", struct{}{})
	var me *runtime.MethodError
	if !errors.Is(err, errNope) || !errors.As(err, &me) || me.Method != "fail" {
		t.Fatalf("method err = %v", err)
	}
	if v, err := TallyGet.Call(ctx, e.rt, "x", struct{}{}); err != nil || v != 5 {
		t.Fatalf("value = %d, %v; want 5", v, err)
	}
	if got := p.activations.Load(); got != 2 {
		t.Fatalf("activations = %d, want 2 (one before the panic, one after)", got)
	}
}

func TestBadInput(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes, func(o *runtime.Options) { o.MaxPayloadBytes = 64 })
	ctx := context.Background()
	for _, tc := range []struct {
		name, typ, id, method string
		payload               string
		want                  error
		says                  string // in the message, when set
	}{
		{"unknown type", "nope", "a", "add", `1`, runtime.ErrUnknownType, ""},
		{"unknown method", "tally", "a", "nope", `1`, runtime.ErrUnknownMethod, ""},
		// The JSON type that did not fit is named (encoding/json's wording).
		{"undecodable", "tally", "a", "add", `{"not":"an int"}`, runtime.ErrBadPayload, "cannot unmarshal object into Go value of type int"},
		{"not json", "tally", "a", "add", `{`, runtime.ErrBadPayload, "unexpected end of JSON input"},
		{"too large", "tally", "a", "add", strings.Repeat("1", 65), runtime.ErrPayloadTooLarge, ""},
		{"empty id", "tally", "", "add", `1`, runtime.ErrInvalidID, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.rt.Invoke(ctx, tc.typ, tc.id, tc.method, []byte(tc.payload))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want it to say %q", err, tc.says)
			}
		})
	}
	if e.rt.Active("tally") != 0 {
		t.Fatal("bad input must not activate anything")
	}
	// A local call with a value of the wrong type.
	if _, err := e.rt.InvokeLocal(ctx, "tally", "a", "add", "one"); !errors.Is(err, runtime.ErrBadPayload) {
		t.Fatalf("InvokeLocal wrong type: %v", err)
	}
}

func TestProtobufCodec(t *testing.T) {
	type echo struct{}
	Echo := runtime.NewType("echo", func(string) *echo { return &echo{} })
	Upper := runtime.AddMethod(Echo, "upper", func(ctx runtime.Context, _ *echo, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return wrapperspb.String(strings.ToUpper(in.GetValue())), nil
	})
	e := newEnv(t, []runtime.Definition{Echo})
	out, err := Upper.Call(context.Background(), bytesOnly{e.rt}, "e", wrapperspb.String("loom"))
	if err != nil || out.GetValue() != "LOOM" {
		t.Fatalf("upper = %v, %v", out, err)
	}
	// JSON is not protobuf: a JSON body is a bad payload here.
	if _, err := e.rt.Invoke(context.Background(), "echo", "e", "upper", []byte(`{"value":"x"}`)); !errors.Is(err, runtime.ErrBadPayload) {
		t.Fatalf("json into a protobuf method: %v", err)
	}
}

// lruPool gives every type an LRU pool of size.
func lruPool(size int) envOpt {
	return func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: size, EvictionPolicy: runtime.EvictLRU}
		}
	}
}

// countingCoordinator counts the lock writes that reach the coordinator.
type countingCoordinator struct {
	lock.Coordinator
	acquires, releases atomic.Int64
}

func (c *countingCoordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	c.acquires.Add(1)
	return c.Coordinator.Acquire(ctx, s, key)
}

func (c *countingCoordinator) Release(ctx context.Context, s lock.SessionID, key string) error {
	c.releases.Add(1)
	return c.Coordinator.Release(ctx, s, key)
}

// countLocks makes the runtime take its locks through a counting
// coordinator, stored in *cc.
func countLocks(cc **countingCoordinator) envOpt {
	return func(o *runtime.Options) {
		*cc = &countingCoordinator{Coordinator: o.Coordinator}
		o.Coordinator = *cc
	}
}

// holds reports whether the env's session holds key's lock, and its token.
func (e *env) holds(key string) (uint64, bool) {
	e.t.Helper()
	info, held, err := e.coord.Holder(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Token, held && info.Session == e.session.id
}

// The least recently used actor is evicted; the node keeps its lock, and
// the actor comes back with its state under that lock, without a grant.
func TestLRUEviction(t *testing.T) {
	p := newProbe()
	var cc *countingCoordinator
	e := newEnv(t, allTypes, lruPool(2), countLocks(&cc))
	ctx := context.Background()
	for _, id := range []string{"a", "b", "a", "c"} {
		if _, err := TallyAdd.Call(ctx, e.rt, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.deactivatedIDs(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("deactivated %v, want [b] (least recently used)", got)
	}
	if n := e.rt.Active("tally"); n != 2 {
		t.Fatalf("active = %d, want 2", n)
	}
	tok, kept := e.holds("tally/b")
	if !kept {
		t.Fatal("the evicted actor's lock is not kept")
	}
	if a, r := cc.acquires.Load(), cc.releases.Load(); a != 3 || r != 0 {
		t.Fatalf("%d grants and %d releases for 3 actors, one evicted; want 3 and 0", a, r)
	}
	if v, err := TallyGet.Call(ctx, e.rt, "b", struct{}{}); err != nil || v != 1 {
		t.Fatalf("b = %d, %v; want 1", v, err)
	}
	if a := cc.acquires.Load(); a != 3 {
		t.Fatalf("b came back with a grant (%d in all)", a)
	}
	if again, held := e.holds("tally/b"); !held || again != tok {
		t.Fatalf("b's lock after it came back: token %d, held %v; want %d", again, held, tok)
	}
	// It writes under that lock.
	if v, err := TallyAdd.Call(ctx, e.rt, "b", 1); err != nil || v != 2 {
		t.Fatalf("b + 1 = %d, %v; want 2", v, err)
	}
}

// A pool keeps at most 10 locks per slot, releasing the oldest beyond.
func TestKeptLocksAreBounded(t *testing.T) {
	newProbe()
	var cc *countingCoordinator
	e := newEnv(t, allTypes, lruPool(2), countLocks(&cc))
	ctx := context.Background()
	for i := range 30 {
		if _, err := TallyAdd.Call(ctx, e.rt, fmt.Sprint("x", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	// x28 and x29 are active, x0..x27 evicted: the newest 20 kept.
	for i := range 30 {
		_, held := e.holds(fmt.Sprint("tally/x", i))
		if want := i >= 8; held != want {
			t.Errorf("x%d held %v, want %v", i, held, want)
		}
	}
	if r := cc.releases.Load(); r != 8 {
		t.Errorf("%d releases, want 8", r)
	}
	// A released one comes back with a grant.
	before := cc.acquires.Load()
	if v, err := TallyGet.Call(ctx, e.rt, "x0", struct{}{}); err != nil || v != 1 {
		t.Fatalf("x0 = %d, %v; want 1", v, err)
	}
	if cc.acquires.Load() != before+1 {
		t.Fatal("x0 came back without a grant")
	}
}

// A lock kept under a session that has since ended is not used: the
// actor is granted anew under the node's new session.
func TestKeptLockOfAnotherSessionIsNotUsed(t *testing.T) {
	newProbe()
	var cc *countingCoordinator
	e := newEnv(t, allTypes, lruPool(1), countLocks(&cc))
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := TallyAdd.Call(ctx, e.rt, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	// The session ends (a's lock with it) and the node starts another,
	// keeping its activations: only the kept lock is stale.
	if err := e.coord.DestroySession(ctx, e.session.id); err != nil {
		t.Fatal(err)
	}
	id, err := e.coord.CreateSession(ctx, "node-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.session.id = id
	before := cc.acquires.Load()
	if v, err := TallyAdd.Call(ctx, e.rt, "a", 1); err != nil || v != 2 {
		t.Fatalf("a + 1 = %d, %v; want 2", v, err)
	}
	if cc.acquires.Load() != before+1 {
		t.Fatal("a came back without a grant under the new session")
	}
	if _, held := e.holds("tally/a"); !held {
		t.Fatal("a's lock is not held by the new session")
	}
}

// A large pool evicts a batch at once: the least recently used, their
// locks and state kept.
func TestLRUEvictionInBatches(t *testing.T) {
	p := newProbe()
	const size = 64 // a batch of 2
	e := newEnv(t, allTypes, lruPool(size))
	ctx := context.Background()
	for i := range size {
		if _, err := TallyAdd.Call(ctx, e.rt, fmt.Sprint("a", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a0", "a2", "new"} {
		if _, err := TallyAdd.Call(ctx, e.rt, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	got := p.deactivatedIDs()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a1", "a3"}) {
		t.Fatalf("deactivated %v, want [a1 a3] (the two least recently used)", got)
	}
	if n := e.rt.Active("tally"); n != size-1 {
		t.Fatalf("active = %d, want %d", n, size-1)
	}
	for _, id := range got {
		if _, kept := e.holds("tally/" + id); !kept {
			t.Fatalf("evicted %s's lock not kept", id)
		}
		if v, err := TallyGet.Call(ctx, e.rt, id, struct{}{}); err != nil || v != 1 {
			t.Fatalf("%s = %d, %v; want 1", id, v, err)
		}
	}
}

func TestPoolRejectPolicy(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: 1, EvictionPolicy: runtime.EvictReject}
		}
	})
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "a", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := TallyAdd.Call(ctx, e.rt, "b", 1); !errors.Is(err, runtime.ErrPoolFull) {
		t.Fatalf("err = %v, want ErrPoolFull", err)
	}
	if _, err := TallyAdd.Call(ctx, e.rt, "a", 1); err != nil {
		t.Fatalf("the active actor still answers: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: 100, IdleTimeout: time.Minute}
		}
		o.IdleCheckInterval = time.Hour // the test sweeps by hand
	})
	ctx := context.Background()
	for _, id := range []string{"old", "new"} {
		if _, err := TallyAdd.Call(ctx, e.rt, id, 7); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(40 * time.Second)
	}
	e.rt.SweepIdle() // "old" idle 80s, "new" 40s
	if got := p.deactivatedIDs(); len(got) != 1 || got[0] != "old" {
		t.Fatalf("deactivated %v, want [old]", got)
	}
	if _, held, _ := e.coord.Holder(ctx, "tally/old"); held {
		t.Fatal("idle actor's lock still held")
	}
	if v, _ := TallyGet.Call(ctx, e.rt, "old", struct{}{}); v != 7 {
		t.Fatalf("old = %d after reactivation, want 7", v)
	}
}

func TestSnapshotsTruncateAndRecover(t *testing.T) {
	newProbe()
	snap := func(o *runtime.Options) { o.SnapshotEvery = 10 }
	e := newEnv(t, allTypes, snap)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		if _, err := TallyAdd.Call(ctx, e.rt, "s", 1); err != nil {
			t.Fatal(err)
		}
	}
	s, ok, err := e.j.LoadSnapshot(ctx, "tally/s")
	if err != nil || !ok || s.Seq != 20 {
		t.Fatalf("snapshot = %+v, %v, %v; want seq 20", s, ok, err)
	}
	entries, _ := e.j.Read(ctx, "tally/s", 1)
	if len(entries) != 5 || entries[0].Seq != 21 {
		t.Fatalf("journal after truncation has %d entries from %d, want 5 from 21", len(entries), entries[0].Seq)
	}
	e.restart(allTypes, snap)
	if v, err := TallyGet.Call(ctx, e.rt, "s", struct{}{}); err != nil || v != 25 {
		t.Fatalf("after restart = %d, %v; want 25", v, err)
	}
}

func TestFencedAppendIsRejectedAndDiscarded(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "f", 1); err != nil {
		t.Fatal(err)
	}
	// A newer owner (higher token) writes to the actor behind our back.
	tail, _ := e.j.Tail(ctx, "tally/f")
	if _, err := e.j.Append(ctx, "tally/f", 1<<40, tail.Seq, []journal.Entry{{Kind: journal.KindSnapshotMarker}}); err != nil {
		t.Fatal(err)
	}
	_, err := TallyAdd.Call(ctx, e.rt, "f", 1)
	if !errors.Is(err, runtime.ErrFenced) {
		t.Fatalf("err = %v, want ErrFenced", err)
	}
	if e.rt.Active("tally") != 0 {
		t.Fatal("a fenced actor must be deactivated")
	}
	entries, _ := e.j.Read(ctx, "tally/f", 1)
	if len(entries) != 2 {
		t.Fatalf("journal has %d entries, want 2: the fenced turn must not be there", len(entries))
	}
}

func TestLapsedSessionStopsServing(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "l", 1); err != nil {
		t.Fatal(err)
	}
	e.session.invalid.Store(true)
	if _, err := TallyAdd.Call(ctx, e.rt, "l", 1); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if e.rt.Active("tally") != 0 {
		t.Fatal("actors must be dropped when the session may have lapsed")
	}
}

func TestDropAll(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { _, err := TallyBlock.Call(ctx, e.rt, "d", 0); done <- err }()
	<-p.entered
	e.rt.DropAll("test")
	if e.rt.Active("tally") != 0 {
		t.Fatal("DropAll left activations")
	}
	close(p.gate)
	if err := <-done; err != nil {
		t.Fatal(err) // "block" changes no state, so it completes
	}
	if len(p.deactivatedIDs()) != 0 {
		t.Fatal("DropAll must not run OnDeactivate")
	}
}

func TestExecuteClosure(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes, func(o *runtime.Options) { o.Router = onlyIDs{"here": true} })
	ctx := context.Background()
	err := runtime.Execute(ctx, e.rt, Tally, "here", func(ctx runtime.Context, a *tallyActor) error {
		return runtime.SetState(ctx.State(), "n", 41)
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := TallyAdd.Call(ctx, e.rt, "here", 1); v != 42 {
		t.Fatalf("value = %d, want 42", v)
	}
	err = runtime.Execute(ctx, e.rt, Tally, "elsewhere", func(runtime.Context, *tallyActor) error { return nil })
	if !errors.Is(err, runtime.ErrNotLocal) {
		t.Fatalf("err = %v, want ErrNotLocal", err)
	}
}

// onlyIDs is a Router for a node that owns only the listed ids and cannot
// reach any other node.
type onlyIDs map[string]bool

func (o onlyIDs) NodeID() string { return "node-test" }
func (o onlyIDs) Owner(_, id string) (string, bool, bool) {
	if o[id] {
		return "node-test", true, true
	}
	return "node-elsewhere", false, true
}
func (o onlyIDs) Forward(context.Context, string, runtime.Call) ([]byte, error) {
	return nil, fmt.Errorf("%w: no network in this test", runtime.ErrUnavailable)
}

func TestShutdownFinishesInFlightTurn(t *testing.T) {
	p := newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "k", 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := TallyBlock.Call(ctx, e.rt, "k", 0); done <- err }()
	<-p.entered
	closed := make(chan error, 1)
	go func() { closed <- e.rt.Close(ctx) }()
	waitFor(t, "new calls refused", func() bool {
		_, err := TallyAdd.Call(ctx, e.rt, "other", 1)
		return errors.Is(err, runtime.ErrShuttingDown)
	})
	select {
	case <-closed:
		t.Fatal("Close returned while a turn was running")
	default:
	}
	close(p.gate)
	if err := <-done; err != nil {
		t.Fatalf("in-flight turn: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// "k" was deactivated cleanly (hook run) once its turn finished. ("other"
	// may have been activated by the probe loop before Close began.)
	if ids := p.deactivatedIDs(); !slices.Contains(ids, "k") {
		t.Fatalf("deactivated on shutdown: %v", ids)
	}
	if e.rt.Active("tally") != 0 {
		t.Fatal("activations left after Close")
	}
	if err := e.rt.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestActivationHookError(t *testing.T) {
	p := newProbe()
	p.activateError = errors.New("not today")
	e := newEnv(t, allTypes)
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "h", 1); err == nil || !strings.Contains(err.Error(), "not today") {
		t.Fatalf("err = %v", err)
	}
	if _, held, _ := e.coord.Holder(ctx, "tally/h"); held {
		t.Fatal("failed activation kept its lock")
	}
	p.activateError = nil
	if v, err := TallyAdd.Call(ctx, e.rt, "h", 1); err != nil || v != 1 {
		t.Fatalf("after hook recovers: %d, %v", v, err)
	}
}

func TestHeldLockIsUnavailable(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	other, err := e.coord.CreateSession(ctx, "node-other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.coord.Acquire(ctx, other, "tally/taken"); err != nil {
		t.Fatal(err)
	}
	_, err = TallyAdd.Call(ctx, e.rt, "taken", 1)
	if !errors.Is(err, runtime.ErrUnavailable) || !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping ErrHeld", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	type x struct{}
	Bad := runtime.NewType("bad", func(string) *x { return &x{} })
	runtime.AddMethod(Bad, "m", func(runtime.Context, *x, int) (int, error) { return 0, nil })
	runtime.AddMethod(Bad, "m", func(runtime.Context, *x, int) (int, error) { return 0, nil })
	e := newEnv(t, nil)
	if err := e.rt.Register(Bad); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate method: %v", err)
	}
	if err := e.rt.Register(Greeter); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Register(Greeter); err == nil {
		t.Fatal("registering a type twice must fail")
	}
}

// slowRelease is a coordinator whose Release of one key waits until an
// Acquire of that key arrives or a bound passes, so that a test can see
// whether the runtime lets a new activation acquire while the old one is
// still releasing.
type slowRelease struct {
	lock.Coordinator
	key       string
	releasing chan struct{} // closed when the Release of key begins
	acquired  chan struct{} // closed by an Acquire of key during it
	inRelease atomic.Bool
	once      sync.Once
}

func (c *slowRelease) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	if key == c.key && c.inRelease.Load() {
		c.once.Do(func() { close(c.acquired) })
	}
	return c.Coordinator.Acquire(ctx, s, key)
}

func (c *slowRelease) Release(ctx context.Context, s lock.SessionID, key string) error {
	if key == c.key {
		c.inRelease.Store(true)
		close(c.releasing)
		select {
		case <-c.acquired:
		case <-time.After(300 * time.Millisecond): // the bad event did not come
		}
		defer c.inRelease.Store(false)
	}
	return c.Coordinator.Release(ctx, s, key)
}

// A call that arrives while its actor is deactivating waits for the lock
// release: were it to activate and acquire first (the same session gets
// the lock again), the old activation's release would then free the lock
// of the new one, which would run holding nothing.
func TestActivationWaitsForThePreviousReleaseOfItsLock(t *testing.T) {
	newProbe()
	var sr *slowRelease
	e := newEnv(t, allTypes, func(o *runtime.Options) {
		sr = &slowRelease{Coordinator: o.Coordinator, key: "tally/r", releasing: make(chan struct{}), acquired: make(chan struct{})}
		o.Coordinator = sr
	})
	ctx := context.Background()
	if _, err := TallyAdd.Call(ctx, e.rt, "r", 1); err != nil {
		t.Fatal(err)
	}
	deactivated := make(chan error, 1)
	go func() { deactivated <- e.rt.Deactivate(ctx, "tally", "r") }()
	<-sr.releasing
	if v, err := TallyAdd.Call(ctx, e.rt, "r", 1); err != nil || v != 2 {
		t.Fatalf("add during the deactivation = %d, %v; want 2", v, err)
	}
	if err := <-deactivated; err != nil {
		t.Fatal(err)
	}
	info, held, err := e.coord.Holder(ctx, "tally/r")
	if err != nil || !held || info.Session != e.session.id {
		t.Fatalf("lock of the active actor: %+v held=%v err=%v; want held by this node's session", info, held, err)
	}
}

func TestActiveIDs(t *testing.T) {
	newProbe()
	e := newEnv(t, allTypes)
	ctx := context.Background()
	for _, id := range []string{"b", "a", "c"} {
		if _, err := TallyAdd.Call(ctx, e.rt, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.rt.ActiveIDs("tally"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("ActiveIDs = %v", got)
	}
	if err := e.rt.Deactivate(ctx, "tally", "b"); err != nil {
		t.Fatal(err)
	}
	if got := e.rt.ActiveIDs("tally"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("ActiveIDs after deactivating b = %v", got)
	}
	if got := e.rt.ActiveIDs("nope"); got != nil {
		t.Fatalf("ActiveIDs of an unknown type = %v", got)
	}
}
