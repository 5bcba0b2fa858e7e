package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/runtime"
)

// ---- a contract, declared apart from its implementation ----

// What a client package would hold: names and types, no bodies.
var (
	stockAPI    = runtime.NewContract("stock")
	stockTake   = runtime.Declare[int, int](stockAPI, "take")
	stockLevel  = runtime.Declare0[int](stockAPI, "level")
	stockCallMe = runtime.Declare[runtime.Ref, string](stockAPI, "call-back")
	orderAPI    = runtime.NewContract("order")
	orderPlace  = runtime.Declare[int, orderResult](orderAPI, "place")
	orderPing   = runtime.Declare0[string](orderAPI, "ping")
)

type orderResult struct {
	Left        int      `json:"left"`
	Correlation string   `json:"correlation"`
	StockChain  []string `json:"stockChain"`
}

type stock struct{}

type order struct{}

// The server's side: bodies bound to the contract.
var (
	stockImpl = runtime.Implement(stockAPI, func(string) *stock { return &stock{} })
	_         = runtime.Bind(stockImpl, stockTake, func(ctx runtime.Context, _ *stock, n int) (int, error) {
		left, found, err := runtime.GetState[int](ctx.State(), "left")
		if err != nil {
			return 0, err
		}
		if !found {
			left = 10
		}
		if n > left {
			return 0, fmt.Errorf("%w: only %d left", runtime.ErrInvalidArgument, left)
		}
		left -= n
		return left, runtime.SetState(ctx.State(), "left", left)
	})
	_ = runtime.Bind0(stockImpl, stockLevel, func(ctx runtime.Context, _ *stock) (int, error) {
		left, found, err := runtime.GetState[int](ctx.State(), "left")
		if !found {
			left = 10
		}
		return left, err
	})
	// call-back calls the given actor's ping: the cycle test's B.
	_ = runtime.Bind(stockImpl, stockCallMe, func(ctx runtime.Context, _ *stock, back runtime.Ref) (string, error) {
		return orderPing.Call(ctx, ctx.Actors(), back.ID)
	})

	orderImpl = runtime.Implement(orderAPI, func(string) *order { return &order{} })
	_         = runtime.Bind(orderImpl, orderPlace, func(ctx runtime.Context, _ *order, n int) (orderResult, error) {
		if n < 0 {
			// A → B → A: stock calls this order back.
			_, err := stockCallMe.Call(ctx, ctx.Actors(), "s1", ctx.Self())
			return orderResult{}, err
		}
		left, err := stockTake.Call(ctx, ctx.Actors(), "s1", n)
		if err != nil {
			return orderResult{}, err
		}
		if err := runtime.SetState(ctx.State(), "placed", n); err != nil {
			return orderResult{}, err
		}
		return orderResult{Left: left, Correlation: ctx.CorrelationID()}, nil
	})
	_ = runtime.Bind0(orderImpl, orderPing, func(ctx runtime.Context, _ *order) (string, error) {
		return "pong from " + ctx.ActorID(), nil
	})
)

func TestActorCallsActor(t *testing.T) {
	e := newEnv(t, []runtime.Definition{stockImpl, orderImpl})
	for _, inv := range []struct {
		name string
		inv  runtime.Invoker
	}{{"local", e.rt}, {"encoded", bytesOnly{e.rt}}} {
		t.Run(inv.name, func(t *testing.T) {
			ctx := runtime.WithCorrelationID(context.Background(), "corr-"+inv.name)
			before, err := stockLevel.Call(ctx, inv.inv, "s1")
			if err != nil {
				t.Fatal(err)
			}
			res, err := orderPlace.Call(ctx, inv.inv, "o-"+inv.name, 3)
			if err != nil {
				t.Fatal(err)
			}
			if res.Left != before-3 || res.Correlation != "corr-"+inv.name {
				t.Errorf("place = %+v, want left %d and the caller's correlation id", res, before-3)
			}
			after, err := stockLevel.Call(ctx, inv.inv, "s1")
			if err != nil || after != before-3 {
				t.Errorf("stock level after = %d, %v; want %d", after, err, before-3)
			}
		})
	}
	// A failing child call fails the parent's turn, which commits nothing.
	_, err := orderPlace.Call(context.Background(), e.rt, "o-big", 100)
	if !errors.Is(err, runtime.ErrInvalidArgument) {
		t.Fatalf("place 100: %v, want the stock's invalid-argument error", err)
	}
	e.restart([]runtime.Definition{stockImpl, orderImpl})
	if left, err := stockLevel.Call(context.Background(), e.rt, "s1"); err != nil || left != 4 {
		t.Errorf("stock level after restart = %d, %v; want 4 (two orders of 3)", left, err)
	}
}

