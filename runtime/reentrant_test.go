package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/runtime"
)

// An account (reentrant) asks an auditor to check a transfer; the auditor
// calls back into the account to read its balance: A → B → A.
type account struct{}

type auditor struct{}

// Transfer is account.transfer's argument.
type Transfer struct {
	Amount int  `json:"amount"`
	FailIn bool `json:"failIn"` // the re-entering call fails
	Fail   bool `json:"fail"`   // the outer turn fails after the re-entry
}

var (
	Account         = runtime.NewType("account", func(string) *account { return &account{} }).Reentrant()
	Auditor         = runtime.NewType("auditor", func(string) *auditor { return &auditor{} })
	AccountTransfer runtime.Method[Transfer, int]
	AccountBalance  runtime.Method[bool, int]
	AuditorCheck    runtime.Method[Transfer, int]
)

func init() {
	AccountTransfer = runtime.AddMethod(Account, "transfer", func(ctx runtime.Context, _ *account, in Transfer) (int, error) {
		// Written before the call out: the re-entering call sees it, and
		// commits it.
		if err := runtime.SetState(ctx.State(), "pending", in.Amount); err != nil {
			return 0, err
		}
		seen, err := AuditorCheck.Call(ctx, ctx.Actors(), "aud", in)
		if err != nil {
			return 0, err
		}
		if err := runtime.SetState(ctx.State(), "after", seen); err != nil {
			return 0, err
		}
		if in.Fail {
			return 0, errors.New("the transfer failed after its audit")
		}
		return seen, nil
	})
	AccountBalance = runtime.AddMethod(Account, "balance", func(ctx runtime.Context, _ *account, fail bool) (int, error) {
		p, _, err := runtime.GetState[int](ctx.State(), "pending")
		if err != nil {
			return 0, err
		}
		if err := runtime.SetState(ctx.State(), "audited", p); err != nil {
			return 0, err
		}
		if fail {
			return 0, errors.New("balance refused")
		}
		return p, nil
	})
	AuditorCheck = runtime.AddMethod(Auditor, "check", func(ctx runtime.Context, _ *auditor, in Transfer) (int, error) {
		return AccountBalance.Call(ctx, ctx.Actors(), "acc", in.FailIn)
	})
}

func stateOf(t *testing.T, e *env, key string) (int, bool) {
	t.Helper()
	var v int
	var found bool
	err := runtime.Execute(context.Background(), e.rt, Account, "acc", func(ctx runtime.Context, _ *account) error {
		var err error
		v, found, err = runtime.GetState[int](ctx.State(), key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, found
}

func TestReentrantCallInterleaves(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Account, Auditor})
	ctx := context.Background()
	for _, inv := range []runtime.Invoker{e.rt, bytesOnly{e.rt}} {
		got, err := AccountTransfer.Call(ctx, inv, "acc", Transfer{Amount: 7})
		if err != nil || got != 7 {
			t.Fatalf("transfer: %d, %v; want the re-entering call to see the pending 7", got, err)
		}
	}
	e.restart([]runtime.Definition{Account, Auditor})
	for key, want := range map[string]int{"pending": 7, "audited": 7, "after": 7} {
		if v, _ := stateOf(t, e, key); v != want {
			t.Errorf("%s = %d after a restart, want %d", key, v, want)
		}
	}

	// The outer turn fails after the re-entry: what the re-entry
	// committed (its own change and the outer's change before the call)
	// stays; the outer's later change is discarded.
	if _, err := AccountTransfer.Call(ctx, e.rt, "acc", Transfer{Amount: 9, Fail: true}); err == nil {
		t.Fatal("the failing transfer succeeded")
	}
	e.restart([]runtime.Definition{Account, Auditor})
	for key, want := range map[string]int{"pending": 9, "audited": 9, "after": 7} {
		if v, _ := stateOf(t, e, key); v != want {
			t.Errorf("after a failed outer turn: %s = %d, want %d", key, v, want)
		}
	}

	// The re-entering call fails: only its own changes are discarded,
	// and the outer turn (which returns the error) commits nothing.
	if _, err := AccountTransfer.Call(ctx, e.rt, "acc", Transfer{Amount: 11, FailIn: true}); err == nil || !strings.Contains(err.Error(), "balance refused") {
		t.Fatalf("a failing re-entry: %v", err)
	}
	if v, _ := stateOf(t, e, "pending"); v != 9 {
		t.Errorf("pending = %d after a failed re-entry, want 9 (nothing committed)", v)
	}
}

func TestNonReentrantCycleStillFails(t *testing.T) {
	plain := runtime.NewType("plain", func(string) *account { return &account{} })
	var call runtime.Method[int, int]
	call = runtime.AddMethod(plain, "self", func(ctx runtime.Context, _ *account, n int) (int, error) {
		if n == 0 {
			return 0, nil
		}
		return call.Call(ctx, ctx.Actors(), ctx.ActorID(), n-1)
	})
	e := newEnv(t, []runtime.Definition{plain})
	if _, err := call.Call(context.Background(), e.rt, "p", 1); !errors.Is(err, runtime.ErrCallCycle) {
		t.Errorf("a call to itself: %v", err)
	}
	// The same type made reentrant by configuration.
	e2 := newEnv(t, nil, func(o *runtime.Options) {
		o.Pool = func(string) runtime.PoolConfig { return runtime.PoolConfig{MaxSize: 10, Reentrant: true} }
	})
	if err := e2.rt.Register(plain); err != nil {
		t.Fatal(err)
	}
	if n, err := call.Call(context.Background(), e2.rt, "p", 3); err != nil || n != 0 {
		t.Errorf("reentrant by configuration: %d, %v", n, err)
	}
}

// leaver's OnDeactivate calls an echo actor that calls back into it: a
// cycle through an actor being deactivated.
type leaver struct{}

var (
	leaverSaw = make(chan error, 4)
	Leaver    = runtime.NewType("leaver", func(string) *leaver { return &leaver{} })
	LeaverHi  = runtime.AddMethod0(Leaver, "hi", func(runtime.Context, *leaver) (string, error) { return "hi", nil })
	Echo      = runtime.NewType("echo", func(string) *auditor { return &auditor{} })
	EchoBack  = runtime.AddMethod(Echo, "back", func(ctx runtime.Context, _ *auditor, id string) (string, error) {
		return LeaverHi.Call(ctx, ctx.Actors(), id)
	})
)

func (*leaver) OnDeactivate(ctx runtime.Context) error {
	_, err := EchoBack.Call(ctx, ctx.Actors(), "e", ctx.ActorID())
	leaverSaw <- err
	return nil
}

func TestCycleThroughADeactivatingActor(t *testing.T) {
	for _, reentrant := range []bool{false, true} {
		e := newEnv(t, []runtime.Definition{Leaver, Echo}, func(o *runtime.Options) {
			o.Pool = func(typ string) runtime.PoolConfig {
				return runtime.PoolConfig{MaxSize: 10, Reentrant: reentrant && typ == "leaver"}
			}
		})
		ctx := context.Background()
		if _, err := LeaverHi.Call(ctx, e.rt, "l"); err != nil {
			t.Fatal(err)
		}
		if err := e.rt.Deactivate(ctx, "leaver", "l"); err != nil {
			t.Fatal(err)
		}
		err := <-leaverSaw
		want := runtime.ErrCallCycle
		if reentrant {
			want = runtime.ErrUnavailable
		}
		if !errors.Is(err, want) {
			t.Errorf("reentrant=%v: the call back into the deactivating actor: %v, want %v", reentrant, err, want)
		}
	}
}
