// Package messaging delivers durable messages (queue.Store) to their
// actors: a Dispatcher on every node delivers the messages of the actors
// the node is responsible for (the ring places them here, or they are
// active here) as turns of those actors, through the runtime's call path,
// so a delivery follows the actor wherever its lock is.
//
// # What it guarantees
//
//   - At least once: a message stays in its queue until the turn that
//     processed it commits (its append acknowledges it, see
//     queue.Store) or it is dead-lettered. The dispatcher finds work by
//     the store's notifications and by scanning it (Options.ScanInterval),
//     so a message whose owner died is delivered by the new owner, and an
//     actor with pending messages is activated to take them.
//   - Exactly-once effects: a second delivery of an acknowledged message
//     fails with runtime.ErrMessageSettled and applies nothing.
//   - Retries: a delivery whose handler fails (an error or a panic) is an
//     attempt: it is retried after Policy's backoff, then dead-lettered
//     after 1+MaxRetries attempts. A message that can never succeed (an
//     unknown actor type or method, an argument that does not decode) is
//     dead-lettered at once. A delivery that does not reach a turn (the
//     owner is unreachable, shutting down, overloaded) is not an attempt:
//     it is tried again after Options.UnavailableRetry.
//   - Order: an ordered actor's messages are delivered one at a time in
//     their queue's order, and a failing one holds back the ones behind
//     it; the store enforces the order at acknowledgement, so two nodes
//     that both believe they own an actor cannot apply its messages out of
//     order.
//
// Concurrency: Wake, Rescan, InFlight and Close are safe for concurrent
// use. The dispatcher's state is guarded by one mutex; Workers goroutines
// deliver, one timer goroutine wakes actors whose backoff or delay ends,
// one scanner reads the store. One actor is processed by one worker at a
// time.
package messaging
