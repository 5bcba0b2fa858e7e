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
// A test coordinator's statements read the instant stored in the one row
// of the table test_clock of its schema, which is the database's now()
// when the table is made and stands still until Advance moves it, as
// locktest.FakeClock does: so a test on a slow machine does not see its
// sessions lapse while it works. Every test coordinator of one schema
// (and the sessions of all of them) sees the clock jump at once.

// NewTestClock is New with the test clock.
func NewTestClock(ctx context.Context, o Options) (*Coordinator, error) {
	schema := o.Postgres.SchemaName()
	c, err := newCoordinator(ctx, o, postgres.Expand("(SELECT t FROM {s}.test_clock)", schema))
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, postgres.Expand(`
			SELECT pg_advisory_xact_lock(hashtextextended('loom test clock ' || '{s}', 0));
			CREATE TABLE IF NOT EXISTS {s}.test_clock (t timestamptz NOT NULL);
			INSERT INTO {s}.test_clock SELECT now() WHERE NOT EXISTS (SELECT 1 FROM {s}.test_clock)`, schema))
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
	_, err := c.pool.Exec(ctx, postgres.Expand("UPDATE {s}.test_clock SET t = t + $1 * interval '1 microsecond'", c.schema), ttlMicros(d))
	return err
}

// Schema is c's schema.
func (c *Coordinator) Schema() string { return c.schema }

// DropConnections closes the pool's idle connections, so that the next
// operation dials.
func (c *Coordinator) DropConnections() { c.pool.Reset() }
