// Package lock is the contract between Loom nodes and the service that
// decides which node owns which actor: sessions, expiring exclusive locks
// and fencing tokens (Coordinator), plus the node-side arithmetic and
// machinery that keeps a session alive and says when it may not be (Lease,
// Keeper).
//
// # Sessions
//
// A node opens one session with a TTL (CreateSession) and renews it
// (Renew); every lock it takes is attached to the session, so keeping 100k
// actors costs one renewal per interval, not 100k. A session that is not
// renewed within its TTL, measured by the coordinator's clock from when it
// processed the last renewal, lapses: it and all its locks are gone; Renew
// and Acquire with it fail with ErrSessionExpired and Release with
// ErrNotHeld. DestroySession ends a session at once. Session ids are never
// reused.
//
// # Locks and fencing tokens
//
// Acquire grants a lock to one live session at a time and returns a fencing
// token. For every key, the tokens of successive grants strictly increase,
// across all sessions and all nodes, and a token is never handed out twice,
// even after the lock was released, destroyed with its session or freed by
// expiry. Tokens are never 0. Acquiring a lock the session already holds
// returns the same token (a retry after an unknown outcome is safe).
// Another session gets a *HeldError (errors.Is ErrHeld) naming the holder's
// owner and token.
//
// The token, not the lock, is what makes a stale owner harmless: the
// journal rejects any write with a token lower than one it has seen, so a
// node that still believes it owns an actor after its session lapsed (a GC
// pause, a partition) cannot corrupt it.
//
// # The lease rule
//
// The coordinator decides expiry on its clock; a node must stop running
// actors as soon as its own session MAY have lapsed. It cannot know when the
// coordinator received its last renewal, only that it was after the node
// sent it. So a node counts from the send time of its last successful
// renewal (CreateSession counts as the first), on its own monotonic clock,
// and gives up SafetyMargin early to allow for clocks running at different
// rates:
//
//	valid until = send time of the last successful renewal + TTL - SafetyMargin
//
// Lease is that rule as pure arithmetic (times passed in, no goroutines).
// The default margin is DefaultSafetyMargin: TTL/10, capped at 1s. A reply
// never moves the lease back, and a renewal that succeeds after the lease
// ran out does not revive it.
//
// # Keeper
//
// Keeper owns a node's session: it creates it, renews it from one
// goroutine every RenewInterval (default TTL/3), and when the lease runs
// out on the node's clock, or Renew returns ErrSessionExpired, it ends the
// session's Epoch (Valid turns false and the Epoch's Lapsed channel is
// closed), destroys the old session best effort and opens a new one in a
// new Epoch. Valid is a few atomic loads and a monotonic clock read, cheap
// enough for every actor turn. The Keeper's state is owned by one mutex;
// only its goroutine sends CreateSession and Renew. Close stops and waits
// for the goroutine and destroys the session.
//
// # Backends
//
// Every Coordinator passes locktest.Run, the conformance suite: raftlock
// (the embedded default), the adapters, and adapters/inmem for tests.
package lock
