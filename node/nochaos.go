//go:build !loomchaos

package node

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/runtime"
)

// ChaosOptions turn on the chaos hook, in a binary built with the
// loomchaos tag only; here it has no fields, and New refuses it.
type ChaosOptions struct{}

// UnsafeMode names a mode that breaks a guarantee, for the chaos suite's
// proof that its checkers bite; a binary without the loomchaos tag has
// none, and New refuses any.
type UnsafeMode string

// UnsafeModes lists the unsafe modes built in: none.
var UnsafeModes []UnsafeMode

func (m UnsafeMode) validate(config.Config) error {
	if m == "" {
		return nil
	}
	return fmt.Errorf("%w: unsafe mode %q", ErrNotBuiltIn, string(m))
}

func (n *Node) unsafeRuntime(*runtime.Options) func() { return nil }

// chaosState is always nil here; every method is a no-op that returns its
// input, as the tagged build's are on a nil state.
type chaosState struct{}

func newChaosState(o *ChaosOptions, _ string) (*chaosState, error) {
	if o != nil {
		return nil, fmt.Errorf("%w: the chaos hook", ErrNotBuiltIn)
	}
	return nil, nil
}

func (*chaosState) checkBind(string) error                    { return nil }
func (*chaosState) grpcListener(ln net.Listener) net.Listener { return ln }
func (*chaosState) grpcDialer() func(context.Context, string) (net.Conn, error) {
	return nil
}
func (*chaosState) raftStream(*raftlock.Config) (raft.StreamLayer, error) { return nil, nil }
func (*chaosState) configureGossip(*cluster.Config) error                 { return nil }
func (*chaosState) configureKeeper(*lock.KeeperConfig)                    {}
func (*chaosState) configureRuntime(*runtime.Options)                     {}
func (*chaosState) routes(*http.ServeMux)                                 {}
