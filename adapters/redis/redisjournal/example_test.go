package redisjournal_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/journal"
)

// An actor's turn appended under the fencing token its owner holds, and
// what each failure means. (Compiled, not run: it needs a redis-server.)
func ExampleOpen() {
	ctx := context.Background()
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: "127.0.0.1:6379", KeyPrefix: "loom:"}
	j, err := redisjournal.Open(ctx, o)
	if err != nil {
		log.Fatal(err) // wraps redisjournal.ErrUnavailable if the server cannot be reached
	}
	defer j.Close()

	const token = 7 // from the coordinator's lock grant
	tail, err := j.Append(ctx, "account/42", token, 0, []journal.Entry{
		{Kind: journal.KindInvocation, Method: "Deposit", Payload: []byte(`{"amount":10}`)},
	})
	switch {
	case err == nil:
		fmt.Println("durable up to seq", tail)
	case errors.Is(err, journal.ErrFenced):
		fmt.Println("another node owns the actor now: stop")
	case errors.Is(err, journal.ErrConflict):
		fmt.Println("someone else appended: reload and retry")
	case errors.Is(err, redisjournal.ErrUnavailable):
		fmt.Println("not applied; retry later")
	case errors.Is(err, redisjournal.ErrUnknownOutcome):
		fmt.Println("may have been applied: check Tail before retrying")
	}
}
