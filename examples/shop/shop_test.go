package shop_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/examples/shop"
	"github.com/loom-mesh/loom/node/nodetest"
)

// A client built from the contract alone (shopper imports shopapi, not
// shop) calls stock actors hosted by a running cluster.
func TestClientWithOnlyTheContract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program and starts a cluster")
	}
	deps, err := exec.Command("go", "list", "-deps", "github.com/loom-mesh/loom/examples/shop/shopper").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range strings.Fields(string(deps)) {
		if d == "github.com/loom-mesh/loom/examples/shop" {
			t.Fatal("shopper links the implementation package")
		}
	}
	bin := filepath.Join(t.TempDir(), "shopper")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/loom-mesh/loom/examples/shop/shopper").CombinedOutput(); err != nil {
		t.Fatalf("building shopper: %v\n%s", err, out)
	}

	c := nodetest.Start(t, 3, shop.StockType)
	for i, want := range []string{"sku-7: 3 reserved, 97 left", "sku-7: 3 reserved, 94 left"} {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		out, err := exec.CommandContext(ctx, bin, "-addr", c.Nodes[i].GRPCAddr(), "-sku", "sku-7", "-qty", "3").CombinedOutput()
		cancel()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Fatalf("shopper via node %d: %v: %s; want %q", i+1, err, out, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-addr", c.Nodes[2].GRPCAddr(), "-sku", "sku-7", "-qty", "500").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "invalid argument: 500 asked, 94 left") {
		t.Fatalf("reserving too much: %v: %s", err, out)
	}
}
