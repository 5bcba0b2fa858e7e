// Package queue defines Loom's durable message store: per-actor queues of
// one-way messages, their dead letters and their reminders, and the
// contract every backend keeps (Store). The runtime delivers each message
// as a turn of its actor and acknowledges it in the journal append of that
// turn, so a message's effect is applied exactly once even when the
// message is delivered more than once; see Store for the rules.
//
// queuetest is the conformance suite every backend passes. Backends: the
// bbolt file journal (journal.File), raftlock's replicated store and the
// in-memory adapters/inmem.
//
// # What a user can rely on
//
//   - Accepted means durable: Enqueue returns only once the message is
//     stored as durably as the journal's appends are.
//   - Applied at most once: a message is acknowledged only together with
//     the state change its turn made, and only once.
//   - Delivered at least once: a message stays in its queue until it is
//     acknowledged or dead-lettered, whoever crashes in between.
//   - Ordered messages of one actor are applied in acceptance order
//     (delayed ones when they are released), one at a time; unordered ones
//     in no promised order.
//   - A message id is accepted once: a second Enqueue of an id the store
//     still remembers answers the first acceptance.
package queue
