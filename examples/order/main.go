// Command order is a complete Loom program on one node: a "stock" actor
// type (its contract and its implementation) and an "order" actor type
// whose method calls a stock actor. It places one order and prints the
// result:
//
//	go run ./examples/order    # order-1: 3 x sku-7 reserved, 97 left <nil>
//
// The node's configuration is the file $LOOM_CONFIG_PATH names, else the
// defaults (HTTP on 127.0.0.1:7420, data in ./loom-data). State is durable:
// run it again on the same data dir and the stock has less left.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

// The contract: a type's name and methods, without their bodies. Callers import it alone.
var (
	Stock   = runtime.NewContract("stock")
	Reserve = runtime.Declare[int, int](Stock, "reserve") // quantity -> what is left
	Level   = runtime.Declare0[int](Stock, "level")       // no argument
)

// The implementation, bound to the contract (Register refuses a missing or mistyped method).
type stock struct{}

var StockType = runtime.Implement(Stock, func(id string) *stock { return &stock{} })

var _ = runtime.Bind(StockType, Reserve, func(ctx runtime.Context, _ *stock, qty int) (int, error) {
	left, err := level(ctx) // runtime.GetState[int](ctx.State(), "left"), 100 at first
	if err != nil {
		return 0, err
	}
	if qty > left {
		return 0, fmt.Errorf("%w: %d asked, %d left", runtime.ErrInvalidArgument, qty, left)
	}
	return left - qty, runtime.SetState(ctx.State(), "left", left-qty) // journaled before "ok"
})

var _ = runtime.Bind0(StockType, Level, func(ctx runtime.Context, _ *stock) (int, error) { return level(ctx) })

// level is what the stock has left: its durable state, 100 before the
// first reservation.
func level(ctx runtime.Context) (int, error) {
	left, found, err := runtime.GetState[int](ctx.State(), "left")
	if !found {
		left = 100
	}
	return left, err
}

// An order reserves its item from a stock actor: an actor calling an actor.
type Order struct{}

// Item is what an order asks for.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

var OrderType = runtime.NewType("order", func(id string) *Order { return &Order{} })

var Place = runtime.AddMethod(OrderType, "place",
	func(ctx runtime.Context, _ *Order, item Item) (string, error) {
		left, err := Reserve.Call(ctx, ctx.Actors(), item.SKU, item.Qty)
		if err != nil {
			return "", err // the order's turn fails and records nothing
		}
		if err := runtime.SetState(ctx.State(), "item", item); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %d x %s reserved, %d left", ctx.ActorID(), item.Qty, item.SKU, left), nil
	})

func main() {
	cfg, err := config.Load(config.Path("")) // the file $LOOM_CONFIG_PATH names, else the defaults
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.New(node.Options{Config: cfg, Types: []runtime.Definition{StockType, OrderType}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer n.Shutdown(ctx)

	msg, err := Place.Call(ctx, n, "order-1", Item{SKU: "sku-7", Qty: 3}) // typed on both sides
	fmt.Println(msg, err)                                                 // order-1: 3 x sku-7 reserved, 97 left <nil>
}
