package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgInsert is the pg-insert baseline: raw pgx INSERTs into a
// PostgreSQL server (--postgres), one autocommitted statement per call,
// each caller appending to a stream of its own with a pool connection of
// its own. Each INSERT is conditional, as a journal append is: it adds
// (stream, seq) only if the table's primary key does not hold it yet (ON
// CONFLICT DO NOTHING), and a call that added no row is an error. It is
// what a durable write costs on PostgreSQL alone, without Loom: with the
// server's fsync and synchronous_commit on (the defaults, and what Loom's
// PostgreSQL adapters rely on), the server answers once the commit is in
// its write-ahead log, flushed with whatever other commits arrived
// meanwhile. The record is about 100 bytes, the size of a journal entry.
// The table, loom_bench_insert_<run> in the connection's default schema,
// is emptied after every measurement and dropped at the end.
type pgInsert struct {
	pool    *pgxpool.Pool
	callers int
	table   string // quoted
	insert  string
	value   []byte
}

// startPGInsert connects to addr (host:port) as user (else $PGUSER, else
// the OS user) with password (else $PGPASSWORD) to database (else
// $PGDATABASE, else the user's name), with a pool of a connection per
// caller, and makes the baseline's table.
func startPGInsert(ctx context.Context, addr, user, password, database string, callers int) (*pgInsert, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--postgres %q: want host:port: %w", addr, err)
	}
	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("host=%s port=%s sslmode=disable application_name=loom-bench", host, port))
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", addr, err)
	}
	cc := cfg.ConnConfig
	if user != "" {
		cc.User = user
	}
	if password != "" {
		cc.Password = password
	}
	if database != "" {
		cc.Database = database
	}
	cc.ConnectTimeout = 10 * time.Second
	cfg.MaxConns = int32(callers)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", addr, err)
	}
	name := "loom_bench_insert_" + strings.ToLower(rand.Text()[:12])
	x := &pgInsert{pool: pool, callers: callers, table: pgx.Identifier{name}.Sanitize(), value: make([]byte, 100)}
	for i := range x.value {
		x.value[i] = 'a' + byte(i%26)
	}
	x.insert = "INSERT INTO " + x.table + " (stream, seq, rec) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(cctx, "CREATE TABLE "+x.table+" (stream int NOT NULL, seq bigint NOT NULL, rec bytea NOT NULL, PRIMARY KEY (stream, seq))"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s: creating the table: %w", addr, err)
	}
	return x, nil
}

var errNotInserted = errors.New("the conditional insert added no row")

// add appends record seq to caller g's stream.
func (x *pgInsert) add(ctx context.Context, g int, seq int64) error {
	tag, err := x.pool.Exec(ctx, x.insert, g, seq, x.value)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errNotInserted
	}
	return nil
}

// measure runs the baseline for d and then empties the table (load
// numbers each caller's calls from 0 in every measurement).
func (x *pgInsert) measure(ctx context.Context, d time.Duration) (result, error) {
	r := load("pg-insert", x.callers, d, func(g int, i int64) error { return x.add(ctx, g, i) })
	return r, x.clean(ctx)
}

// clean empties the table.
func (x *pgInsert) clean(ctx context.Context) error {
	if _, err := x.pool.Exec(ctx, "TRUNCATE "+x.table); err != nil {
		return fmt.Errorf("emptying the table: %w", err)
	}
	return nil
}

// close drops the table and closes the pool.
func (x *pgInsert) close(ctx context.Context) {
	if _, err := x.pool.Exec(ctx, "DROP TABLE IF EXISTS "+x.table); err != nil {
		fmt.Fprintf(os.Stderr, "loom-bench: closing the postgres baseline: dropping %s: %v\n", x.table, err)
	}
	x.pool.Close()
}
