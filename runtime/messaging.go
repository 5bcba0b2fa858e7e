package runtime

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// Durable messages. Besides Call (request/response), a caller can Send a
// one-way message to an actor method: the message is stored durably in the
// actor's queue (Options.Messages) before Send returns, then delivered as a
// turn of the actor, at least once, by the node that owns the actor (see
// package messaging). The turn that processes a message acknowledges it in
// its own journal append (a journal.KindMessageAck entry), so the message
// takes effect exactly once even when it is delivered twice.
//
// Messages an actor sends during a turn (Context.Messages) form the turn's
// outbox: they are enqueued by the turn's journal append
// (journal.KindMessageSend entries), so they are sent if and only if the
// turn commits. Their ids are derived from the message or idempotency key
// the turn runs under, so a turn that runs again after a crash sends the
// same ids, which the store accepts once.

var (
	// ErrMessageSettled: the message this delivery carried is no longer
	// pending (another delivery acknowledged it, or it was dead-lettered
	// or replayed). The turn was not applied.
	ErrMessageSettled = errors.New("loom: message already settled")
	// ErrMessagingDisabled: the node has no message store. Not sent.
	ErrMessagingDisabled = errors.New("loom: durable messaging not enabled")
	// ErrDeliverAtTooFar: the message's delivery time is beyond the
	// node's horizon (Options.MaxDelay). Not sent. Wraps
	// ErrInvalidArgument.
	ErrDeliverAtTooFar = fmt.Errorf("%w: delivery time beyond the horizon", ErrInvalidArgument)
)

// Sender accepts one-way messages to actors. A node, the cluster client and
// an actor's Context.Messages implement it; typed sends (Method.Send) go
// through it.
type Sender interface {
	// Send makes the message durable and returns its acceptance. From a
	// turn (Context.Messages) the message is accepted when the turn
	// commits, and the Accepted carries only its ID.
	Send(ctx context.Context, e Envelope) (queue.Accepted, error)
}

// Envelope is a message as a sender hands it over.
type Envelope struct {
	ActorType, ActorID, Method string
	Payload                    []byte
	// MessageID names the message; "" generates one. A second send with
	// the id of a message the store remembers is accepted once.
	MessageID string
	// Headers travel with the message to its turn (MessageHeaders).
	Headers map[string]string
	// DeliverAt delays delivery until this instant; zero or past: at once.
	DeliverAt time.Time
	// TraceParent is the W3C traceparent the delivery's span links to;
	// "" takes it from ctx (Options.TraceParent).
	TraceParent string
}

// SendOption adjusts a typed send (Method.Send).
type SendOption func(*Envelope)

// WithMessageID names the message; see Envelope.MessageID.
func WithMessageID(id string) SendOption { return func(e *Envelope) { e.MessageID = id } }

// WithDeliverAt delays the message until t.
func WithDeliverAt(t time.Time) SendOption { return func(e *Envelope) { e.DeliverAt = t } }

// WithDelay delays the message by d from now.
func WithDelay(d time.Duration) SendOption {
	return func(e *Envelope) { e.DeliverAt = time.Now().Add(d) }
}

// WithHeaders attaches headers to the message.
func WithHeaders(h map[string]string) SendOption {
	return func(e *Envelope) { e.Headers = maps.Clone(h) }
}

// Send sends in to the method of actor id as a durable one-way message
// through s: a node, the cluster client or an actor's Context.Messages.
// The method's result, if any, is dropped.
func (m Method[In, Out]) Send(ctx context.Context, s Sender, id string, in In, opts ...SendOption) (queue.Accepted, error) {
	payload, err := m.in.encode(in)
	if err != nil {
		return queue.Accepted{}, fmt.Errorf("%w: encoding argument of %s.%s: %v", ErrBadPayload, m.actorType, m.name, err)
	}
	e := Envelope{ActorType: m.actorType, ActorID: id, Method: m.name, Payload: payload}
	for _, o := range opts {
		o(&e)
	}
	return s.Send(ctx, e)
}

// Send is Method.Send for a method without an argument.
func (m Method0[Out]) Send(ctx context.Context, s Sender, id string, opts ...SendOption) (queue.Accepted, error) {
	e := Envelope{ActorType: m.m.actorType, ActorID: id, Method: m.m.name}
	for _, o := range opts {
		o(&e)
	}
	return s.Send(ctx, e)
}

type deliveryKeyType struct{}

var deliveryKey deliveryKeyType

// delivery is what a delivering call carries.
type delivery struct {
	id       string
	attempts uint32
	headers  map[string]string
	// direct: the turn records id as applied (a journal KindMessageDirect
	// entry) instead of acknowledging a queued message: a message applied
	// on acceptance (Options.DirectMessages), or one kept in a broker
	// (WithExternalDelivery).
	direct bool
}

// WithDelivery returns a context under which a call delivers the durable
// message id (the dispatcher and the transports use it): the turn's
// journal append acknowledges the message, and fails with
// ErrMessageSettled if it is no longer pending. attempts is the number of
// failed deliveries before this one; headers are the message's.
func WithDelivery(ctx context.Context, id string, attempts uint32, headers map[string]string) context.Context {
	return context.WithValue(ctx, deliveryKey, delivery{id: id, attempts: attempts, headers: headers})
}

