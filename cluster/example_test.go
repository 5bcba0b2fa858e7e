package cluster_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/loom-mesh/loom/cluster"
)

// Two nodes on loopback: the second joins through the first.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := func(id string, seeds ...string) *cluster.Cluster {
		cfg := cluster.DevConfig() // loopback, a free port, fast failure detection
		cfg.NodeID = id
		cfg.Seeds = seeds
		cfg.Meta = cluster.Meta{GRPCAddr: "127.0.0.1:7400", Version: "dev"}
		c, err := cluster.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			log.Fatal(err)
		}
		return c
	}
	a := start("node-a")
	defer a.Close()
	events, unsubscribe := a.Subscribe()
	defer unsubscribe()

	b := start("node-b", a.LocalNode().Addr)
	defer b.Close()

	for ev := range events {
		if ev.Type == cluster.EventJoin && ev.Member.NodeID == "node-b" {
			fmt.Println(ev.Type, ev.Member.NodeID, ev.Member.State, ev.Member.Meta.Version)
			break
		}
	}
	for _, m := range b.Alive() {
		fmt.Println(m.NodeID, m.State)
	}
	// Output:
	// join node-b alive dev
	// node-a alive
	// node-b alive
}
