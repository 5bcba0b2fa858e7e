// Package inmem provides in-memory backends for tests and single-process
// use: a Journal (see NewJournal), which is also the queue.Store of the
// same actors, and a Coordinator. They implement the same contracts as the
// durable backends and pass the same conformance suites (journaltest,
// queuetest, locktest), but nothing survives the process: there is no
// file, no network and no fsync.
//
// Each backend is safe for concurrent use; its state is owned by one mutex
// and every operation holds it for its whole duration, so operations are
// linearizable and Close waits for operations in flight. Values are copied
// on the way in and on the way out: callers never share memory with the
// backend.
//
// The Journal's queues are the queuesm state machine over kv.Mem buckets,
// stamped with its Clock (Options). An Append checks the journal's rules,
// then the queue rules of its acknowledgements and sends, and only then
// writes, so a failed append changes neither the journal nor the queues.
// Notifications (queue.Notifier) are delivered by one goroutine, started
// by the first Notify and stopped by Close, never while the mutex is held.
package inmem
