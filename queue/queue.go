package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Limits every Store enforces, so a message accepted by one backend is
// accepted by all of them.
const (
	// MaxIDLen is the longest message id, in bytes.
	MaxIDLen = 256
	// MaxNameLen is the longest reminder name, in bytes.
	MaxNameLen = 256
	// MaxActorLen is the longest actor key, in bytes: the journal's limit
	// (journal.MaxActorLen), repeated here so that queue imports nothing
	// but the standard library. queuetest checks that the two agree.
	MaxActorLen = 1024
)

// DefaultRetention is how long a store remembers the id of an
// acknowledged or purged message, unless it is configured otherwise: an
// Enqueue of that id within the retention is a duplicate, one after it is
// a new message.
const DefaultRetention = time.Hour

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrInvalid: the arguments are invalid (an empty or too long id or
	// actor, an empty method, a negative period...). Nothing changed.
	ErrInvalid = errors.New("queue: invalid argument")
	// ErrNotFound: the message is not pending in the actor's queue (it
	// was acknowledged, dead-lettered, purged, or never accepted), or the
	// reminder does not exist. Nothing changed.
	ErrNotFound = errors.New("queue: no such message")
	// ErrStale: the message's attempt count is not the one the caller
	// read: another delivery has already recorded its outcome. Nothing
	// changed.
	ErrStale = errors.New("queue: stale attempt count")
	// ErrNotHead: an ordered message was acknowledged while an ordered
	// message of the same actor with a lower Seq is still pending. The
	// journal's Append reports it wrapped in journal.ErrAck. Nothing
	// changed.
	ErrNotHead = errors.New("queue: an earlier ordered message is pending")
	// ErrKnownID: a message applied on acceptance (journal
	// KindMessageDirect) carries an id the store remembers: it was
	// accepted before. Nothing changed; Enqueue answers the first
	// acceptance.
	ErrKnownID = errors.New("queue: message id already known")
	// ErrClosed: the store has been closed. Nothing changed.
	ErrClosed = errors.New("queue: closed")
	// ErrCorrupt: a stored record failed its checksum or could not be
	// decoded.
	ErrCorrupt = errors.New("queue: corrupt record")
)

// Message is one durable one-way message to an actor method.
//
// The sender sets ID (a caller-chosen id, or one it generated), Actor,
// Method, Payload, Headers, CorrelationID, TraceParent, Ordered and
// DeliverAt. The store stamps Seq, AcceptedAt, Attempts, NextAt and
// LastError, ignoring what the sender put there.
type Message struct {
	ID            string            // unique in the store (its shard: see Store); 1..MaxIDLen bytes
	Actor         string            // the receiving actor's key, "type/id" (journal actor key)
	Method        string            // the method the message invokes; not empty
	Payload       []byte            // the method's encoded argument
	Headers       map[string]string // application headers, delivered as sent
	CorrelationID string            // correlation id of the send, kept for the delivery
	TraceParent   string            // W3C traceparent of the send, so the delivery links to it
	Ordered       bool              // fifo: delivered in order, a failure blocks the messages behind it
	DeliverAt     time.Time         // not delivered before this instant; zero: at once

	Seq        uint64    // position in the store's (shard's) acceptance order, or release order: see Store
	AcceptedAt time.Time // when the store accepted it
	Attempts   uint32    // failed deliveries so far
	NextAt     time.Time // not delivered before this instant (DeliverAt, or a retry's time)
	LastError  string    // the reason of the last failed delivery
}

// Accepted is the answer to Enqueue.
type Accepted struct {
	ID         string
	Seq        uint64
	AcceptedAt time.Time
	// Duplicate is true when the id had already been accepted: nothing
	// was stored, and Seq and AcceptedAt are those of the first
	// acceptance.
	Duplicate bool
	// Applied is true when the message was applied on acceptance (a
	// sender's node ran its turn at once and the turn's journal append
	// accepted it): it never waited in a queue, and its Seq is 0.
	Applied bool
}

// Failure is the outcome of a failed delivery, for Retry and DeadLetter.
type Failure struct {
	Actor    string
	ID       string
	Attempts uint32    // the message's Attempts as delivered, before this failure
	Reason   string    // what went wrong, kept as LastError
	At       time.Time // when the delivery failed
	RetryAt  time.Time // Retry only: when to deliver it again
}

// DeadLetter is a message that will not be delivered again unless it is
// replayed.
type DeadLetter struct {
	Message           // as it was when it died: Attempts and LastError say why
	DeadAt  time.Time // when it was dead-lettered
}

