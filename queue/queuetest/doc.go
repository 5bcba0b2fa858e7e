// Package queuetest is the conformance suite for queue.Store. A backend
// is a Store and the journal of the same actors; it runs the suite from
// its own tests:
//
//	func TestQueueConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, opts queuetest.Options) queuetest.Backend {
//			... a new, empty backend remembering acknowledged ids for opts.Retention ...
//		})
//	}
//
// Run checks the contract written on queue.Store: stamping and
// deduplication of ids (within and after the retention), argument checks,
// the delivery order of unordered and ordered messages and the blocking
// of an ordered queue by its head, Retry and DeadLetter with their stale
// and missing cases, acknowledgement through journal appends (exactly
// once, in order, never by an append that fails for the journal's own
// rules), the outbox, delayed messages and their release, reminders
// (firing, missed periods, one-shot deletion, deduplication), Ready, the
// dead letters' filters, Replay and Purge, Stats, Close and ErrClosed,
// concurrent enqueues and acks, and, when the backend is a
// queue.Notifier, its notifications.
//
// Subtests run one after the other, each on its own backend, which the
// suite closes. They pass explicit instants to Due, Release, Ready and
// Replay, computed from time.Now(), so they do not sleep, except to let
// the retention of one subtest run out; goroutines started by a subtest
// end before it returns.
package queuetest
