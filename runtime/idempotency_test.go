package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
)

// ledger counts, durably, and counts its method runs in memory (runs),
// so a test sees whether a call ran or was answered from its record.
type ledger struct{}

var (
	ledgerRuns atomic.Int64
	Ledger     = runtime.NewType("ledger", func(string) *ledger { return &ledger{} })
	LedgerAdd  = runtime.AddMethod(Ledger, "add", func(ctx runtime.Context, _ *ledger, n int) (int, error) {
		ledgerRuns.Add(1)
		if n < 0 {
			return 0, fmt.Errorf("%w: negative %d", runtime.ErrInvalidArgument, n)
		}
		v, _, err := runtime.GetState[int](ctx.State(), "v")
		if err != nil {
			return 0, err
		}
		v += n
		return v, runtime.SetState(ctx.State(), "v", v)
	})
	LedgerGet = runtime.AddMethod0(Ledger, "get", func(ctx runtime.Context, _ *ledger) (int, error) {
		v, _, err := runtime.GetState[int](ctx.State(), "v")
		return v, err
	})
)

func keyCtx(key string) context.Context {
	return runtime.WithIdempotencyKey(context.Background(), key)
}

func TestIdempotencyKeyRunsOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  envOpt
		// between the first call and the retry
		between func(e *env)
	}{
		{"same activation", nil, func(*env) {}},
		{"after a restart", nil, func(e *env) { e.restart([]runtime.Definition{Ledger}) }},
		{"from a snapshot", func(o *runtime.Options) { o.SnapshotEvery = 1 }, func(e *env) {
			e.restart([]runtime.Definition{Ledger}, func(o *runtime.Options) { o.SnapshotEvery = 1 })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var opts []envOpt
			if c.opt != nil {
				opts = append(opts, c.opt)
			}
			e := newEnv(t, []runtime.Definition{Ledger}, opts...)
			for _, path := range []string{"local", "encoded"} {
				// The runtime of the moment (between may restart it).
				invoker := func() runtime.Invoker {
					if path == "local" {
						return e.rt
					}
					return bytesOnly{e.rt}
				}
				inv := struct {
					name string
					inv  runtime.Invoker
				}{path, invoker()}
				ctx := keyCtx("k-" + inv.name)
				runs := ledgerRuns.Load()
				first, err := LedgerAdd.Call(ctx, inv.inv, "l1", 5)
				if err != nil {
					t.Fatal(err)
				}
				failed := keyCtx("bad-" + inv.name)
				_, ferr := LedgerAdd.Call(failed, inv.inv, "l1", -1)
				if !errors.Is(ferr, runtime.ErrInvalidArgument) {
					t.Fatalf("%s: add -1: %v", inv.name, ferr)
				}
				c.between(e)
				inv.inv = invoker()
				again, err := LedgerAdd.Call(ctx, inv.inv, "l1", 5)
				if err != nil || again != first {
					t.Errorf("%s: the retry got %d, %v; the first call %d", inv.name, again, err, first)
				}
				_, ferr2 := LedgerAdd.Call(failed, inv.inv, "l1", -1)
				if !errors.Is(ferr2, runtime.ErrInvalidArgument) || ferr2.Error() != ferr.Error() {
					t.Errorf("%s: the failed call's retry got %v; the first %v", inv.name, ferr2, ferr)
				}
				if n := ledgerRuns.Load() - runs; n != 2 {
					t.Errorf("%s: the method ran %d times for two keys called twice each", inv.name, n)
				}
			}
			if v, err := LedgerGet.Call(context.Background(), e.rt, "l1"); err != nil || v != 10 {
				t.Errorf("ledger = %d, %v; want 10 (two keyed adds of 5)", v, err)
			}
			// One entry per key: the add and the recorded failure.
			entries, err := e.j.Read(context.Background(), "ledger/l1", 1)
			if err != nil {
				t.Fatal(err)
			}
			if c.opt == nil {
				keys := map[string]int{}
				for _, en := range entries {
					keys[en.IdempotencyKey]++
				}
				for _, k := range []string{"k-local", "bad-local", "k-encoded", "bad-encoded"} {
					if keys[k] != 1 {
						t.Errorf("key %s is in %d journal entries, want 1", k, keys[k])
					}
				}
			}
		})
	}
}

func TestIdempotencyKeyMisuse(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Ledger})
	ctx := keyCtx("k")
	if _, err := LedgerAdd.Call(ctx, e.rt, "l", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := LedgerGet.Call(ctx, e.rt, "l"); !errors.Is(err, runtime.ErrIdempotencyKeyReused) {
		t.Errorf("the key again for another method: %v", err)
	}
	long := keyCtx(strings.Repeat("x", runtime.MaxIdempotencyKeyBytes+1))
	if _, err := LedgerAdd.Call(long, e.rt, "l", 1); !errors.Is(err, runtime.ErrIdempotencyKeyInvalid) || !strings.Contains(err.Error(), "257 bytes") {
		t.Errorf("a 257-byte key: %v", err)
	}
	if _, err := LedgerAdd.Call(keyCtx(strings.Repeat("x", runtime.MaxIdempotencyKeyBytes)), e.rt, "l", 1); err != nil {
		t.Errorf("a 256-byte key: %v", err)
	}
}

