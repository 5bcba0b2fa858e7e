// Package tickets is a small Loom application, and its test
// (tickets_test.go) is a test of the kind an application writes with
// package loomtest: a cluster in the test process, a node killed in the
// middle of the traffic, and a check that nothing acknowledged was lost.
//
// A venue sells seats; an order books seats at a venue, once: an actor
// calling an actor. Book is safe to retry whatever happened before (a
// crash of either actor's node, a lost reply): the order remembers its
// booking, and its call to the venue carries the order's id as its
// idempotency key, so the venue sells an order's seats at most once even
// when the order's turn runs again.
package tickets

import (
	"fmt"

	"github.com/loom-mesh/loom/runtime"
)

// Capacity is the number of seats of every venue.
const Capacity = 1000

type venue struct{}

// VenueType is the venue actor type.
var VenueType = runtime.NewType("venue", func(string) *venue { return &venue{} })

// Sell sells n seats and returns how many are left.
var Sell = runtime.AddMethod(VenueType, "sell", func(ctx runtime.Context, _ *venue, n int) (int, error) {
	sold, _, err := runtime.GetState[int](ctx.State(), "sold")
	if err != nil {
		return 0, err
	}
	if n <= 0 || sold+n > Capacity {
		return 0, fmt.Errorf("%w: %d seats asked, %d left", runtime.ErrInvalidArgument, n, Capacity-sold)
	}
	return Capacity - sold - n, runtime.SetState(ctx.State(), "sold", sold+n)
})

// Sold is how many seats the venue has sold.
var Sold = runtime.AddMethod0(VenueType, "sold", func(ctx runtime.Context, _ *venue) (int, error) {
	sold, _, err := runtime.GetState[int](ctx.State(), "sold")
	return sold, err
})

type order struct{}

// OrderType is the order actor type.
var OrderType = runtime.NewType("order", func(string) *order { return &order{} })

// Booking is an order's seats at a venue.
type Booking struct {
	Venue string `json:"venue"`
	Seats int    `json:"seats"`
}

// Book books the seats for the order, once: booked already, it returns
// the booking it has.
var Book = runtime.AddMethod(OrderType, "book", func(ctx runtime.Context, _ *order, b Booking) (Booking, error) {
	prev, found, err := runtime.GetState[Booking](ctx.State(), "booking")
	if err != nil || found {
		return prev, err
	}
	key := runtime.WithIdempotencyKey(ctx, "order/"+ctx.ActorID())
	if _, err := Sell.Call(key, ctx.Actors(), b.Venue, b.Seats); err != nil {
		return Booking{}, err // the order records nothing
	}
	return b, runtime.SetState(ctx.State(), "booking", b)
})

// Get returns the order's booking (zero if it has none).
var Get = runtime.AddMethod0(OrderType, "get", func(ctx runtime.Context, _ *order) (Booking, error) {
	b, _, err := runtime.GetState[Booking](ctx.State(), "booking")
	return b, err
})
