// Package rabbitmq keeps Loom's durable messages in RabbitMQ (3.10 or
// later: quorum queues with message TTL and at-least-once dead-lettering),
// on github.com/rabbitmq/amqp091-go.
//
// # The contract
//
// With RabbitMQ the message lives in the broker, not in the journal, so
// exactly-once effect is reached in two halves:
//
//   - Publish returns only after the broker has confirmed the message
//     (publisher confirms; persistent; mandatory, so an unroutable message
//     is an error, never a silent drop). A Publish that returns nil is
//     stored in a quorum queue (replicated and fsynced by the broker). One
//     that fails says whether anything was sent: ErrUnavailable (no
//     connection: nothing sent) or ErrUnconfirmed (sent, outcome unknown).
//     The broker does not deduplicate ids: a message published twice is
//     delivered twice.
//   - Consume calls the Handler with each message. The node runs it as a
//     turn of its actor whose journal append records the message id; the
//     journal refuses an id it has applied, so a redelivery applies
//     nothing and the handler returns nil. The delivery is acknowledged
//     (manually) only after the handler returns nil (Class Done), so a
//     crash before that redelivers it: delivery is at least once, the
//     effect exactly once.
//
// # Topology (names under Options.Prefix, default "loom")
//
//	loom               direct exchange; keys "std", "fifo.N", "dead"
//	loom.std           quorum queue: unordered messages, every node consumes
//	loom.fifo.0..N-1   quorum queues, x-single-active-consumer: ordered actors
//	loom.dead          quorum queue: dead letters
//	loom.delay.<ms>ms  quorum queue + fanout exchange per rung of the delay
//	                   ladder: 100 ms, 200 ms, ... up to MaxDelay (1 h: 16 rungs)
//
// The work queues have x-delivery-limit (Options.DeliveryLimit) and
// dead-letter into loom.dead with x-dead-letter-strategy at-least-once
// (which needs, and has, x-overflow reject-publish): a message whose
// consumer keeps dying while it holds it (a crash loop) is moved to the
// dead letters by the broker, without loss. Declaring is idempotent; a
// Prefix declared before with other arguments (another DeliveryLimit,
// MaxDelay) makes Open fail with the broker's PRECONDITION_FAILED: use a
// new Prefix or delete the old queues.
//
// # Delays: the ladder
//
// RabbitMQ has no per-message schedule without a plugin, and a per-message
// TTL only expires at the head of a queue. So every rung queue has one
// TTL (x-message-ttl) and dead-letters, at-least-once, into the main
// exchange under the message's original routing key: its target queue. A
// message due in d is published to the longest rung not longer than d (or
// straight to its queue when d is under 100 ms). A consumer that receives
// it before its due time (header loom-next-at) sends it down the ladder
// again for what remains (confirmed, then acks it), or, when less than
// 100 ms remain, holds it until then. A delay of d takes about log2(d/100
// ms) hops below MaxDelay, plus one hop per MaxDelay above it. A hop
// passes through the message's own queue, so a delayed ordered message
// whose fifo queue is blocked by a failing message is late by as much. A message
// is never delivered before its time; it may be late by the broker's TTL
// sweep and a hop's round trip (tens of ms here). Publish with DeliverAt
// and the retries of unordered messages use the same ladder.
//
// # Order and retries, per mode
//
// Unordered (Message.Ordered false): one shared queue, consumed by every
// node with Options.Prefetch deliveries in hand at once (and as many
// handlers running). No order is promised. A Failed delivery is published
// again (confirmed) onto the ladder with its attempts, error and next time
// in headers, and only then acked, so it never blocks other messages;
// after Policy.MaxRetries retries it is published to the dead letters
// (confirmed) with its error, attempts and times, then acked.
//
// Ordered (Message.Ordered true): the actor key is hashed (FNV-1a) onto
// one of Options.FIFOQueues queues with a single active consumer: in the
// whole cluster one consumer, prefetch 1, takes one message at a time from
// each. Messages of one actor are delivered in the order the broker
// enqueued them: for one sender, the order of its Publish calls when each
// returned before the next began; a delayed message joins the end of its
// queue when it falls due. A Failed delivery is retried in place: held
// unacked, with backoff in process, so it blocks the messages behind it,
// including those of the other actors hashed onto the same queue, until
// it succeeds or is dead-lettered. Its attempts are counted as the
// attempts in its headers, plus the queue's x-delivery-count (deliveries
// lost with a consumer), plus the local tries; local tries are lost if the
// holder dies (the count restarts from the delivery count). Keep in-place
// backoff well under the broker's consumer_timeout (30 min by default).
//
// In both modes Permanent dead-letters at once with its reason, and
// Unavailable (not an attempt) delivers again after
// Options.UnavailableRetry: in place for ordered messages, through the
// ladder for the others. Handler sees Message.Attempts as the failed
// deliveries so far.
//
// # Duplicates
//
// A message can be delivered more than once: after a crash or a lost
// connection before its ack; when a retry or dead letter was confirmed
// but the ack of the original was lost; when the broker re-dead-letters
// at least once. The journal's id record makes each harmless; a dead
// letter may exist next to its successful redelivery.
//
// # Dead letters
//
// ListDead, Replay and Purge read loom.dead with basic.get and manual
// acks on one channel: every message is taken (held unacked, in memory),
// the selected ones are settled (Replay publishes a copy, confirmed, with
// attempts reset, then acks; Purge acks), and the others go back with one
// nack-requeue. This is O(n) in the queue's size whatever the filter, and
// while a scan runs the held messages are invisible to another scan;
// a Broker runs one scan at a time. Messages the broker dead-lettered
// itself (delivery limit) carry no loom-dead-at; their DeadAt and reason
// come from x-death (second resolution).
//
// # Connection
//
// One connection per Broker: four confirm channels for publishing (up to
// 256 publishes awaiting a confirm each), one channel per consumer. When
// it is lost, Publish fails with ErrUnavailable at once; a Publish that was
// waiting for its confirm fails with ErrUnconfirmed; deliveries in hand
// are cancelled and left to the broker to redeliver. A supervisor
// reconnects with backoff (ReconnectMin doubling to ReconnectMax, ±20 %),
// declares the topology again and resumes the consumers. The URL's
// password never appears in a log line or an error.
//
// # Concurrency
//
// Every method is safe for concurrent use. The Broker's mutex owns the
// current session, the handler and the in-flight count; each session's
// state is owned by its connection; the supervisor goroutine alone
// replaces sessions. Close stops everything and waits.
//
// # What the broker cannot tell
//
// Stats gives each queue's ready messages and consumers (passive
// declares). Messages delivered but unacknowledged cluster-wide, and any
// per-actor-type count, are not knowable over AMQP without reading the
// messages (or the management plugin); InFlight is this node's own.
package rabbitmq
