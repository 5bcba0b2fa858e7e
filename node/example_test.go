package node_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/runtime"
)

// The greeter of the original Loom docs, in Go: an actor type, a typed
// method, a node embedded in the application, and a call.
type Greeter struct{}

var GreeterType = runtime.NewType("greeter", func(id string) *Greeter { return &Greeter{} })

var Greet = runtime.AddMethod(GreeterType, "greet",
	func(ctx runtime.Context, g *Greeter, name string) (string, error) {
		// Durable state: every greeting is counted in the actor's journal.
		n, _, err := runtime.GetState[int](ctx.State(), "greetings")
		if err != nil {
			return "", err
		}
		if err := runtime.SetState(ctx.State(), "greetings", n+1); err != nil {
			return "", err
		}
		return fmt.Sprintf("Hello, %s! (greeting #%d from %s)", name, n+1, ctx.ActorID()), nil
	})

func Example() {
	cfg := config.Default()
	cfg.Journal.Backend = config.JournalMemory // a file under node.dataDir by default
	cfg.Node.HTTPPort = 0                      // any free port

	n, err := node.New(node.Options{
		Config: cfg,
		Types:  []runtime.Definition{GreeterType},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	defer n.Shutdown(ctx)

	for i := 0; i < 2; i++ {
		msg, err := Greet.Call(ctx, n, "greeter-1", "World")
		if err != nil {
			panic(err)
		}
		fmt.Println(msg)
	}
	// Output:
	// Hello, World! (greeting #1 from greeter-1)
	// Hello, World! (greeting #2 from greeter-1)
}
