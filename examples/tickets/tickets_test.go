package tickets_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/examples/tickets"
	"github.com/loom-mesh/loom/loomtest"
	"github.com/loom-mesh/loom/runtime"
)

// The node that hosts the venue dies while orders are being booked: once
// the cluster has settled, every booking that was acknowledged is there,
// and the venue has sold exactly their seats, no more.
func TestBookingsSurviveTheVenuesNodeDying(t *testing.T) {
	c := loomtest.Start(t, loomtest.Options{
		Nodes:  3,
		Types:  []runtime.Definition{tickets.VenueType, tickets.OrderType},
		Client: client.Options{IdempotentRetries: true},
	})
	ctx := context.Background()
	const total = 40
	booked, failed := bookOrders(ctx, c, total) // one after the other, each until it is acknowledged
	for range 11 {
		<-booked // a few orders in, then the crash while more come
	}
	owner, ok := c.ActiveOn("venue", "arena")
	if !ok {
		t.Fatal("the venue is active nowhere")
	}
	c.Kill(owner) // a crash: no hand-off, its lock still held

	// Every order is acknowledged, the last ones through the failover.
	for err := range failed {
		t.Error(err)
	}
	c.WaitSettled() // the others see it dead, its session has lapsed

	// Nothing acknowledged was lost, nothing was sold twice.
	seats := 0
	for i := range total {
		got, err := tickets.Get.Call(ctx, c.Client(), order(i))
		if err != nil || got != booking(i) {
			t.Fatalf("%s = %+v, %v; want %+v", order(i), got, err, booking(i))
		}
		seats += got.Seats
	}
	sold, err := tickets.Sold.Call(ctx, c.Client(), "arena") // from the journal, on another node
	if err != nil || sold != seats {
		t.Fatalf("the venue sold %d seats, %v; the orders hold %d", sold, err, seats)
	}
	if moved, _ := c.ActiveOn("venue", "arena"); moved == owner {
		t.Fatalf("the venue is on the node that was killed")
	}
}

// order is the id of order i, and booking its booking.
func order(i int) string { return fmt.Sprintf("o%d", i) }

func booking(i int) tickets.Booking { return tickets.Booking{Venue: "arena", Seats: 1 + i%4} }

// bookOrders books orders 0 to n-1 one after the other, in the
// background. booked receives the number of each order acknowledged,
// failed the error of each one that could not be; both are closed once
// every order is done.
func bookOrders(ctx context.Context, c *loomtest.Cluster, n int) (booked <-chan int, failed <-chan error) {
	acked, errs := make(chan int, n), make(chan error, n)
	go func() {
		defer close(acked)
		defer close(errs)
		for i := range n {
			if err := book(ctx, c, i); err != nil {
				errs <- err
				continue
			}
			acked <- i
		}
	}()
	return acked, errs
}

// book books order i, trying again until it is acknowledged: during the
// failover the venue is unavailable for a few seconds, and Book may be
// tried again whatever happened (see package tickets).
func book(ctx context.Context, c *loomtest.Cluster, i int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := tickets.Book.Call(cctx, c.Client(), order(i), booking(i))
		cancel()
		if err == nil {
			if got != booking(i) {
				return fmt.Errorf("%s booked %+v, want %+v", order(i), got, booking(i))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", order(i), err)
		}
		time.Sleep(20 * time.Millisecond) // back off before trying again
	}
}
