package node_test

import (
	"testing"

	"github.com/loom-mesh/loom/internal/pgtest"
)

// TestMain initialises PostgreSQL's data directory once for the binary
// and stops the shared server at the end (pgtest.Main).
func TestMain(m *testing.M) { pgtest.Main(m) }
