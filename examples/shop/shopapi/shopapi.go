// Package shopapi is the contract of the "stock" actor type: its name and
// its methods' argument and result types, without their bodies. A client
// imports it (and package client) to call stock actors on a running
// cluster without linking their implementation, which lives in package
// shop, on the nodes.
package shopapi

import "github.com/loom-mesh/loom/runtime"

var (
	// Stock is the "stock" actor type: one per SKU, holding what is left.
	Stock = runtime.NewContract("stock")
	// Reserve takes a quantity and returns what is left; asking for more
	// than is left fails with runtime.ErrInvalidArgument.
	Reserve = runtime.Declare[int, int](Stock, "reserve")
	// Level returns what is left.
	Level = runtime.Declare0[int](Stock, "level")
)

// Initial is what a stock actor holds before its first reservation.
const Initial = 100
