// Command shopper reserves stock on a running cluster through the cluster
// client. It imports the contract (shopapi) only, not the implementation:
//
//	shopper -addr 127.0.0.1:7520 -sku sku-7 -qty 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/examples/shop/shopapi"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7520", "a node's gRPC address")
	sku := flag.String("sku", "sku-7", "the stock actor's id")
	qty := flag.Int("qty", 1, "quantity to reserve")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{*addr}, client.Options{IdempotentRetries: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shopper:", err)
		os.Exit(1)
	}
	defer cl.Close()
	left, err := shopapi.Reserve.Call(ctx, cl, *sku, *qty)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shopper:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d reserved, %d left\n", *sku, *qty, left)
}
