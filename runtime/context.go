package runtime

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// Context is what an actor method receives: the caller's context (deadline,
// cancellation, values) plus the actor's identity and state. Calls the actor
// makes to other actors with this Context carry the same correlation id.
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
}

type turnCtx struct {
	context.Context
	act *activation
}

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

// WithIdempotencyKey returns a context carrying a caller-chosen idempotency
// key, recorded in the journal entry of the turn the call produces.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey, key)
}

// IdempotencyKey returns the idempotency key carried by ctx, or "".
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey).(string)
	return k
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
