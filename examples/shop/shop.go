// Package shop implements the "stock" actor type of package shopapi's
// contract, for the nodes that host it.
package shop

import (
	"fmt"

	"github.com/loom-mesh/loom/examples/shop/shopapi"
	"github.com/loom-mesh/loom/runtime"
)

type stock struct{}

// StockType is the implementation to register on a node.
var StockType = runtime.Implement(shopapi.Stock, func(id string) *stock { return &stock{} })

var (
	_ = runtime.Bind(StockType, shopapi.Reserve, func(ctx runtime.Context, _ *stock, qty int) (int, error) {
		left, err := level(ctx)
		if err != nil {
			return 0, err
		}
		if qty <= 0 || qty > left {
			return 0, fmt.Errorf("%w: %d asked, %d left", runtime.ErrInvalidArgument, qty, left)
		}
		return left - qty, runtime.SetState(ctx.State(), "left", left-qty)
	})
	_ = runtime.Bind0(StockType, shopapi.Level, func(ctx runtime.Context, _ *stock) (int, error) { return level(ctx) })
)

func level(ctx runtime.Context) (int, error) {
	left, found, err := runtime.GetState[int](ctx.State(), "left")
	if !found {
		left = shopapi.Initial
	}
	return left, err
}
