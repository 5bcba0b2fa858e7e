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
	resp, err := m.s.send(m.s.sendContext(ctx, req), req)
	if err != nil {
		return nil, statusError(err)
	}
	return resp, nil
}

// streamSendContext is callContext for a send on a Stream (req.Send): its
// correlation id (the send's, else the entry's, else a new one) and the
// entry's trace context.
func (s *Server) streamSendContext(ctx context.Context, req *loompb.InvokeRequest) context.Context {
	cid := req.Send.CorrelationId
	if cid == "" {
		cid = req.CorrelationId
	}
	if cid == "" {
		cid = runtime.NewCorrelationID()
	}
	ctx = runtime.WithCorrelationID(ctx, cid)
	if len(req.Trace) > 0 && s.opts.Propagator != nil {
		ctx = s.opts.Propagator.Extract(ctx, propagation.MapCarrier(req.Trace))
	}
	return ctx
}

// send hands a message to the node's MessageHandler, as Messages.Send or
// as an entry of a Stream; ctx carries its correlation id and trace.
func (s *Server) send(ctx context.Context, req *loompb.SendRequest) (*loompb.SendResponse, error) {
	h := s.opts.Messages
	if h == nil {
		return nil, errNoMessages
	}
	e := runtime.Envelope{
		ActorType: req.ActorType, ActorID: req.ActorId, Method: req.Method, Payload: req.Payload,
		MessageID: req.MessageId, Headers: req.Headers, TraceParent: req.TraceParent,
	}
	if req.DeliverAtUnixNano != 0 {
		e.DeliverAt = time.Unix(0, req.DeliverAtUnixNano)
	}
	acc, err := h.Send(ctx, e)
	if err != nil {
		return nil, err
	}
	resp := &loompb.SendResponse{MessageId: acc.ID, Seq: acc.Seq, Duplicate: acc.Duplicate, Applied: acc.Applied}
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
	if !p.opts.Unary {
		return p.sendOnStream(ctx, pe, req)
	}
	sent := new(atomic.Bool)
	resp, err := loompb.NewMessagesClient(pe.conn).Send(context.WithValue(ctx, sentKey{}, sent), req)
	if err != nil {
		return queue.Accepted{}, p.rpcError(ctx, addr, err, sent.Load())
	}
	return accepted(resp), nil
}

// accepted is the acceptance a SendResponse says.
func accepted(resp *loompb.SendResponse) queue.Accepted {
	acc := queue.Accepted{ID: resp.MessageId, Seq: resp.Seq, Duplicate: resp.Duplicate, Applied: resp.Applied}
	if resp.AcceptedUnixNano != 0 {
		acc.AcceptedAt = time.Unix(0, resp.AcceptedUnixNano).UTC()
	}
	return acc
}

// sendOnStream sends req as an entry of one of the peer's call streams,
// as Invoke sends a call: same errors, the deadline as the time left, the
// trace context in the entry.
func (p *Pool) sendOnStream(ctx context.Context, pe *peer, req *loompb.SendRequest) (queue.Accepted, error) {
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "loom.Send "+req.ActorType+"."+req.Method, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String(attrCorrelationID, req.CorrelationId)))
		defer span.End()
	}
	ir := &loompb.InvokeRequest{Send: req}
	if d, ok := ctx.Deadline(); ok {
		ir.TimeoutNanos = max(int64(time.Until(d)), 1)
	}
	r := p.onStream(ctx, pe, ir)
	if r.err != nil {
		return queue.Accepted{}, r.err
	}
	if r.accepted == nil {
		return queue.Accepted{}, fmt.Errorf("%w: %s answered a send without its acceptance (a node that does not know sends on call streams?)", ErrUnknownOutcome, pe.addr)
	}
	return accepted(r.accepted), nil
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
