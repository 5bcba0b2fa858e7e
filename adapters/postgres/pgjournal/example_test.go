package pgjournal_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/journal"
)

// The owner of an actor appends each turn's entries under its fencing
// token, after the tail it knows; a deposed owner is fenced.
func Example() {
	ctx := context.Background()
	o := pgjournal.DefaultOptions()
	o.Postgres = postgres.Options{Host: "db.internal", User: "loom", Password: "secret", Database: "shop", Schema: "shop"}
	j, err := pgjournal.Open(ctx, o)
	if err != nil {
		log.Fatal(err) // wraps pgjournal.ErrUnavailable if PostgreSQL cannot be reached
	}
	defer j.Close()
	const token = 7 // from the coordinator's Acquire
	tail, err := j.Append(ctx, "cart/42", token, 0, []journal.Entry{{Kind: journal.KindInvocation, Method: "Add", Payload: []byte(`{"sku":"x"}`)}})
	switch {
	case errors.Is(err, journal.ErrFenced):
		fmt.Println("another node owns cart/42 now")
	case errors.Is(err, journal.ErrUnknownOutcome):
		fmt.Println("may have been written: read the tail")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("tail", tail)
	}
}
