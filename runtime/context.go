package runtime

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// Context is what an actor method receives: the caller's context (deadline,
// cancellation, values) plus the actor's identity and state. Calls the actor
// makes to other actors with this Context, through Actors, carry the same
// correlation id, the trace (the turn's span is their parent), what is left
// of the deadline, and the call chain with this actor appended (see
// CallChain); not the caller's idempotency key, which names this call only.
//
// A Context is valid only during the turn it was made for.
type Context interface {
	context.Context
	// ActorType is the actor's type name.
	ActorType() string
	// ActorID is the actor's id.
	ActorID() string
	// State is the actor's durable key-value state.
	State() *State
	// CorrelationID is the id of the call chain this turn belongs to.
	CorrelationID() string
	// Token is the fencing token this activation writes under.
	Token() uint64
	// Actors calls other actors, wherever they live in the cluster:
	// pass it, with this Context, to a Method's Call
	// (Reserve.Call(ctx, ctx.Actors(), "stock-7", req)). A call back
	// into an actor already waiting in this call chain fails at once with
	// ErrCallCycle.
	Actors() Invoker
	// Messages sends durable one-way messages (Method.Send(ctx,
	// ctx.Messages(), id, arg)). They form the turn's outbox: enqueued by
	// the turn's own journal append, so sent if and only if the turn
	// commits (see Sender).
	Messages() Sender
	// Reminders registers, lists and removes this actor's durable
	// reminders (see Reminders).
	Reminders() Reminders
	// Self is this actor's reference.
	Self() Ref
	// SetTimer starts, or replaces, this activation's timer called name:
	// fn runs as a turn of this actor after due, then every period (0:
	// once). Timers are in memory: they stop when the actor is
	// deactivated and never keep it active (see timers.go).
	SetTimer(name string, due, period time.Duration, fn func(ctx Context) error)
	// CancelTimer stops the timer called name, if it is set.
	CancelTimer(name string)
}

type turnCtx struct {
	context.Context
	act  *activation
	link chainLink // the call chain of calls made from this turn
}

func newTurnCtx(ctx context.Context, a *activation) *turnCtx {
	tc := &turnCtx{Context: ctx, act: a}
	tc.link = chainLink{typ: a.typ.name, id: a.id, depth: 1}
	if p := chainOf(ctx); p != nil {
		tc.link.parent, tc.link.depth = p, p.depth+1
	}
	return tc
}

// Value adds the turn's call chain to the caller's context's values.
func (c *turnCtx) Value(key any) any {
	if key == any(chainKey) {
		return &c.link
	}
	if key == any(deliveryKey) {
		// So is a delivery: the calls the turn makes deliver nothing.
		return nil
	}
	if key == idempotencyKey {
		// A key names the call that started this turn; the calls the
		// turn makes are new calls, with keys of their own if any.
		return nil
	}
	return c.Context.Value(key)
}

func (c *turnCtx) Actors() Invoker  { return c.act.pool.r }
func (c *turnCtx) Messages() Sender { return outbox{c} }
func (c *turnCtx) Self() Ref        { return Ref{Type: c.act.typ.name, ID: c.act.id} }

func (c *turnCtx) ActorType() string     { return c.act.typ.name }
func (c *turnCtx) ActorID() string       { return c.act.id }
func (c *turnCtx) State() *State         { return c.act.state }
func (c *turnCtx) CorrelationID() string { return CorrelationID(c.Context) }
func (c *turnCtx) Token() uint64         { return c.act.token }

type ctxKey int

const (
	correlationKey ctxKey = iota
	idempotencyKey
)

// WithCorrelationID returns a context carrying a correlation id. Calls made
// with it (and every call an actor makes while handling them) carry the id,
// and it is recorded in the journal entries they produce.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation id carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}

// NewCorrelationID returns a random 128-bit id in hex. It uses
// math/rand/v2's per-thread generator (ChaCha8, seeded by the OS), fast
// enough to give every call an id.
func NewCorrelationID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
