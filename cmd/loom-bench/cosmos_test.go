package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/internal/cosmostest"
)

// TestCosmosReplaceRuns: the cosmos-replace baseline runs against a
// Cosmos DB test server (every conditional replace answered; a 412 would
// be an error) and prints its column of ratios; the key comes from
// $COSMOS_KEY.
func TestCosmosReplaceRuns(t *testing.T) {
	srv := cosmostest.Start(t)
	t.Setenv("COSMOS_KEY", srv.Key)
	args := []string{"--cosmos", srv.Endpoint, "--cosmos-insecure", "--only", "cosmos-replace", "--callers", "4", "--duration", "300ms"}
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var row []string
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "cosmos-replace" {
			row = f
		}
	}
	// scenario calls/s p50 p99 p999 errors x unary x stream x raft x cosmos
	if len(row) != 10 {
		t.Fatalf("no cosmos-replace row of 10 fields in:\n%s", out.String())
	}
	if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
		t.Errorf("calls/s %q", row[1])
	}
	if row[5] != "0" || row[9] != "1.00" || !strings.Contains(out.String(), "x cosmos") {
		t.Errorf("errors %s, ratio to itself %s:\n%s", row[5], row[9], out.String())
	}
}

func TestCosmosReplaceNeedsAnAccount(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--only", "cosmos-replace"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "needs --cosmos") {
		t.Errorf("stderr %q", errOut.String())
	}
}
