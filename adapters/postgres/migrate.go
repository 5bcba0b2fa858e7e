package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaTooNew: the schema was made by a newer Loom than this one
// (its version is above SchemaVersion). Nothing was changed; run the
// newer Loom, or another schema.
var ErrSchemaTooNew = errors.New("postgres: schema made by a newer version of Loom")

// Migrate brings schema to SchemaVersion: it creates the schema if it does
// not exist, records its version in the table schema_version (one row per
// version applied, with when), and applies the migrations the schema lacks,
// in order. It is idempotent, and all of it is one transaction: a
// failure changes nothing, and a retry starts over. Concurrent callers
// (nodes starting together) wait for each other on a transaction-level
// advisory lock, so each migration runs once. A schema at a version above
// SchemaVersion is left alone and Migrate returns an error wrapping
// ErrSchemaTooNew. It returns the version found (0 for a new schema).
//
// The user needs the CREATE privilege on the database to make the
// schema, and on the schema to make its tables; an operator may create
// the schema beforehand and grant the latter only.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) (from int, err error) {
	return migrateTo(ctx, pool, schema, SchemaVersion)
}

// migrateTo is Migrate to version to (at most SchemaVersion).
func migrateTo(ctx context.Context, pool *pgxpool.Pool, schema string, to int) (from int, err error) {
	if !schemaRE.MatchString(schema) {
		return 0, fmt.Errorf("%w: schema %q is not a lower-case identifier of at most 63 bytes", ErrOptions, schema)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('loom migrate ' || $1, 0))", schema); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, Expand("CREATE SCHEMA {s}", schema)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, Expand(`CREATE TABLE IF NOT EXISTS {s}.schema_version (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`, schema)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, Expand("SELECT coalesce(max(version), 0) FROM {s}.schema_version", schema)).Scan(&from); err != nil {
			return err
		}
		if from > SchemaVersion {
			return fmt.Errorf("%w: schema %q is at version %d, this Loom knows versions up to %d", ErrSchemaTooNew, schema, from, SchemaVersion)
		}
		for v := from; v < to; v++ {
			if _, err := tx.Exec(ctx, Expand(migrations[v], schema)); err != nil {
				return fmt.Errorf("migration to version %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, Expand("INSERT INTO {s}.schema_version (version) VALUES ($1)", schema), v+1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrSchemaTooNew) {
			return from, err
		}
		return from, fmt.Errorf("postgres: migrate schema %q: %w", schema, err)
	}
	return from, nil
}
