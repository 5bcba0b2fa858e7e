package tickets_test

import (
	"context"
	"fmt"
	"sync"
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
	booking := func(i int) tickets.Booking { return tickets.Booking{Venue: "arena", Seats: 1 + i%4} }

	// book books order i, trying again until it is acknowledged: during
	// the failover the venue is unavailable for a few seconds, and Book
	// may be tried again whatever happened (see package tickets).
	book := func(i int) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			got, err := tickets.Book.Call(cctx, c.Client(), fmt.Sprintf("o%d", i), booking(i))
			cancel()
			if err == nil {
				if got != booking(i) {
					return fmt.Errorf("o%d booked %+v, want %+v", i, got, booking(i))
				}
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("o%d: %w", i, err)
			}
			time.Sleep(20 * time.Millisecond) // back off before trying again
		}
	}

	const before, total = 10, 40
	for i := range before {
		if err := book(i); err != nil {
			t.Fatal(err)
		}
	}

	// Orders keep coming while the venue's node dies.
	var wg sync.WaitGroup
	errs := make(chan error, total)
	booked := make(chan int, total)
	wg.Go(func() {
		for i := before; i < total; i++ {
			if err := book(i); err != nil {
				errs <- err
				continue
			}
			booked <- i
		}
	})
	<-booked // one more order in, then the crash
	owner, ok := c.ActiveOn("venue", "arena")
	if !ok {
		t.Fatal("the venue is active nowhere")
	}
	c.Kill(owner)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.WaitSettled()

	// Nothing acknowledged was lost, nothing was sold twice.
	seats := 0
	for i := range total {
		got, err := tickets.Get.Call(ctx, c.Client(), fmt.Sprintf("o%d", i))
		if err != nil || got != booking(i) {
			t.Fatalf("o%d = %+v, %v; want %+v", i, got, err, booking(i))
		}
		seats += got.Seats
	}
	sold, err := tickets.Sold.Call(ctx, c.Client(), "arena")
	if err != nil || sold != seats {
		t.Fatalf("the venue sold %d seats, %v; the orders hold %d", sold, err, seats)
	}
	if moved, _ := c.ActiveOn("venue", "arena"); moved == owner {
		t.Fatalf("the venue is on the node that was killed")
	}
}