// WithExternalDelivery is WithDelivery for a message kept outside the
// journal's store, in a broker that redelivers it until told it is done:
// the turn's journal append records the id as applied (a
// journal.KindMessageDirect entry carrying the turn's changes) instead of
// acknowledging a queued message, and the call fails with
// ErrMessageSettled, applying nothing, if the store already knows the id
// (the message was applied before, and the store remembers it for its
// retention). The call travels to the actor's owner like any other.
func WithExternalDelivery(ctx context.Context, id string, attempts uint32, headers map[string]string) context.Context {
	return context.WithValue(ctx, deliveryKey, delivery{id: id, attempts: attempts, headers: headers, direct: true})
}

// DeliveryExternal reports whether ctx delivers a message kept outside
// the journal's store (WithExternalDelivery).
func DeliveryExternal(ctx context.Context) bool {
	d := deliveryOf(ctx)
	return d.id != "" && d.direct
}

// DeliveryID returns the id of the message ctx delivers, or "".
func DeliveryID(ctx context.Context) string { return deliveryOf(ctx).id }

// DeliveryAttempts returns the failed deliveries of ctx's message before
// this one (0 on the first delivery, and outside a delivery).
func DeliveryAttempts(ctx context.Context) uint32 { return deliveryOf(ctx).attempts }

// MessageHeaders returns the headers of the message ctx delivers (nil
// outside a delivery). Inside a turn, pass the turn's Context.
func MessageHeaders(ctx context.Context) map[string]string {
	return deliveryOf(ctx).headers
}

// deliveryOf returns what ctx delivers. A turn's Context hides its
// delivery from the calls it makes, not from the turn itself.
func deliveryOf(ctx context.Context) delivery {
	if tc, ok := ctx.(*turnCtx); ok {
		ctx = tc.Context
	}
	d, _ := ctx.Value(deliveryKey).(delivery)
	return d
}

// NewMessageID returns a new message id: 32 hex digits, of which the
// first 12 are the current Unix time in milliseconds and the other 20
// random (80 bits). Ids made later sort after those made in an earlier
// millisecond, so a store's index of ids (a B+tree in the embedded stores)
// takes new ones at its end instead of on a random page each: in a three-node
// cluster that made accepted messages about 40% faster. The time says when
// the id was made, not when the message was accepted: use it only to sort.
func NewMessageID() string { return newMessageID(time.Now()) }

func newMessageID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16) // 48 bits of milliseconds, then 2 bytes overwritten below
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// Send implements Sender for callers outside actors: it checks the
// envelope (the type and method must be registered here) and enqueues the
// message in Options.Messages, or hands it to Options.Publish.
func (r *Runtime) Send(ctx context.Context, e Envelope) (queue.Accepted, error) {
	if r.closing.Load() {
		return queue.Accepted{}, fmt.Errorf("%w: send to %s/%s", ErrShuttingDown, e.ActorType, e.ActorID)
	}
	msg, err := r.message(ctx, e, "")
	if err != nil {
		return queue.Accepted{}, err
	}
	if acc, ok := r.sendDirect(ctx, msg); ok {
		return acc, nil
	}
	enqueue := r.opts.Messages.Enqueue
	if r.opts.Publish != nil {
		enqueue = r.opts.Publish
	}
	acc, err := enqueue(ctx, msg)
	if err != nil {
		return queue.Accepted{}, fmt.Errorf("loom: sending %s to %s: %w", e.Method, msg.Actor, sendError(err))
	}
	return acc, nil
}

// sendDirect applies msg on acceptance (Options.DirectMessages) when this
// node hosts or owns its actor and it is due now: it runs as a turn of the
// actor, accepted by that turn's append. ok is false when it was not
// applied, for whatever reason (the actor is elsewhere, the journal
// refused because an earlier ordered message is pending or the id is
// known, the handler failed, the outcome is unknown): the caller then
// enqueues it, which answers a duplicate if the turn did commit after all.
// The failed try is not one of the message's delivery attempts.
func (r *Runtime) sendDirect(ctx context.Context, msg queue.Message) (queue.Accepted, bool) {
	if !r.opts.DirectMessages || (!msg.DeliverAt.IsZero() && msg.DeliverAt.After(r.now())) {
		return queue.Accepted{}, false
	}
	if chainOf(ctx) != nil {
		// Sent from inside a turn (not through its outbox): the turn
		// might be waiting on this very actor.
		return queue.Accepted{}, false
	}
	typ, id, _ := strings.Cut(msg.Actor, "/")
	reg, md, err := r.lookup(typ, msg.Method)
	if err != nil {
		return queue.Accepted{}, false
	}
	local, _, a := r.placeFor(reg, id, 0)
	if !local {
		return queue.Accepted{}, false
	}
	in, err := md.decode(msg.Payload)
	if err != nil {
		return queue.Accepted{}, false // the dispatcher dead-letters it
	}
	// The turn runs under the message's id, never a call's idempotency
	// key: its entry carries the message id in that field.
	dctx := context.WithValue(ctx, deliveryKey, delivery{id: msg.ID, headers: msg.Headers, direct: true})
	if msg.CorrelationID != "" {
		dctx = WithCorrelationID(dctx, msg.CorrelationID)
	}
	if _, err := r.run(dctx, reg, a, id, msg.Method, 0, nil, func(tc *turnCtx) (any, error) {
		return md.call(tc, tc.act.inst, in)
	}); err != nil {
		return queue.Accepted{}, false
	}
	return queue.Accepted{ID: msg.ID, AcceptedAt: r.now().UTC(), Applied: true}, true
}

