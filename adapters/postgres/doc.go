// Package postgres holds what Loom's PostgreSQL adapters share: how to
// reach a server and where Loom's tables live there (Options, NewPool, on
// github.com/jackc/pgx/v5's pgxpool); the versioned schema those tables
// make up and the migration that creates and upgrades it (Migrate);
// which failures prove that a statement had no effect (NotApplied); and
// Meter, the pgx tracer that counts each adapter's round trips, failures
// and latency for /health and /metrics. The adapters themselves, each
// behind one of Loom's interfaces and passing its conformance suite
// against a real PostgreSQL server, are its subpackages: pglock (a
// lock.Coordinator) and pgjournal (a journal.Journal).
//
// # Guarantees
//
// Durability is PostgreSQL's: with fsync on and synchronous_commit on
// (both defaults), a transaction the server acknowledged survives a crash
// of the server and of the machine, to the extent the disk honours
// fsync; Loom's tests kill every server process with SIGKILL and check.
// With synchronous_commit off, the last few hundred milliseconds of
// acknowledged transactions can be lost in a crash (not corrupted); the
// adapters do not set it and do not check it. Across a failover to a
// standby, acknowledged transactions survive only if the standby was
// synchronous (synchronous_standby_names, and synchronous_commit on or
// remote_apply); with asynchronous replication they can be lost, and with
// them lock grants, so fencing tokens could go backwards.
//
// Every adapter operation is one transaction (a statement, or a batch of
// statements, which PostgreSQL runs as one implicit transaction), at READ
// COMMITTED, taking row locks where it decides something: it happens
// entirely or not at all, and concurrent operations on one row are
// serialised by the server.
//
// # Schema
//
// Everything lives in one schema (Options.Schema, default "loom"), which
// Migrate creates: several clusters, or tests, share a database under
// different schemas. Its version is in the table schema_version; the
// adapters run Migrate when they open, so a Loom upgrade brings the schema
// with it, and a Loom older than the schema refuses to run against it
// (ErrSchemaTooNew) rather than write what a newer one would misread.
// Version 1 holds the lock coordinator's and the journal's tables and
// functions (schema.go), version 2 the message queues' (schema_queue.go).
//
// # Errors
//
// A failure on the way to the server is one of two kinds, which each
// adapter reports by wrapping its contract's ErrUnavailable (certainly
// not applied: NotApplied) or ErrUnknownOutcome (sent, or maybe sent, and
// unanswered; or the session ended as it ran). Because PostgreSQL rolls a
// failed transaction back, an error answered by the server (severity
// ERROR) is always "not applied".
//
// # Connections
//
// TLS is off unless Options.TLS is set (or a URL's sslmode asks for it).
// pgxpool pings a connection that was idle for more than a second before
// handing it out, so a restarted server costs the first caller no
// unknown outcome. Statements are prepared once per connection (pgx's
// statement cache).
package postgres
