package node_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

// The contract of the "stock" actor type: its name and its methods' types,
// without their bodies. It would live in a package of its own that callers
// import, so that a client calls stock actors without linking their
// implementation.
var (
	Stock   = runtime.NewContract("stock")
	Reserve = runtime.Declare[int, int](Stock, "reserve") // quantity -> what is left
	Level   = runtime.Declare0[int](Stock, "level")       // no argument
)

// The implementation, bound to the contract: Register refuses it if a
// declared method is missing, and the compiler checks the types.
type stock struct{}

var StockType = runtime.Implement(Stock, func(id string) *stock { return &stock{} })

var (
	_ = runtime.Bind(StockType, Reserve, func(ctx runtime.Context, _ *stock, qty int) (int, error) {
		left, err := level(ctx)
		if err != nil {
			return 0, err
		}
		if qty > left {
			return 0, fmt.Errorf("%w: %d asked, %d left", runtime.ErrInvalidArgument, qty, left)
		}
		// Durable state: written to the actor's journal before the
		// caller hears "ok".
		return left - qty, runtime.SetState(ctx.State(), "left", left-qty)
	})
	_ = runtime.Bind0(StockType, Level, func(ctx runtime.Context, _ *stock) (int, error) { return level(ctx) })
)

func level(ctx runtime.Context) (int, error) {
	left, found, err := runtime.GetState[int](ctx.State(), "left")
	if !found {
		left = 100
	}
	return left, err
}

// Item is what an order asks for.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// An order reserves its item from a stock actor: an actor calling an
// actor, wherever in the cluster it lives. The call carries the order's
// correlation id, trace and deadline.
type Order struct{}

var OrderType = runtime.NewType("order", func(id string) *Order { return &Order{} })

var Place = runtime.AddMethod(OrderType, "place",
	func(ctx runtime.Context, _ *Order, item Item) (string, error) {
		left, err := Reserve.Call(ctx, ctx.Actors(), item.SKU, item.Qty)
		if err != nil {
			return "", err // the order's turn fails, and records nothing
		}
		if err := runtime.SetState(ctx.State(), "item", item); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %d x %s reserved, %d left", ctx.ActorID(), item.Qty, item.SKU, left), nil
	})

func Example() {
	cfg := config.Default()
	cfg.Journal.Backend = config.JournalMemory // a file under node.dataDir by default
	cfg.Node.HTTPPort = 0                      // any free port

	n, err := node.New(node.Options{
		Config: cfg,
		Types:  []runtime.Definition{StockType, OrderType},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	defer n.Shutdown(ctx)

	for i, qty := range []int{3, 5, 500} {
		msg, err := Place.Call(ctx, n, fmt.Sprintf("order-%d", i+1), Item{SKU: "sku-7", Qty: qty})
		fmt.Println(msg, err)
	}
	left, _ := Level.Call(ctx, n, "sku-7")
	fmt.Println("sku-7:", left, "left")
	// Output:
	// order-1: 3 x sku-7 reserved, 97 left <nil>
	// order-2: 5 x sku-7 reserved, 92 left <nil>
	//  order/order-3.place: stock/sku-7.reserve: loom: invalid argument: 500 asked, 92 left
	// sku-7: 92 left
}
