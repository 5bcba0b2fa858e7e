// Package redislock is a lock.Coordinator kept in Redis (7.0 or later, one
// primary): sessions with a TTL, locks attached to them, and fencing
// tokens. It passes locktest.Run against a real redis-server.
//
// # What it guarantees
//
// Every operation is one Lua script (EVALSHA, falling back to EVAL after
// the server lost its script cache), so each runs atomically on the
// server: two clients racing for a lock cannot both win, and no reader
// sees half an operation.
//
// Expiry is decided on one clock, the server's: every script reads
// redis.call('TIME'), never the client's clock. A session is alive while
// that clock is before its deadline, which CreateSession and Renew set to
// now + TTL (whole milliseconds, rounded up). A session past its deadline
// is gone, with all its locks, the instant its deadline passes, whether or
// not anything has deleted its keys yet: every script that reads a session
// or a lock checks the deadline itself. Renew and Acquire with it fail with
// lock.ErrSessionExpired, Release with lock.ErrNotHeld, and a failed Renew
// does not revive it. DestroySession ends a session the same way at once.
// What lapsed and destroyed sessions leave behind (their keys, their
// locks' keys) is deleted by a sweep that runs inside CreateSession, Renew
// and DestroySession, at most 16 sessions and 1000 lock keys per call, so
// no call blocks the server for long; garbage waits, semantics do not.
//
// Session ids are "<n>-<r>": n from a counter (INCR) that is never reset,
// r 64 random bits drawn by the client, so an id is never reused, and even
// a counter that went back (see Durability) does not hand a stale node
// someone else's session.
//
// Fencing tokens come from one counter per lock key, which never expires
// and is never deleted, and is raised (INCR) only by the script that grants
// the lock. So the tokens of a key strictly increase across all grants, by
// all sessions and all clients, including after releases, destroyed
// sessions, expiry and a restart of redis-server, and are never 0. A
// session that acquires a lock it already holds gets its grant's token
// back without raising the counter; another session gets a
// *lock.HeldError naming the holder's owner and token.
//
// # Not Redlock
//
// Redlock alone gives no fencing: its lock value is a random string, and
// its independent masters share no counter from which a token that
// increases could come. A lock without a token cannot stop a paused or
// partitioned ex-holder from writing, which is the property Loom's
// journals rely on. This adapter does not build on Redlock; it relies on
// one primary, which is the only place its counters live.
//
// # Durability
//
// Durability is Redis's. With appendonly yes and appendfsync always on one
// primary, every grant and token increment Redis acknowledged survives a
// crash (kill -9) of redis-server: tokens keep increasing across a
// restart, as the tests check. With appendfsync everysec, up to a second
// of acknowledged grants and increments can be lost in a crash. Across a
// failover to a replica they can be lost too, because replication is
// asynchronous: the new primary may hand out a token that was already
// granted, so tokens can go backwards, and a journal fenced by them would
// accept a write from an ex-holder. Do not put a replicated failover setup
// (Sentinel, a managed "high availability" tier) under this coordinator
// unless you accept that; run one primary with appendfsync always.
//
// Expiry follows the server's wall clock (TIME). A step of that clock
// moves every deadline: a jump forward lapses sessions early, a jump back
// keeps them longer. Neither breaks fencing; tokens do not depend on the
// clock.
//
// # Errors
//
// Besides the lock contract's sentinels, an operation that fails on the
// way to Redis wraps ErrUnavailable (certainly not carried out: connection
// refused, dial timeout, pool exhausted, or a refusal such as LOADING,
// READONLY or a wrong password) or ErrUnknownOutcome (sent, or maybe sent,
// and unanswered: a read timeout, a connection lost, the context ending),
// together with the underlying error, and names the operation and the
// server's address. go-redis's own retries are off (MaxRetries -1): after
// a retry the final error would no longer tell what earlier attempts did.
// It still retries a dial that failed (by default 5 attempts, 100 ms
// apart), which is safe since nothing was sent; so a refused connection
// answers after about 0.4 s. Callers retry; lock.Keeper already does. The
// two wrap the contract's lock.ErrUnavailable and lock.ErrUnknownOutcome,
// so code that knows only package lock can tell them apart; lock.Keeper
// treats both as transient. Which Redis failures prove that nothing was
// done is redis.NotApplied's to say.
//
// # Keys
//
// Everything lives under Options.Redis's KeyPrefix (default "loom:")
// followed by "lock:", so clusters (and tests) with different prefixes
// share a server without meeting. The scripts touch keys they find while
// running (the holder's session, the locks of a lapsed session), so the
// coordinator needs one Redis primary; Redis Cluster is not supported.
//
// # Testing
//
// The conformance suite moves the coordinator's clock. Test binaries of
// this package build coordinators whose scripts add an offset, read from
// one key, to TIME (see export_test.go); the production scripts read TIME
// alone, so no key, flag or option can move a production coordinator's
// clock.
//
// # Concurrency
//
// A Coordinator is safe for concurrent use. It keeps no state of its own
// beyond its client and a closed flag, guarded by one RWMutex. Every
// operation honours its context: go-redis stops a command at a context's
// deadline but not at its cancellation (which is how lock.Keeper bounds
// its requests), so each command runs in a goroutine of its own, and the
// operation returns when the command answers or the context ends, the
// latter with ErrUnknownOutcome. An abandoned command ends by itself (its
// answer, the ReadTimeout, a lost connection); the coordinator counts
// these goroutines and Close waits for them before closing the client.
package redislock
