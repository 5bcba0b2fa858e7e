package transport

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// MessageHandler accepts durable messages (Messages.Send); a node and a
// runtime.Runtime implement it. The Server calls it from gRPC's
// goroutines, concurrently; ctx carries the caller's deadline,
// correlation id (always one) and trace context, from which a handler
// takes the message's traceparent when e.TraceParent is empty (as
// runtime.Options.TraceParent does). The returned error is sent through
// the error table, as ActorHandler's is: return the runtime's sentinels
// (wrapped).
type MessageHandler interface {
	Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error)
}

var _ MessageHandler = (*runtime.Runtime)(nil)

var errNoMessages = fmt.Errorf("%w: this node accepts no messages", runtime.ErrMessagingDisabled)

type messagesServer struct {
	loompb.UnimplementedMessagesServer
	s *Server
}

func (m messagesServer) Send(ctx context.Context, req *loompb.SendRequest) (*loompb.SendResponse, error) {
	h := m.s.opts.Messages
	if h == nil {
		return nil, statusError(errNoMessages)
	}
	ctx = m.s.sendContext(ctx, req)
	e := runtime.Envelope{
		ActorType: req.ActorType, ActorID: req.ActorId, Method: req.Method, Payload: req.Payload,
		MessageID: req.MessageId, Headers: req.Headers, TraceParent: req.TraceParent,
	}
	if req.DeliverAtUnixNano != 0 {
		e.DeliverAt = time.Unix(0, req.DeliverAtUnixNano)
	}
	acc, err := h.Send(ctx, e)
	if err != nil {
		return nil, statusError(err)
	}
	resp := &loompb.SendResponse{MessageId: acc.ID, Seq: acc.Seq, Duplicate: acc.Duplicate}
	if !acc.AcceptedAt.IsZero() {
		resp.AcceptedUnixNano = acc.AcceptedAt.UnixNano()
	}
	return resp, nil
}

// sendContext adds the send's correlation id and trace context to ctx, as
// callContext does for a call: the request's, else the metadata's; a send
// that came without a correlation id gets one here, where it enters the
// node.
func (s *Server) sendContext(ctx context.Context, req *loompb.SendRequest) context.Context {
	cid := req.CorrelationId
	if v := metadata.ValueFromIncomingContext(ctx, mdCorrelationID); cid == "" && len(v) > 0 {
		cid = v[0]
	}
	if cid == "" {
		cid = runtime.NewCorrelationID()
	}
	ctx = runtime.WithCorrelationID(ctx, cid)
	// otelgrpc extracted the metadata's trace context and started its span
	// before the correlation id was known: record it there, as Invoke does.
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(attribute.String(attrCorrelationID, cid))
	}
	if len(req.Trace) > 0 && s.opts.Propagator != nil {
		ctx = s.opts.Propagator.Extract(ctx, propagation.MapCarrier(req.Trace))
	}
	return ctx
}

// Send sends a durable one-way message through the node at addr
// (Messages.Send) and returns its acceptance, once the message is durable
// there. The correlation id travels in the request; the deadline and the
// trace context (in otelgrpc's metadata, as for InvokeUnary) are taken
// from ctx; e.TraceParent, when set, travels as is. Errors are decoded as
// InvokeUnary's: a refusal matches its sentinel (runtime.ErrUnknownType,
// ErrUnknownMethod, ErrPayloadTooLarge, ErrDeliverAtTooFar,
// ErrShuttingDown, ErrMessagingDisabled...); runtime.ErrUnavailable
// (without ErrUnknownOutcome) means not sent; ErrUnknownOutcome means the
// request was written and no answer came, so the message may or may not
// have been accepted. Sending it again with the same MessageID is then
// safe: the store accepts an id once (for as long as it remembers it, an
// hour by default) and answers a resend with the first acceptance,
// Duplicate set. Without a MessageID the node makes one, and a resend
// cannot be recognized: name a message to resend it.
func (p *Pool) Send(ctx context.Context, addr string, e runtime.Envelope) (queue.Accepted, error) {
	if err := ctx.Err(); err != nil {
		return queue.Accepted{}, &notSentError{err}
	}
	if len(e.Payload) > p.maxCallBytes {
		return queue.Accepted{}, fmt.Errorf("%w: %d bytes, the transport carries at most %d", runtime.ErrPayloadTooLarge, len(e.Payload), p.maxCallBytes)
	}
	pe, err := p.peer(addr)
	if err != nil {
		return queue.Accepted{}, err
	}
	req := &loompb.SendRequest{
		ActorType: e.ActorType, ActorId: e.ActorID, Method: e.Method, Payload: e.Payload,
		MessageId: e.MessageID, Headers: maps.Clone(e.Headers), TraceParent: e.TraceParent,
		CorrelationId: runtime.CorrelationID(ctx),
	}
	if !e.DeliverAt.IsZero() {
		req.DeliverAtUnixNano = deliverAtNanos(e.DeliverAt)
	}
	sent := new(atomic.Bool)
	resp, err := loompb.NewMessagesClient(pe.conn).Send(context.WithValue(ctx, sentKey{}, sent), req)
	if err != nil {
		return queue.Accepted{}, rpcError(ctx, addr, err, sent.Load())
	}
	acc := queue.Accepted{ID: resp.MessageId, Seq: resp.Seq, Duplicate: resp.Duplicate}
	if resp.AcceptedUnixNano != 0 {
		acc.AcceptedAt = time.Unix(0, resp.AcceptedUnixNano).UTC()
	}
	return acc, nil
}

// deliverAtNanos is t in Unix nanoseconds, clamped to what they can say
// (1678 to 2262; UnixNano is undefined outside): an instant before is as
// past as the first (delivered at once), one after as far as the last
// (beyond any horizon). Never 0, which means "at once" on the wire.
func deliverAtNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return -1 // the epoch itself: as past, and not "unset"
}
