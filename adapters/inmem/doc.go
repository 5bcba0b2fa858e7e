// Package inmem provides in-memory backends for tests and single-process
// use: a Journal (see NewJournal) and a Coordinator. They implement the same
// contracts as the durable backends and pass the same conformance suites,
// but nothing survives the process: there is no file, no network and no
// fsync.
//
// Each backend is safe for concurrent use; its state is owned by one mutex
// and every operation holds it for its whole duration, so operations are
// linearizable and Close waits for operations in flight. Values are copied
// on the way in and on the way out: callers never share memory with the
// backend.
package inmem