// Filter selects dead letters. Zero fields select everything; the fields
// that are set must all match.
type Filter struct {
	Type   string    // actor type: Actor starts with Type + "/"
	Actor  string    // exact actor key
	IDs    []string  // any of these message ids
	Before time.Time // dead-lettered before this instant (older than an age)
	Limit  int       // at most this many (0: no limit); the oldest first
}

// Reminder is a durable, named schedule of messages to one actor.
type Reminder struct {
	Actor   string        // the actor it belongs to and fires at
	Name    string        // unique per actor; 1..MaxNameLen bytes
	Method  string        // the method each firing invokes
	Payload []byte        // its argument
	Ordered bool          // the fired messages' mode
	DueAt   time.Time     // the next firing
	Period  time.Duration // 0: fire once, then delete the reminder
}

// Ready names an actor that has something to deliver or to release.
type Ready struct {
	Actor string
	At    time.Time // the earliest instant at which it has
}

// Stats describes the queues of one actor type.
type Stats struct {
	Type      string
	Pending   int       // messages in the queue (due or in backoff), not counting scheduled ones
	Scheduled int       // delayed messages not yet released
	Dead      int       // dead letters
	Reminders int       // registered reminders
	Oldest    time.Time // AcceptedAt of the oldest pending message; zero when none
}

// MergeStats sums lists of Stats (of disjoint sets of queues, such as
// shards) per type, the oldest message the earliest of them, sorted by
// type.
func MergeStats(lists ...[]Stats) []Stats {
	at := map[string]int{}
	var out []Stats
	for _, list := range lists {
		for _, st := range list {
			i, ok := at[st.Type]
			if !ok {
				at[st.Type], out = len(out), append(out, st)
				continue
			}
			sum := &out[i]
			sum.Pending += st.Pending
			sum.Scheduled += st.Scheduled
			sum.Dead += st.Dead
			sum.Reminders += st.Reminders
			if sum.Oldest.IsZero() || (!st.Oldest.IsZero() && st.Oldest.Before(sum.Oldest)) {
				sum.Oldest = st.Oldest
			}
		}
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Type, b.Type) })
	return out
}

