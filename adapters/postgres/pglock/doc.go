// Package pglock is a lock.Coordinator kept in PostgreSQL (11 or later;
// tested on 15): sessions with a TTL, locks attached to them, and fencing
// tokens. It passes locktest.Run against a real server.
//
// # What it guarantees
//
// Every operation is one statement, most of them a call of a plpgsql
// function of the schema (see adapters/postgres, schema.go), so each is
// one transaction: it happens entirely or not at all, and two clients
// racing for a lock are serialised by the lock row's row lock, so both
// cannot win.
//
// Expiry is decided on one clock, the database's: every statement passes
// now() (the start of its transaction, on the server) to the function that
// decides, never the client's clock. A session is alive while that clock is
// before its deadline, which CreateSession and Renew set to now + TTL
// (whole microseconds, rounded up); a renewal never moves a deadline back
// (one whose transaction began before another's but committed after it
// keeps the later deadline). A session past its deadline is gone, with all
// its locks, the instant the deadline passes, whether or not anything has
// deleted its rows yet: every statement that reads a session or a lock
// checks the deadline itself. Renew and Acquire with it fail with
// lock.ErrSessionExpired, Release with lock.ErrNotHeld, and a failed Renew
// does not revive it. DestroySession ends a session the same way at once
// (its deadline becomes -infinity). What lapsed and destroyed sessions
// leave behind is deleted by a sweep that runs inside CreateSession, Renew
// and DestroySession, at most 16 sessions and 1000 lock rows per call,
// skipping rows another transaction has locked, so no call waits for long;
// garbage waits, semantics do not.
//
// Session ids are "<n>-<r>": n from a sequence that is never reset, r 64
// random bits drawn by the client, so an id is never reused.
//
// Fencing tokens come from one sequence for every key (lock_tokens),
// which is never reset, and a grant draws its token only while it holds
// the key's row lock (a key without a row gets a free one first, in the
// same transaction). So the grants of one key draw their tokens in the
// order they commit: the tokens of a key strictly increase across all
// grants, by all sessions and all clients, including after releases,
// destroyed sessions, expiry and a crash of the server; they are never 0,
// and never reused. PostgreSQL writes a sequence to its log 32 values
// ahead and a crash skips the unused ones: tokens jump, never go back. A
// session that acquires a lock it already holds gets its grant's token
// back without drawing one; another session gets a *lock.HeldError naming
// the holder's owner and token.
//
// Keys and owners are stored as bytea: any string, a NUL byte and invalid
// UTF-8 included, is a key of its own.
//
// # Durability
//
// Durability is PostgreSQL's (see adapters/postgres): with fsync and
// synchronous_commit on, every grant the server acknowledged survives a
// crash, as the tests check by killing every server process. A grant's
// token is returned only after its transaction committed, and its commit
// made the sequence's advance durable with it. Across a failover to an
// asynchronous standby, grants can be lost and tokens go back; do not put
// such a setup under this coordinator unless you accept that.
//
// Expiry follows the database server's wall clock. A step of that clock
// moves every deadline: a jump forward lapses sessions early, a jump back
// keeps them longer. Neither breaks fencing; tokens do not depend on the
// clock.
//
// # Errors
//
// Besides the lock contract's sentinels, an operation that fails on the
// way to the server wraps ErrUnavailable (certainly not carried out: no
// connection could be had, the login was refused, or the server answered
// with an error and rolled back) or ErrUnknownOutcome (sent, or maybe
// sent, and unanswered: a lost connection, a timeout, the context ending,
// the session ended by the server), together with the cause, and names
// the operation and the server's address. Holder and Ping write nothing,
// so their failures are all ErrUnavailable. Nothing is retried inside:
// after a retry the final error would no longer tell what earlier attempts
// did. The two wrap the contract's lock.ErrUnavailable and
// lock.ErrUnknownOutcome, so code that knows only package lock can tell
// them apart; lock.Keeper treats both as transient. Which failures prove
// that nothing was done is postgres.NotApplied's to say.
//
// A statement sent on a pooled connection that the server closed
// meanwhile (a restart) fails with ErrUnknownOutcome: nothing tells the
// client that the server closed it before the statement arrived. pgxpool
// pings connections idle for more than a second before reuse, which
// catches most of these.
//
// # Schema
//
// Everything lives in Options.Postgres's schema (default "loom"), which New
// creates or upgrades (postgres.Migrate); clusters and tests with different
// schemas share a database without meeting.
//
// # Testing
//
// The conformance suite moves the coordinator's clock. Test binaries of
// this package build coordinators whose statements read the time from a
// table of the schema, which stands still until the test moves it (see
// export_test.go); the production statements read now() alone, so no
// table, flag or option can move a production coordinator's clock.
//
// # Concurrency
//
// A Coordinator is safe for concurrent use. It keeps no state of its own
// beyond its pool and a closed flag, guarded by one RWMutex held (shared)
// by every operation, so Close waits for operations in flight. Every
// operation honours its context: pgx interrupts a statement when the
// context ends (deadline or cancellation, which is how lock.Keeper bounds
// its requests) and the operation returns ErrUnknownOutcome at once; each
// round trip is also bounded by Options.Postgres.QueryTimeout.
package pglock
