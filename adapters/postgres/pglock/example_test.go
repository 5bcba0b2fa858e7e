package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pglock"
	"github.com/loom-mesh/loom/lock"
)

// A node opens one session, renews it (lock.Keeper does this), and takes
// the lock of each actor it runs; the token goes with every journal write.
func Example() {
	ctx := context.Background()
	c, err := pglock.New(ctx, pglock.Options{Postgres: postgres.Options{
		Host: "db.internal", User: "loom", Password: "secret", Database: "shop", Schema: "shop",
	}})
	if err != nil {
		log.Fatal(err) // wraps pglock.ErrUnavailable if PostgreSQL cannot be reached
	}
	defer c.Close()
	s, err := c.CreateSession(ctx, "node-1", 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.Acquire(ctx, s, "cart/42")
	var held *lock.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Printf("cart/42 runs on %s\n", held.Holder)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("cart/42 is ours, token %d\n", tok)
	}
}
