// Package runtime hosts Loom's actors on one node. An actor type is built
// with NewType and typed AddMethod calls and registered on a Runtime
// (Register adds all the types given or none). A Runtime activates an actor
// (type, id) on its first call, runs its calls one turn at a time, commits
// each turn's State changes to the journal, and deactivates it when idle,
// evicted, handed off or shut down. Invoke takes and returns encoded bytes
// (Invoker); InvokeLocal, which Method.Call prefers, passes values without
// encoding or copying them; Execute runs a closure as a turn of a local
// actor.
//
// Arguments and results are encoded per Go type: protobuf binary when the
// type is a generated message (a pointer implementing proto.Message), JSON
// otherwise, with github.com/segmentio/encoding/json, a drop-in replacement
// for encoding/json (same API and struct tags); input it cannot decode is
// decoded again by encoding/json, whose error (naming the JSON type that did
// not fit) is the one returned. An empty JSON payload decodes as the zero
// value. GetState and SetState store JSON values too.
//
// # Guarantees
//
//   - One activation per actor per Runtime. It holds the actor's lock (key
//     "type/id", taken through Options.Coordinator under the node's
//     Session), so no other node activates it meanwhile; a node still
//     running it after losing the lock cannot commit over a newer holder:
//     the journal fences it.
//   - One turn at a time per actor, in arrival order: the mailbox is a
//     channel of capacity one. A caller waiting in it whose context ends
//     gives up, and its call never runs. Different actors run in parallel;
//     a turn runs on its caller's goroutine.
//   - Activation takes the lock (and its fencing token), loads the
//     snapshot, replays the journal entries after it in order and checks
//     the tail: written under a higher token, ErrFenced; a gap, or a tail
//     past the replay, journal.ErrCorrupt. Then the factory builds the
//     instance (its fields are not persisted) and OnActivate runs; its
//     State writes, if any, are committed as one KindStateOp entry. On any
//     failure the activation is discarded and the caller gets the error; a
//     lock held by another session (or an expired session) gives
//     ErrUnavailable wrapping the lock's error (*lock.HeldError).
//   - Commit before answer: State writes are buffered, visible to the
//     turn's own reads. A turn that changed something is appended as ONE
//     journal entry (KindInvocation: method, changes, time, correlation id,
//     idempotency key) with the activation's fencing token (Context.Token),
//     expecting the tail it has applied; only after the append returned
//     are the changes applied in memory and the caller answered. A turn
//     that changed nothing writes nothing.
//   - A failed turn changes nothing. A method error discards its writes
//     and returns a *MethodError; the actor stays active. A panic discards
//     them, returns ErrActorPanic (the stack goes to the log) and
//     deactivates the actor. A failed append discards them, deactivates the
//     actor and returns the journal's error (ErrFenced, ErrConflict: not
//     applied; others: outcome unknown, as the journal contract says); the
//     next call replays the journal. A result that cannot be encoded fails
//     the call after its turn was committed.
//   - Durable messages (messaging.go): a call under WithDelivery delivers
//     a message; its turn's append carries a KindMessageAck entry, so the
//     acknowledgement commits with the state change or not at all, and an
//     append refused because the message is no longer pending fails with
//     ErrMessageSettled, leaving the activation as it was. Sends made in
//     a turn (Context.Messages) ride in the same append as
//     KindMessageSend entries: sent if and only if the turn commits.
//     With Options.DirectMessages, Send applies a message to an actor this
//     node hosts or owns on acceptance: its turn's append is one
//     KindMessageDirect entry (the turn's changes under the message id),
//     which the journal refuses when the id is known or an ordered message
//     is pending; Send then enqueues it. Replay reads that entry as an
//     invocation. A call under WithExternalDelivery delivers a message kept
//     in a broker the same way: one KindMessageDirect entry; a known id
//     fails with ErrMessageSettled (applied before: the broker may drop
//     it), a pending ordered message with ErrUnavailable (try again).
//     Reminders (Context.Reminders) are written to the store at once.
//   - Snapshots: with SnapshotEvery n > 0, the commit that leaves n entries
//     after the last snapshot saves the whole state as a snapshot and
//     truncates the journal through it, both with the token. Failures are
//     logged; the turn stands; the next commit tries again.
//   - Session: an activation requires Session.Valid; a turn requires it and
//     the session the lock was taken under. Otherwise the call fails with
//     ErrUnavailable (a turn's actor is first deactivated, without hook or
//     lock release). DropAll, which the node calls when its session may
//     have lapsed, discards every activation at once, without hooks or
//     releases; a running turn that then reaches its commit fails with
//     ErrUnavailable (one that changed nothing still answers).
//
// # Pools and deactivation
//
// Each type has a pool (PoolConfig from Options.Pool; DefaultPoolConfig is
// 10,000 activations, 5 minutes idle, LRU). MaxSize is exact: at it,
// EvictLRU deactivates the least recently used actor (after its running
// turn) and EvictReject fails with ErrPoolFull. A pool of 64 or more
// evicts a batch at once, the least recently used 1 in 32 of MaxSize (at
// most 512), side by side. A sweeper, every IdleCheckInterval (default
// 1 s), deactivates actors whose last turn is IdleTimeout old by
// Options.Now, skipping busy ones. A clean deactivation (idle, evicted,
// Deactivate, Rebalance, Close) waits for the running turn, runs
// OnDeactivate with read-only State and a 10 s context (its error is
// logged), releases the lock (not on Close: ending the session frees them
// all) and only then removes the actor, so no new activation can take the
// lock before the old one released it. An evicted actor's lock is kept
// instead (kept.go): the actor activates again under it, without a grant,
// while the node's session lasts; calls that other nodes route to it are
// forwarded here, as to any holder; Rebalance releases the kept locks of
// actors the ring places elsewhere, and a pool keeps at most 10 per slot
// of MaxSize, releasing the oldest beyond. A call that waited on the old one
// activates the actor anew from the journal. Close fails new and queued
// calls with ErrShuttingDown, lets running turns finish, deactivates every
// actor, and closes neither the journal nor the coordinator.
//
// # Routing
//
// A nil Options.Router makes every actor local. Otherwise the lock holder
// is the truth and the ring (Router.Owner) a hint: an actor active here is
// served here; a new call (Hops 0) goes to the ring's owner unless that is
// this node or unknown; a forwarded call, or one this node owns, activates
// here, and is forwarded to the holder if another node holds the lock.
// Each forward adds one to Call.Hops; a call that already made MaxHops
// fails with ErrTooManyHops (wraps ErrUnavailable). Execute never forwards
// (ErrNotLocal). Rebalance hands off the actors the ring places elsewhere.
//
// # Actors calling actors, contracts and call chains
//
// A method calls another actor through its Context: a Method's Call with
// ctx.Actors() as the Invoker, which reaches the actor wherever it lives
// (the Runtime routes it as any call). The child call carries the turn's
// correlation id, trace (the turn's span is its parent) and deadline, not
// the caller's idempotency key. A Contract declares a type's name and
// methods (Declare, Declare0 for methods without argument) apart from its
// implementation, so a client imports the contract alone; Implement, Bind
// and Bind0 implement it, and Register refuses a type that leaves a
// declared method unbound or binds one declared elsewhere or with other
// types. A Ref names an actor (type and id) and serializes as JSON or as
// "type/id".
//
// Every call carries its call chain: the actors, outermost first, whose
// turns wait for it (CallChain; transports carry it between nodes). A turn
// holds its actor's mailbox until it ends, so a call into an actor already
// in its own chain (A → B → A) could only wait for its deadline: it fails
// at once with ErrCallCycle, naming the cycle. A chain longer than
// Options.MaxCallDepth (DefaultMaxCallDepth, 32) fails with
// ErrCallChainTooDeep. Neither is applied.
//
// A type marked reentrant (Type.Reentrant, PoolConfig.Reentrant) lets a
// call from a running turn's own chain interleave with that turn instead
// of failing as a cycle; reentrant.go says exactly what that does to the
// one-turn-at-a-time guarantee and to commits.
//
// # Idempotency keys, backpressure and timers
//
// A call with an idempotency key (WithIdempotencyKey) runs at most once per
// actor: the key and the call's outcome are written in the turn's journal
// append, and a repeat is answered from that record, across crashes and
// failovers, within each actor's window (PoolConfig.IdempotencyKeys and
// IdempotencyRetention); a repeat that may have been forgotten fails with
// ErrIdempotencyKeyExpired rather than run twice (idempotency.go). At most
// PoolConfig.MaxQueue calls wait for one actor's turn, and optionally
// RateLimit bounds the calls a node serves to a type; beyond either, a
// call fails at once with ErrOverloaded. MaxActivating bounds the
// activations of a type in progress at once. Context.SetTimer runs a
// function as a turn of the actor while it is active (timers.go).
//
// # Errors
//
// Callers branch on the sentinels of errors.go with errors.Is; the
// journal's and lock's errors and ctx.Err() come wrapped. Not applied:
// ErrUnknownType, ErrUnknownMethod, ErrBadPayload for an argument,
// ErrPayloadTooLarge (Options.MaxPayloadBytes), ErrInvalidID (empty or over
// 1024 bytes), ErrPoolFull, ErrShuttingDown, ErrNotLocal, ErrUnavailable
// (retryable), ErrOverloaded (retry later), ErrFenced, ErrConflict,
// ErrActorPanic, ErrCallCycle, ErrCallChainTooDeep,
// ErrIdempotencyKeyInvalid, ErrIdempotencyKeyReused, and *MethodError,
// through which errors.Is and errors.As see the method's own error (wrap
// ErrInvalidArgument for refused values). A result the caller's side
// cannot decode is ErrBadPayload too, after the turn ran.
// ErrIdempotencyKeyExpired: this call was not applied, but an earlier one
// with the same key may have been.
//
// # Observer, goroutines and locking
//
// Options.Observer is called synchronously on the goroutine doing the work
// (StartCall, StartTurn, StartActivation, Deactivated with a Deactivation*
// reason); each Start's function is called once with the outcome. New
// starts one goroutine, the idle sweeper, which Close stops and waits for;
// all other work, hooks included, runs on a caller's goroutine or the
// sweeper's. A pool's map is sharded under RWMutexes; an activation's
// instance and State are guarded by its mailbox, so State and Context are
// valid only inside a turn. Runtime's methods are safe for concurrent use.
package runtime
