package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A default build of loom-node carries none of the chaos suite's
// machinery: its test-only flags are refused, and neither the fault hook
// (transport/faultnet) nor the unsafe modes are linked in, so no operator
// can switch off fencing or durability with a flag.
func TestProductionBuildHasNoTestMachinery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds loom-node")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "loom-node")
	if out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"run", "--debug-unsafe", "ack-before-durable"},
		{"run", "--debug-unsafe", "ignore-lock"},
		{"run", "--chaos-hook"},
		{"dev", "--chaos-events", "x.jsonl"},
	} {
		// Were a flag accepted, the missing config file would stop the
		// node before it listens anywhere, and the deadline kills it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, append(args, "--data-dir", t.TempDir(), "--config", filepath.Join(t.TempDir(), "missing.yaml"))...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		flag := strings.TrimLeft(args[1], "-")
		if err == nil || !strings.Contains(stderr.String(), "flag provided but not defined: -"+flag) {
			t.Errorf("loom-node %v: %v, stderr %q; want it refused as an undefined flag", args, err, stderr.String())
		}
	}
	var help bytes.Buffer
	cmd := exec.Command(bin, "help")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run()
	if strings.Contains(help.String(), "chaos") || strings.Contains(help.String(), "unsafe") {
		t.Errorf("the usage of a default build mentions test-only flags:\n%s", help.String())
	}
	syms, err := exec.Command(gotool, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	for _, bad := range []string{"transport/faultnet.", "node.writeBehind", "node.lockIgnorer", "node.eventJournal", "node.(*chaosState).configureRaft"} {
		if bytes.Contains(syms, []byte(bad)) {
			t.Errorf("a default build links %s", bad)
		}
	}
	if !bytes.Contains(syms, []byte("raftlock.(*Store).Append")) {
		t.Fatal("the symbol table check sees nothing: raftlock.(*Store).Append is missing too")
	}
}
