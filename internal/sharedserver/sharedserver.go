// Package sharedserver keeps the one server a test binary shares among its
// tests (a PostgreSQL server, a RabbitMQ broker, a Cosmos DB test server):
// started on the first test that asks, stopped once the tests have run.
// The test-server packages (internal/pgtest, internal/rabbitmqtest,
// internal/cosmostest) each hold one and offer it as Main, Around and
// Shared.
//
// What it guarantees: at most one start per binary, attempted once (a
// server that cannot start fails every test that asks, with the reason);
// Get is safe for concurrent use; Around stops what was started.
package sharedserver

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Server is a test binary's shared server of type S.
type Server[S any] struct {
	name    string // the package, in failures
	start   func() (S, error)
	stop    func(S)
	running atomic.Bool // Around is running the tests

	mu      sync.Mutex
	s       S
	started bool
	err     error
}

// New returns a holder that starts its server with start and stops it
// with stop; name prefixes its failures ("pgtest").
func New[S any](name string, start func() (S, error), stop func(S)) *Server[S] {
	return &Server[S]{name: name, start: start, stop: stop}
}

// Around runs run (which runs the tests, or another package's Around),
// then stops the server if it was started, and returns run's exit code.
func (x *Server[S]) Around(run func() int) int {
	x.running.Store(true)
	code := run()
	x.mu.Lock()
	if x.started && x.err == nil {
		x.stop(x.s)
	}
	x.mu.Unlock()
	return code
}

// Running reports whether Around is running the tests.
func (x *Server[S]) Running() bool { return x.running.Load() }

// Get returns the shared server, starting it on the first call; it fails
// t if Around is not running or the server could not start.
func (x *Server[S]) Get(t testing.TB) S {
	t.Helper()
	if !x.running.Load() {
		t.Fatalf("%s: Shared needs %s.Main in the package's TestMain", x.name, x.name)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.started {
		x.s, x.err = x.start()
		x.started = true
	}
	if x.err != nil {
		t.Fatalf("%s: shared server: %v", x.name, x.err)
	}
	return x.s
}