func TestCallCycleFailsAtOnce(t *testing.T) {
	e := newEnv(t, []runtime.Definition{stockImpl, orderImpl})
	for _, inv := range []struct {
		name string
		inv  runtime.Invoker
	}{{"local", e.rt}, {"encoded", bytesOnly{e.rt}}} {
		t.Run(inv.name, func(t *testing.T) {
			// Without the cycle check this waits for the deadline: order/1
			// is in its turn, waiting for stock/s1, which waits for
			// order/1's mailbox.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := orderPlace.Call(ctx, inv.inv, "1", -1)
			if !errors.Is(err, runtime.ErrCallCycle) {
				t.Fatalf("A → B → A: %v, want ErrCallCycle", err)
			}
			if !strings.Contains(err.Error(), "order/1 → stock/s1 → order/1") {
				t.Errorf("error %q does not name the cycle order/1 → stock/s1 → order/1", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("the cycle took %v to fail", took)
			}
		})
	}
}

// chainer calls the next id (up to its argument) and reports the chain
// the last one sees.
type chainer struct{}

var (
	Chainer   = runtime.NewType("chainer", func(string) *chainer { return &chainer{} })
	ChainDown runtime.Method[int, []string]
)

func init() {
	ChainDown = runtime.AddMethod(Chainer, "down", func(ctx runtime.Context, _ *chainer, n int) ([]string, error) {
		var i int
		_, _ = fmt.Sscanf(ctx.ActorID(), "c%d", &i)
		if i >= n {
			return runtime.CallChain(ctx), nil
		}
		return ChainDown.Call(ctx, ctx.Actors(), fmt.Sprintf("c%d", i+1), n)
	})
}

func TestCallChainDepthLimit(t *testing.T) {
	e := newEnv(t, []runtime.Definition{Chainer}, func(o *runtime.Options) { o.MaxCallDepth = 4 })
	chain, err := ChainDown.Call(context.Background(), e.rt, "c1", 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(chain, ","); got != "chainer/c1,chainer/c2,chainer/c3,chainer/c4" {
		t.Errorf("chain seen by the fourth actor: %s", got)
	}
	_, err = ChainDown.Call(context.Background(), e.rt, "c1", 5)
	if !errors.Is(err, runtime.ErrCallChainTooDeep) || !strings.Contains(err.Error(), "chainer/c5") {
		t.Errorf("a fifth actor: %v, want ErrCallChainTooDeep naming chainer/c5", err)
	}
	if _, err := runtime.New(runtime.Options{Journal: e.j, Coordinator: e.coord, Session: e.session, MaxCallDepth: -1}); err == nil || !strings.Contains(err.Error(), "MaxCallDepth") {
		t.Errorf("a negative MaxCallDepth: %v", err)
	}
}

func TestChainFromTheWire(t *testing.T) {
	ctx, err := runtime.WithCallChain(context.Background(), []string{"order/1", "stock/s1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.CallChain(ctx); strings.Join(got, " ") != "order/1 stock/s1" {
		t.Errorf("CallChain = %v", got)
	}
	e := newEnv(t, []runtime.Definition{stockImpl, orderImpl})
	if _, err := orderPing.Call(ctx, e.rt, "1"); !errors.Is(err, runtime.ErrCallCycle) {
		t.Errorf("a call into order/1 from a chain that holds it: %v", err)
	}
	if _, err := orderPing.Call(ctx, e.rt, "2"); err != nil {
		t.Errorf("a call into order/2 from that chain: %v", err)
	}
	if _, err := runtime.WithCallChain(context.Background(), []string{"nope"}); !errors.Is(err, runtime.ErrBadPayload) {
		t.Errorf("a malformed chain entry: %v", err)
	}
}

func TestContractMismatchesFailRegistration(t *testing.T) {
	c := runtime.NewContract("shop")
	buy := runtime.Declare[string, int](c, "buy")
	runtime.Declare0[int](c, "count")

	type shop struct{}
	mk := func() *runtime.Type[shop] { return runtime.Implement(c, func(string) *shop { return &shop{} }) }
	buyBody := func(runtime.Context, *shop, string) (int, error) { return 1, nil }

	// count is declared but not bound.
	missing := mk()
	runtime.Bind(missing, buy, buyBody)
	// A method of the same name from another contract, with other types.
	other := runtime.NewContract("shop")
	buyInts := runtime.Declare[int, int](other, "buy")
	otherCount := runtime.Declare0[int](other, "count")
	wrongTypes := mk()
	runtime.Bind(wrongTypes, buyInts, func(runtime.Context, *shop, int) (int, error) { return 0, nil })
	runtime.Bind0(wrongTypes, otherCount, func(runtime.Context, *shop) (int, error) { return 0, nil })
	// A method of another type's contract.
	foreign := mk()
	runtime.Bind(foreign, buy, buyBody)
	runtime.Bind0(foreign, stockLevel, func(runtime.Context, *shop) (int, error) { return 0, nil })

	for _, c := range []struct {
		name string
		def  runtime.Definition
		want string
	}{
		{"missing", missing, `method count not bound`},
		{"wrong types", wrongTypes, `method "buy" is declared (string) int but bound as (int) int`},
		{"foreign", foreign, `method "level" belongs to contract "stock"`},
	} {
		e := newEnv(t, nil)
		err := e.rt.Register(c.def)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Register = %v, want it to say %q", c.name, err, c.want)
		}
	}
	dup := runtime.NewContract("dup")
	runtime.Declare0[int](dup, "x")
	runtime.Declare0[string](dup, "x")
	type d struct{}
	impl := runtime.Implement(dup, func(string) *d { return &d{} })
	if err := newEnv(t, nil).rt.Register(impl); err == nil || !strings.Contains(err.Error(), `method "x" declared twice`) {
		t.Errorf("a contract declaring a method twice: %v", err)
	}
}

func TestNoInputMethods(t *testing.T) {
	e := newEnv(t, []runtime.Definition{stockImpl, orderImpl})
	for _, payload := range []string{"", "{}", "null"} {
		out, err := e.rt.Invoke(context.Background(), "stock", "s9", "level", []byte(payload))
		if err != nil || string(out) != "10" {
			t.Errorf("level with payload %q: %s, %v", payload, out, err)
		}
	}
	if _, err := e.rt.Invoke(context.Background(), "stock", "s9", "level", []byte(`"x"`)); !errors.Is(err, runtime.ErrBadPayload) {
		t.Errorf("level with an argument: %v, want ErrBadPayload", err)
	}
	if got := strings.Join(stockAPI.Methods(), ","); got != "call-back,level,take" {
		t.Errorf("contract methods: %s", got)
	}
}

func TestRef(t *testing.T) {
	r := stockAPI.Ref("a/b")
	if r.String() != "stock/a/b" {
		t.Errorf("String = %q", r)
	}
	back, err := runtime.ParseRef(r.String())
	if err != nil || back != r {
		t.Errorf("ParseRef(%q) = %v, %v", r, back, err)
	}
	b, _ := json.Marshal(r)
	if string(b) != `{"type":"stock","id":"a/b"}` {
		t.Errorf("JSON: %s", b)
	}
	for _, bad := range []string{"", "stock", "/x", "stock/"} {
		if _, err := runtime.ParseRef(bad); !errors.Is(err, runtime.ErrInvalidArgument) {
			t.Errorf("ParseRef(%q): %v", bad, err)
		}
	}
	e := newEnv(t, []runtime.Definition{stockImpl, orderImpl})
	if _, err := stockTake.CallRef(context.Background(), e.rt, orderAPI.Ref("1"), 1); !errors.Is(err, runtime.ErrInvalidArgument) {
		t.Errorf("take on an order reference: %v", err)
	}
	if left, err := stockTake.CallRef(context.Background(), e.rt, stockAPI.Ref("r1"), 1); err != nil || left != 9 {
		t.Errorf("take on a stock reference: %d, %v", left, err)
	}
}