func TestIdempotencyWindow(t *testing.T) {
	const keys, retention = 3, time.Minute
	e := newEnv(t, []runtime.Definition{Ledger}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: 100, IdempotencyKeys: keys, IdempotencyRetention: retention}
		}
	})
	// By count: k1 is evicted by k2..k4; its retry may be a repeat of a
	// call the actor forgot, and is refused rather than run again.
	// Keys' ages follow the test's clock, as a caller's would follow
	// time: k1 is retried as old as the clock has moved since.
	k1born := e.clock.Now()
	k1 := func() context.Context {
		return runtime.WithIdempotencyKeyAge(context.Background(), "k1", e.clock.Now().Sub(k1born))
	}
	if _, err := LedgerAdd.Call(k1(), e.rt, "l", 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Millisecond)
	for i := 2; i <= 4; i++ {
		if _, err := LedgerAdd.Call(keyCtx(fmt.Sprint("k", i)), e.rt, "l", 1); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Millisecond)
	}
	runs := ledgerRuns.Load()
	if _, err := LedgerAdd.Call(k1(), e.rt, "l", 1); !errors.Is(err, runtime.ErrIdempotencyKeyExpired) {
		t.Errorf("k1 after 3 newer keys: %v, want ErrIdempotencyKeyExpired", err)
	}
	// k2..k4 are remembered; a new key runs.
	if v, err := LedgerAdd.Call(keyCtx("k4"), e.rt, "l", 1); err != nil || v != 4 {
		t.Errorf("k4 again: %d, %v; want its recorded 4", v, err)
	}
	e.clock.Advance(time.Millisecond)
	if v, err := LedgerAdd.Call(keyCtx("k5"), e.rt, "l", 1); err != nil || v != 5 {
		t.Errorf("k5: %d, %v", v, err)
	}
	if n := ledgerRuns.Load() - runs; n != 1 {
		t.Errorf("%d runs, want 1 (k5)", n)
	}
	// The same after a restart: the window is rebuilt from the journal.
	e.restart([]runtime.Definition{Ledger}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: 100, IdempotencyKeys: keys, IdempotencyRetention: retention}
		}
	})
	if _, err := LedgerAdd.Call(k1(), e.rt, "l", 1); !errors.Is(err, runtime.ErrIdempotencyKeyExpired) {
		t.Errorf("k1 after a restart: %v, want ErrIdempotencyKeyExpired", err)
	}
	if v, err := LedgerAdd.Call(keyCtx("k5"), e.rt, "l", 1); err != nil || v != 5 {
		t.Errorf("k5 after a restart: %d, %v; want its recorded 5", v, err)
	}

	// By age: a key older than the retention that is not remembered.
	old := runtime.WithIdempotencyKeyAge(context.Background(), "k-old", retention+time.Second)
	if _, err := LedgerAdd.Call(old, e.rt, "l", 1); !errors.Is(err, runtime.ErrIdempotencyKeyExpired) {
		t.Errorf("a key older than the retention: %v", err)
	}
	// A remembered key is answered while its record lasts, however old
	// the retry; once the record ages out, the retry is refused.
	e.clock.Advance(retention / 2)
	if v, err := LedgerAdd.Call(runtime.WithIdempotencyKeyAge(context.Background(), "k5", retention/2), e.rt, "l", 1); err != nil || v != 5 {
		t.Errorf("k5 half a retention later: %d, %v", v, err)
	}
	e.clock.Advance(retention + 2*time.Minute)
	if _, err := LedgerAdd.Call(runtime.WithIdempotencyKeyAge(context.Background(), "k5", 2*retention+2*time.Minute), e.rt, "l", 1); !errors.Is(err, runtime.ErrIdempotencyKeyExpired) {
		t.Errorf("k5 after its record aged out: %v", err)
	}
	if v, err := LedgerGet.Call(context.Background(), e.rt, "l"); err != nil || v != 5 {
		t.Errorf("ledger = %d, %v; want 5", v, err)
	}
}

func TestIdempotencyRecordsAreInTheJournal(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Ledger})
	if _, err := LedgerAdd.Call(keyCtx("audit"), e.rt, "a", 7); err != nil {
		t.Fatal(err)
	}
	entries, err := e.j.Read(context.Background(), "ledger/a", 1)
	if err != nil || len(entries) != 1 {
		t.Fatalf("entries %v, %v", entries, err)
	}
	en := entries[0]
	if en.Kind != journal.KindInvocation || en.IdempotencyKey != "audit" {
		t.Errorf("entry %+v", en)
	}
	// Audit tools still read the state changes of a record-carrying entry.
	_, ops, err := runtime.DecodeChanges(en.Payload)
	if err != nil || string(ops["v"]) != "7" {
		t.Errorf("DecodeChanges: %v, %v", ops, err)
	}
}

