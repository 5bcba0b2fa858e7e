package transport

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// MessageHandler accepts durable messages (Messages.Send); a node
// implements it. The Server calls it from gRPC's goroutines, concurrently;
// ctx carries the caller's deadline, correlation id and trace context.
type MessageHandler interface {
	Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error)
}

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
	// otelgrpc extracted the trace context and started its span before
	// the correlation id was known: record it there, as Invoke does.
	if v := metadata.ValueFromIncomingContext(ctx, mdCorrelationID); len(v) > 0 && v[0] != "" {
		ctx = runtime.WithCorrelationID(ctx, v[0])
		if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
			sp.SetAttributes(attribute.String(attrCorrelationID, v[0]))
		}
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
		return nil, statusError(err)
	}
	resp := &loompb.SendResponse{MessageId: acc.ID, Seq: acc.Seq, Duplicate: acc.Duplicate}
	if !acc.AcceptedAt.IsZero() {
		resp.AcceptedUnixNano = acc.AcceptedAt.UnixNano()
	}
	return resp, nil
}

// Send sends a durable message through the node at addr (Messages.Send)
// and returns its acceptance. The correlation id, deadline and trace
// context are taken from ctx; e.TraceParent, when set, travels as is.
// Errors are as for Invoke: a refusal matches
// its sentinel (runtime.ErrUnknownType, ErrPayloadTooLarge,
// ErrDeliverAtTooFar, ErrShuttingDown...); runtime.ErrUnavailable means not
// sent; ErrUnknownOutcome means sent and unanswered, and then sending again
// with the same MessageID is safe: the store accepts an id once.
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
	if cid := runtime.CorrelationID(ctx); cid != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, mdCorrelationID, cid)
	}
	req := &loompb.SendRequest{
		ActorType: e.ActorType, ActorId: e.ActorID, Method: e.Method, Payload: e.Payload,
		MessageId: e.MessageID, Headers: maps.Clone(e.Headers), TraceParent: e.TraceParent,
	}
	if !e.DeliverAt.IsZero() {
		req.DeliverAtUnixNano = e.DeliverAt.UnixNano()
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
