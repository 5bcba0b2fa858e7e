// Package journaltest is the conformance suite for journal.Journal. Every
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		journaltest.Run(t, journaltest.Harness{
//			Open:   func(t *testing.T) journal.Journal { ... a new, empty journal ... },
//			Reopen: func(t *testing.T, old journal.Journal) journal.Journal { ... same storage ... },
//		})
//	}
//
// Run checks the whole contract written on journal.Journal and in the
// journal package documentation: sequence assignment and ordering, stamping
// of Seq/Actor/Token, the stored form of every field, fencing (checked
// before conflicts, applied to SaveSnapshot and Truncate too), conflicts,
// reads from any position, unknown actors, snapshots, truncation,
// concurrency (many actors at once, and racing writers on one actor, where
// exactly one wins each sequence number), contexts already done, isolation
// of the caller's slices, Close and ErrClosed, and, when the backend can be
// reopened, persistence of entries, tails, tokens and snapshots.
//
// The suite writes no entries of kind KindMessageAck or KindMessageSend:
// a journal that is also a queue.Store gives them a meaning, which
// queuetest checks.
//
// A backend that cannot survive a restart sets Harness.Reopen to nil; the
// persistence subtests then report t.Skip with that reason. That is the only
// skip: every other subtest must pass on every backend.
//
// The suite runs subtests sequentially, each on its own journal from
// Harness.Open, which it closes itself (Close is called more than once on
// some, as the contract allows). It starts goroutines only inside a
// subtest and waits for all of them before the subtest returns. It never
// sleeps to synchronise.
package journaltest
