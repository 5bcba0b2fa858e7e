package node_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
)

// A node hosting the built-in actor types, called in process: the call
// activates counter/c1 on this node and journals its change before it
// answers. examples/order is a whole program with types of its own, one
// calling another.
func Example() {
	cfg := config.Default()
	cfg.Journal.Backend = config.JournalMemory // a file under node.dataDir by default
	cfg.Node.HTTPPort = 0                      // any free port

	n, err := node.New(node.Options{Config: cfg, Builtins: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	defer n.Shutdown(ctx)

	for _, d := range []int64{2, 3} {
		v, err := builtin.CounterAdd.Call(ctx, n, "c1", builtin.CounterDelta{Delta: d})
		fmt.Println(v.Value, err)
	}
	_, err = builtin.CounterAdd.Call(ctx, n, "c1", builtin.CounterDelta{Fail: "on purpose"})
	fmt.Println(err)
	// Output:
	// 2 <nil>
	// 5 <nil>
	// counter/c1.add: on purpose
}
