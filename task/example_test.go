package task_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/loom-mesh/loom/task"
)

type Order struct {
	ID     string
	Amount int
}

type Receipt struct {
	Order   string
	Charged int
}

var declines = 1 // the payment service declines the first attempt

// Charge is a task: a name, a typed function and its options.
var Charge = task.New("charge", func(ctx context.Context, o Order) (Receipt, error) {
	if o.Amount <= 0 {
		return Receipt{}, task.Permanent(errors.New("nothing to charge")) // never retried
	}
	if declines > 0 {
		declines--
		return Receipt{}, errors.New("payment service busy") // retried
	}
	return Receipt{Order: o.ID, Charged: o.Amount}, nil
},
	task.Timeout(5*time.Second),
	task.Retries(3),
	task.WithBackoff(task.Backoff{Initial: time.Millisecond}),
	task.MaxConcurrent(16),
)

func ExampleNew() {
	res := Charge.Run(context.Background(), Order{ID: "o-1", Amount: 42})
	fmt.Println(res.Success, res.Value.Charged, res.Attempts)

	res = Charge.Run(context.Background(), Order{ID: "o-2"})
	fmt.Println(res.Success, res.Err, res.Attempts)
	// Output:
	// true 42 2
	// false nothing to charge 1
}

func ExampleThen() {
	parse := task.New("parse", func(_ context.Context, s string) ([]string, error) {
		if s == "" {
			return nil, errors.New("empty")
		}
		return strings.Fields(s), nil
	})
	count := task.New("count", func(_ context.Context, words []string) (int, error) { return len(words), nil })
	wordCount := task.Then("word-count", parse, count)

	r := wordCount.Run(context.Background(), "to be or not to be")
	fmt.Println(r.Value, r.Success)

	r = wordCount.Run(context.Background(), "")
	fmt.Println(r.Success, r.FailedStep, r.Err)
	// Output:
	// 6 true
	// false parse step 0 (parse): empty
}

func ExampleFirstSuccess() {
	mirror := func(name string, ok bool) *task.Task[string, string] {
		return task.New(name, func(_ context.Context, path string) (string, error) {
			if !ok {
				return "", errors.New(name + " is down")
			}
			return name + path, nil
		})
	}
	fetch := task.FirstSuccess("fetch", []*task.Task[string, string]{mirror("https://a.example", false), mirror("https://b.example", true)})
	r := fetch.Run(context.Background(), "/index.html")
	fmt.Println(r.Value)
	// Output:
	// https://b.example/index.html
}