// valve blocks its "hold" method until the test opens the gate.
type valve struct{}

var (
	valveGate = make(chan struct{})
	valveHeld = make(chan struct{}, 1)
	Valve     = runtime.NewType("valve", func(string) *valve { return &valve{} })
	ValveHold = runtime.AddMethod0(Valve, "hold", func(ctx runtime.Context, _ *valve) (string, error) {
		valveHeld <- struct{}{}
		<-valveGate
		return "released", nil
	})
	ValvePing = runtime.AddMethod0(Valve, "ping", func(ctx runtime.Context, _ *valve) (string, error) { return "pong", nil })
)

func TestMaxQueueRefusesAtOnce(t *testing.T) {
	const maxQueue = 2
	e := newEnv(t, []runtime.Definition{Valve}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig { return runtime.PoolConfig{MaxSize: 100, MaxQueue: maxQueue} }
	})
	valveGate, valveHeld = make(chan struct{}), make(chan struct{}, 1)
	ctx := context.Background()
	done := make(chan error, 1+maxQueue)
	go func() { _, err := ValveHold.Call(ctx, e.rt, "v"); done <- err }()
	<-valveHeld
	for range maxQueue {
		go func() { _, err := ValvePing.Call(ctx, e.rt, "v"); done <- err }()
	}
	waitFor(t, "the queue to fill", func() bool { return e.rt.MailboxDepth("valve", "v") == maxQueue })
	_, err := ValvePing.Call(ctx, e.rt, "v")
	if !errors.Is(err, runtime.ErrOverloaded) || !strings.Contains(err.Error(), "valve/v has 2 calls waiting") {
		t.Errorf("a call beyond maxQueue: %v, want ErrOverloaded", err)
	}
	// Other actors of the type are not affected.
	if out, err := ValvePing.Call(ctx, e.rt, "other"); err != nil || out != "pong" {
		t.Errorf("another valve: %q, %v", out, err)
	}
	close(valveGate)
	for range 1 + maxQueue {
		if err := <-done; err != nil {
			t.Errorf("a queued call: %v", err)
		}
	}
	bad := newEnv(t, nil, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig { return runtime.PoolConfig{MaxQueue: -1} }
	})
	if err := bad.rt.Register(Valve); err == nil || !strings.Contains(err.Error(), "negative MaxQueue -1") {
		t.Errorf("MaxQueue -1: %v", err)
	}
}

func TestRateLimitRefusesAtOnce(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Ledger}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig {
			return runtime.PoolConfig{MaxSize: 100, RateLimit: 0.001, RateBurst: 3}
		}
	})
	ctx := context.Background()
	for i := range 3 {
		if _, err := LedgerGet.Call(ctx, e.rt, fmt.Sprint("r", i)); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	if _, err := LedgerGet.Call(ctx, e.rt, "r9"); !errors.Is(err, runtime.ErrOverloaded) || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("a call beyond the burst: %v, want ErrOverloaded (rate limit)", err)
	}
}

// slowStart's activation waits for the test.
type slowStart struct{}

var slowGate chan struct{}

func (*slowStart) OnActivate(ctx runtime.Context) error {
	select {
	case <-slowGate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	SlowStart     = runtime.NewType("slow-start", func(string) *slowStart { return &slowStart{} })
	SlowStartPing = runtime.AddMethod0(SlowStart, "ping", func(runtime.Context, *slowStart) (string, error) { return "pong", nil })
)

func TestMaxActivatingMakesActivationsWait(t *testing.T) {
	slowGate = make(chan struct{})
	e := newEnv(t, []runtime.Definition{SlowStart}, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig { return runtime.PoolConfig{MaxSize: 100, MaxActivating: 1} }
	})
	first := make(chan error, 1)
	go func() {
		_, err := SlowStartPing.Call(context.Background(), e.rt, "a")
		first <- err
	}()
	waitFor(t, "the first activation to start", func() bool { return e.rt.Active("slow-start") == 1 })
	// The only slot is taken: a second actor's activation waits, and
	// gives up with its caller.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := SlowStartPing.Call(ctx, e.rt, "b"); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "activation slots") {
		t.Errorf("a second activation while the slot is taken: %v", err)
	}
	if e.rt.IsActive("slow-start", "b") {
		t.Error("b was left in the pool after its caller gave up")
	}
	close(slowGate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if out, err := SlowStartPing.Call(context.Background(), e.rt, "b"); err != nil || out != "pong" {
		t.Errorf("b once the slot is free: %q, %v", out, err)
	}
}
