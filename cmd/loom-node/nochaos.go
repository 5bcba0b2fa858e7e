//go:build !loomchaos

package main

import (
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
)

// A production build has no test-only flags: `loom-node run
// --chaos-hook` or `--debug-unsafe` is refused as an undefined flag.
// The chaos suite builds loom-node with -tags loomchaos (chaos.go).
const testUsage = ""

type testFlags struct{}

func (f *nodeFlags) addTestFlags() {}

func (f *nodeFlags) testOptions(config.Config, *node.Options) (func(), error) {
	return func() {}, nil
}