// Store is a set of durable per-actor message queues, their dead letters
// and their reminders. It is always paired with the journal of the same
// actors (the same backend value implements journal.Journal): a message
// is acknowledged only by the journal append of the turn that processed
// it, so the ack and the state change commit together or not at all.
//
// # Acknowledgement and sends through the journal
//
// An entry of kind journal.KindMessageAck whose IdempotencyKey is a
// message id, in an Append to actor A, acknowledges that message: the
// append succeeds only if the message is pending in A's queue (not
// scheduled, dead, acknowledged or unknown) and, if it is ordered, no
// ordered message of A with a lower Seq is pending; otherwise the whole
// append fails with journal.ErrAck and nothing changes. On success the
// message leaves the queue in the same atomic step as the entries are
// stored, and its id is remembered as for a duplicate Enqueue.
//
// An entry of kind journal.KindMessageSend, whose Payload is a message
// encoded by MarshalMessage, enqueues that message in the same atomic
// step (an outbox): as Enqueue, a duplicate id is skipped. An entry whose
// Payload does not decode (UnmarshalMessage), is not a valid message
// (CheckMessage) or carries an ID other than the entry's IdempotencyKey
// fails the whole append with journal.ErrInvalid, and nothing changes.
//
// The queue rules are checked after the journal's own: an append that is
// fenced or conflicts fails with that error and acknowledges and sends
// nothing.
//
// # Order
//
// Seq orders acceptance across the store (a shard of it). A message whose DeliverAt is
// after its AcceptedAt is scheduled: it is not in its actor's queue until
// Release moves it there, giving it a new Seq, so a delayed message joins
// the end of the queue when it falls due.
//
// Ordered messages of one actor are delivered in Seq order: Due returns
// only the ordered message with the lowest Seq, and only once its NextAt
// has passed, so a failing ordered message blocks the ordered messages
// behind it until it is acknowledged or dead-lettered. Unordered messages
// are returned by Due as soon as their NextAt has passed, by NextAt then
// Seq, and a failing one does not hold back the others.
//
// # Shards
//
// A store may be split into shards, each actor in one (a Sharded store;
// Loom's embedded store with several Raft groups is). Each shard is then a
// store of its own as far as ids and order go: a message id is unique,
// and an Enqueue of a known id a duplicate, among the messages of the
// shard's actors; Seq orders acceptance within a shard. Everything the
// contract says of one actor holds unchanged. A message sent through an
// append (KindMessageSend) to an actor of another shard is first stored in
// the sender's shard, where a duplicate id is skipped, then moved to the
// receiver's, where it is accepted anew (a duplicate there is dropped);
// until it has moved it is not in its receiver's queue.
//
// # Contract
//
// Every method is safe for concurrent use. Writes are durable when they
// return nil (as durable as the paired journal). A method that returns an
// error other than the sentinels above may or may not have taken effect.
type Store interface {
	// Enqueue accepts msg. If the store holds msg.ID already (pending,
	// scheduled or dead, or acknowledged or purged less than the store's
	// retention ago), nothing is stored and the first acceptance is
	// returned with Duplicate set, whatever the new message says.
	// Otherwise the message is stored with the next Seq, AcceptedAt the
	// store's clock, Attempts 0 and NextAt = max(DeliverAt, AcceptedAt);
	// it is scheduled when DeliverAt is after AcceptedAt.
	Enqueue(ctx context.Context, msg Message) (Accepted, error)

	// Due returns up to max messages of actor that may be delivered at
	// now, in delivery order (see Order). It changes nothing: delivering
	// the same message twice is harmless, because only one
	// acknowledgement can succeed.
	Due(ctx context.Context, actor string, now time.Time, max int) ([]Message, error)

	// Release moves actor's scheduled messages whose DeliverAt is not
	// after now into its queue, in (DeliverAt, Seq) order, each with a new
	// Seq; and fires actor's reminders due by now: each enqueues one
	// message (id "reminder:" + actor + ":" + name + ":" + the due time's
	// UnixNano in decimal, the reminder's method, payload and mode), then
	// moves DueAt to its first instant after now that is a whole number of
	// periods later (however many periods were missed, one message), or
	// deletes a reminder of period 0. It returns how many messages
	// entered the queue.
	Release(ctx context.Context, actor string, now time.Time) (int, error)

	// Ready returns up to max actors that have a message due, a scheduled
	// message or a reminder at or before until, each with its earliest
	// such instant, earliest first. It changes nothing.
	Ready(ctx context.Context, until time.Time, max int) ([]Ready, error)

	// Retry records a failed delivery: the message's Attempts becomes
	// f.Attempts+1, LastError f.Reason and NextAt f.RetryAt. ErrNotFound
	// if it is not pending; ErrStale if its Attempts is not f.Attempts.
	Retry(ctx context.Context, f Failure) error

	// DeadLetter moves a pending message to the dead letters, with
	// Attempts f.Attempts+1, LastError f.Reason and DeadAt f.At.
	// ErrNotFound and ErrStale as for Retry.
	DeadLetter(ctx context.Context, f Failure) error

	// ListDead returns the dead letters f selects, oldest DeadAt first.
	ListDead(ctx context.Context, f Filter) ([]DeadLetter, error)

	// Replay moves the dead letters f selects back into their actors'
	// queues, each with a new Seq, Attempts 0, NextAt now and no
	// LastError, and returns how many it moved.
	Replay(ctx context.Context, f Filter, now time.Time) (int, error)

	// Purge deletes the dead letters f selects and returns how many. Their
	// ids are remembered as acknowledged ones are.
	Purge(ctx context.Context, f Filter) (int, error)

	// SetReminder stores r, replacing actor's reminder of the same name.
	SetReminder(ctx context.Context, r Reminder) error

	// DeleteReminder removes actor's reminder name; ErrNotFound if there
	// is none.
	DeleteReminder(ctx context.Context, actor, name string) error

	// Reminders returns actor's reminders by name.
	Reminders(ctx context.Context, actor string) ([]Reminder, error)

	// Stats returns the queues' figures per actor type that has any, by
	// type name.
	Stats(ctx context.Context) ([]Stats, error)

	// Close releases the store; see journal.Journal.Close (one Close
	// closes both faces of a backend).
	Close() error
}

// Sharded is a Store split into shards (see Store): Shard names the
// shard of an actor. A Store that does not implement it is one shard.
type Sharded interface {
	Shard(actor string) int
}

// Notifier is an optional capability of a Store: it calls fn (on a
// goroutine of its own, never while holding its locks) after a change
// gives actor something to deliver or release at or after at: an
// enqueue, a release, a retry, a replay, a reminder set. A replicated
// store calls it on every replica that applies the change. fn must not
// block.
type Notifier interface {
	Notify(fn func(actor string, at time.Time))
}
