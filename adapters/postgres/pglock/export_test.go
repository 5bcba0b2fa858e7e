package pglock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/adapters/postgres"
)

// The test clock. It exists only in test binaries: a production
// Coordinator's statements read now() and nothing else, so no table, flag
// or option can move its clock.
//
// A test coordinator's statements add to now() the interval stored in the
// one row of the table test_clock of its schema. Advance raises it, so
// every test coordinator of one schema (and the sessions of all of them)
// sees time jump forward at once; time also passes as it does on the
// server. The offset only grows.

// NewTestClock is New with the test clock.
func NewTestClock(ctx context.Context, o Options) (*Coordinator, error) {
	schema := o.Postgres.SchemaName()
	c, err := newCoordinator(ctx, o, postgres.Expand("(now() + (SELECT off FROM {s}.test_clock))", schema))
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, postgres.Expand(`
			SELECT pg_advisory_xact_lock(hashtextextended('loom test clock ' || '{s}', 0));
			CREATE TABLE IF NOT EXISTS {s}.test_clock (off interval NOT NULL);
			INSERT INTO {s}.test_clock SELECT interval '0' WHERE NOT EXISTS (SELECT 1 FROM {s}.test_clock)`, schema))
		return err
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("pglock: test clock: %w", err)
	}
	return c, nil
}

// Advance moves the test clock of c's schema forward by d (rounded up to
// whole microseconds).
func (c *Coordinator) Advance(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("pglock: advance by %v: the clock only moves forward", d)
	}
	_, err := c.pool.Exec(ctx, postgres.Expand("UPDATE {s}.test_clock SET off = off + $1 * interval '1 microsecond'", c.schema), ttlMicros(d))
	return err
}

// Schema is c's schema.
func (c *Coordinator) Schema() string { return c.schema }

// DropConnections closes the pool's idle connections, so that the next
// operation dials.
func (c *Coordinator) DropConnections() { c.pool.Reset() }
