package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/node/nodetest"
	"github.com/loom-mesh/loom/runtime"
)

// The program, built and run on a fresh data dir, places its order and
// prints what its last line's comment says.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "order")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/loom-mesh/loom/examples/order").CombinedOutput(); err != nil {
		t.Fatalf("building the program: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "loom.config.yaml")
	yaml := fmt.Sprintf("node:\n  httpPort: 0\n  dataDir: %q\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH="+conf)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	out, err := cmd.Output()
	if got, want := strings.TrimSpace(string(out)), "order-1: 3 x sku-7 reserved, 97 left <nil>"; err != nil || got != want {
		t.Fatalf("the program: %v: %q; want %q\n%s", err, got, want, logs.Bytes())
	}
}

// The cluster client calls the actors of a running node, sending each
// call straight to the node that owns the actor.
func TestClient(t *testing.T) {
	c := nodetest.Start(t, 1, StockType, OrderType)
	addr := c.Nodes[0].GRPCAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cl, err := client.Dial(ctx, []string{addr}, client.Options{}) // any node's gRPC address
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	left, err := Reserve.Call(ctx, cl, "sku-7", 1) // straight to the owner
	if err != nil || left != 99 {
		t.Fatalf("Reserve = %d, %v; want 99 left", left, err)
	}

	msg, err := Place.Call(ctx, cl, "order-2", Item{SKU: "sku-7", Qty: 3})
	if want := "order-2: 3 x sku-7 reserved, 96 left"; err != nil || msg != want {
		t.Fatalf("Place = %q, %v; want %q", msg, err, want)
	}
	if _, err := Reserve.Call(ctx, cl, "sku-7", 500); !errors.Is(err, runtime.ErrInvalidArgument) {
		t.Fatalf("reserving more than is left: %v; want ErrInvalidArgument", err)
	}
}