// sendError maps the store's sentinels to the runtime's.
func sendError(err error) error {
	switch {
	case errors.Is(err, queue.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	case errors.Is(err, queue.ErrClosed):
		return fmt.Errorf("%w: %w", ErrShuttingDown, err)
	}
	return err
}

// message checks e and builds the message it describes. id is the id to
// use when e has none ("" generates one).
func (r *Runtime) message(ctx context.Context, e Envelope, id string) (queue.Message, error) {
	if r.opts.Messages == nil {
		return queue.Message{}, ErrMessagingDisabled
	}
	if err := validID(e.ActorID); err != nil {
		return queue.Message{}, err
	}
	if _, _, err := r.lookup(e.ActorType, e.Method); err != nil {
		return queue.Message{}, err
	}
	if max := r.opts.MaxPayloadBytes; max > 0 && len(e.Payload) > max {
		return queue.Message{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, len(e.Payload), max)
	}
	if h := r.opts.MaxDelay; h > 0 && e.DeliverAt.After(r.now().Add(h)) {
		return queue.Message{}, fmt.Errorf("%w: %s is more than %v ahead", ErrDeliverAtTooFar, e.DeliverAt.UTC().Format(time.RFC3339Nano), h)
	}
	switch {
	case e.MessageID != "":
		id = e.MessageID
	case id == "":
		id = NewMessageID()
	}
	if len(id) > queue.MaxIDLen {
		return queue.Message{}, fmt.Errorf("%w: message id of %d bytes exceeds %d", ErrInvalidArgument, len(id), queue.MaxIDLen)
	}
	cid := CorrelationID(ctx)
	if cid == "" {
		cid = NewCorrelationID()
	}
	tp := e.TraceParent
	if tp == "" && r.opts.TraceParent != nil {
		tp = r.opts.TraceParent(ctx)
	}
	ordered := true
	if r.opts.MessageOrdered != nil {
		ordered = r.opts.MessageOrdered(e.ActorType)
	}
	return queue.Message{
		ID:            id,
		Actor:         e.ActorType + "/" + e.ActorID,
		Method:        e.Method,
		Payload:       e.Payload,
		Headers:       maps.Clone(e.Headers),
		CorrelationID: cid,
		TraceParent:   tp,
		Ordered:       ordered,
		DeliverAt:     e.DeliverAt,
	}, nil
}

// outbox is an actor's Context.Messages: sends buffered in the turn's
// state, enqueued by its append.
type outbox struct{ tc *turnCtx }

// Send implements Sender: it checks e and adds the message to the turn's
// outbox. The message is accepted when the turn commits, and dropped if the
// turn fails; the Accepted carries only its ID.
func (o outbox) Send(ctx context.Context, e Envelope) (queue.Accepted, error) {
	tc := o.tc
	st := tc.act.state
	msg, err := tc.act.pool.r.message(tc, e, tc.outboxID(len(st.outbox)+1))
	if err != nil {
		return queue.Accepted{}, err
	}
	st.outbox = append(st.outbox, msg)
	return queue.Accepted{ID: msg.ID}, nil
}

// outboxID is the id of the turn's n-th send when its sender names none:
// derived from the message or idempotency key the turn runs under, so that
// running the turn again sends the same ids; random otherwise.
func (c *turnCtx) outboxID(n int) string {
	var base string
	if id := DeliveryID(c.Context); id != "" {
		base = "m:" + id
	} else if key := IdempotencyKey(c.Context); key != "" {
		base = "k:" + c.act.key + ":" + key
	} else {
		return ""
	}
	id := base + ":" + strconv.Itoa(n)
	if len(id) > queue.MaxIDLen {
		return "" // too long to derive: a random one
	}
	return id
}

// messageEntries returns the entries that acknowledge the turn's message and
// enqueue its outbox. (A message applied on acceptance is accepted by the
// turn's own entry, KindMessageDirect: see appendTurn.)
func (s *State) messageEntries(method string, at time.Time, cid, traceID string) []journal.Entry {
	var es []journal.Entry
	if s.ack != "" {
		es = append(es, journal.Entry{Kind: journal.KindMessageAck, Method: method, Time: at, CorrelationID: cid, TraceID: traceID, IdempotencyKey: s.ack})
	}
	for _, m := range s.outbox {
		es = append(es, journal.Entry{Kind: journal.KindMessageSend, Method: m.Method, Time: at, CorrelationID: m.CorrelationID, TraceID: traceID, IdempotencyKey: m.ID, Payload: queue.MarshalMessage(m)})
	}
	return es
}
