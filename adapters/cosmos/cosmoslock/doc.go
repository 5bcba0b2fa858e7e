// Package cosmoslock is a lock.Coordinator kept in Azure Cosmos DB, for
// clusters that already run on Cosmos DB and would rather not run Raft.
// It passes locktest, the conformance suite, against a Cosmos DB test
// server.
//
// # Documents
//
// In the lease container (see package cosmos):
//
//   - a session document per session, {owner, ttlMs, renewal}, in the
//     partition "sessions". CreateSession creates it (create-only); Renew
//     replaces it with If-Match on the etag this coordinator last wrote,
//     which gives it a new etag; DestroySession deletes it.
//   - a lease document per lock, {key, session, owner, token}, its own
//     partition. It is created (create-only) by the first grant, with
//     token 1, and afterwards only replaced with If-Match on the etag the
//     deciding read returned: a grant writes session and token+1, a
//     release clears the session. It is never deleted, so the token keeps
//     increasing across grants: of two coordinators racing for one lock,
//     one write succeeds and the other gets 412 (or 409 for the first
//     grant), reads again and finds the lock held. Two sessions can never
//     both be granted a lock, and every grant's token is strictly higher
//     than the one before.
//
// A lock is held when its lease names a session that is alive. Session
// ids are 128 random bits, never reused.
//
// # Expiry without a server clock
//
// Cosmos DB offers no clock a conditional write can compare against, and
// its TTL deletes documents late and at its own pace. So expiry is
// decided as Kubernetes' leader election (client-go) decides it, on each
// participant's own monotonic clock, never comparing clocks:
//
//   - The holder counts its session's life from the send time of its last
//     successful renewal (CreateSession counting as the first): it is
//     alive until sentAt + TTL. A coordinator answers for the sessions it
//     opened from that reckoning alone; Renew after it ran out fails with
//     ErrSessionExpired (and deletes the document if it is unchanged).
//     The node's lock.Keeper stops using the session a safety margin
//     earlier still (the lease rule of package lock).
//   - An observer (another node, judging a lease it wants, or Holder)
//     records the etag of the session document when it first sees it, and
//     when, on its own clock. It judges the session lapsed only once the
//     document has kept that etag for the TTL since then. It then deletes
//     the document with If-Match on that etag, and only if the delete
//     succeeds does it treat the session's locks as free.
//
// Why that is safe: the renewal that produced the etag the observer saw
// was sent before the observer saw it; so when the observer has watched
// it unchanged for TTL, at least TTL has passed since the holder sent its
// last successful renewal, and the holder, counting TTL minus a margin
// from that send, stopped using its locks first, provided the two clocks
// run at rates closer than the margin allows (lock.DefaultSafetyMargin:
// 11 % for TTL/10). No wall-clock agreement is needed, and a step of
// either wall clock changes nothing. A renewal that lands before the
// observer's delete makes the delete fail (412), so a live session is
// never ended by a slow observer; a renewal after the delete finds no
// document and fails with ErrSessionExpired, so a judged session never
// comes back. The cost: an observer that first looks at a dead session
// waits a full TTL from that look, so failover takes up to one TTL after
// the first attempt to take the lock (a node restarting under the same id
// ends its previous sessions at once with EndSessionsOf).
//
// Fencing does not rest on this reasoning alone: tokens strictly increase
// per lock, and the journal refuses writes with a token lower than one it
// has seen, so an ex-holder whose clock misled it cannot write after the
// new holder has.
//
// # Costs
//
// Renew is one replace per session per interval, whatever the number of
// locks. Acquire of a lock this coordinator's session may take is a read
// and a create or replace; when another node's session holds it, a read
// of that session's document too. Holder is a read, plus one for a
// session opened elsewhere. Each is a point operation (about 1 RU for a
// read, about 10 for a write of these small documents).
//
// # Concurrency
//
// A Coordinator is safe for concurrent use. Its only state, the sessions
// it opened and the etags it observed, is guarded by one mutex; Close
// waits for operations in flight.
package cosmoslock
