//go:build loomchaos

package main

import (
	"fmt"
	"hash/fnv"
	"os"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
	"github.com/loom-mesh/loom/transport/faultnet"
)

// testUsage is the usage line of the test-only flags.
const testUsage = `
      test only: [--chaos-hook [--chaos-events FILE] [--chaos-seed N]] [--debug-unsafe MODE] (see -h)`

// Test-only flags of `loom-node run`, for the chaos suite (test/chaos),
// in a binary built with the loomchaos tag only (nochaos.go has none).
// Neither is in the config file, so that no file can turn them on.
type testFlags struct {
	chaosHook   bool
	chaosEvents string
	chaosSeed   uint64
	unsafe      string
}

func (f *nodeFlags) addTestFlags() {
	f.fs.BoolVar(&f.test.chaosHook, "chaos-hook", false,
		"TEST ONLY: serve the chaos hook's fault API on /chaos/ and route gossip, Raft, gRPC, the lease clock and Raft log writes through it (needs --bind to be this node's own IP, e.g. 127.0.0.11)")
	f.fs.StringVar(&f.test.chaosEvents, "chaos-events", "",
		"TEST ONLY, with --chaos-hook: append the node's activation log (JSON lines) to this file")
	f.fs.Uint64Var(&f.test.chaosSeed, "chaos-seed", 0,
		"TEST ONLY, with --chaos-hook: seed of the hook's loss and jitter draws (0: derived from the node id)")
	f.fs.StringVar(&f.test.unsafe, "debug-unsafe", "",
		fmt.Sprintf("DEBUG ONLY, BREAKS LOOM'S GUARANTEES: run in an unsafe mode (%v) so the chaos suite can show that its checkers catch it", node.UnsafeModes))
}

// testOptions adds the test-only flags' options to o. The returned
// function closes the activation log.
func (f *nodeFlags) testOptions(cfg config.Config, o *node.Options) (func(), error) {
	o.Unsafe = node.UnsafeMode(f.test.unsafe)
	if !f.test.chaosHook {
		if f.test.chaosEvents != "" {
			return nil, fmt.Errorf("--chaos-events needs --chaos-hook")
		}
		return func() {}, nil
	}
	seed := f.test.chaosSeed
	if seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(cfg.Node.ID))
		seed = h.Sum64()
	}
	o.Chaos = &node.ChaosOptions{Hook: faultnet.New(cfg.Node.ID, cfg.Node.Bind, seed)}
	if f.test.chaosEvents == "" {
		return func() {}, nil
	}
	file, err := os.OpenFile(f.test.chaosEvents, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	o.Chaos.Events = file
	return func() { _ = file.Close() }, nil
}
