package transport

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport/loompb"
)

// TaskHandler runs the tasks registered on a node (Tasks.Run). The Server
// calls it from gRPC's goroutines, concurrently; ctx carries the caller's
// deadline, correlation id and trace context. With async it starts the
// run and returns at once (the Outcome is then ignored). The error is for
// a run that did not happen and is sent through the error table
// (task.ErrUnknownTask, runtime.ErrBadPayload, runtime.ErrShuttingDown,
// ...); a run that failed is an Outcome with Success false. input must not
// be kept after HandleTask returns.
type TaskHandler interface {
	HandleTask(ctx context.Context, name string, input []byte, async bool) (task.Outcome, error)
}

// taskHandler is ServerOptions.Tasks, or else the ActorHandler when it
// also implements TaskHandler (an optional capability), or nil.
func (s *Server) taskHandler() TaskHandler {
	if s.opts.Tasks != nil {
		return s.opts.Tasks
	}
	if h, ok := s.opts.Actors.(TaskHandler); ok {
		return h
	}
	return nil
}

var errNoTasks = fmt.Errorf("%w: this node serves no tasks", runtime.ErrUnavailable)

type tasksServer struct {
	loompb.UnimplementedTasksServer
	s *Server
}

func (t tasksServer) Run(ctx context.Context, req *loompb.RunTaskRequest) (*loompb.RunTaskResponse, error) {
	h := t.s.taskHandler()
	if h == nil {
		return nil, statusError(errNoTasks)
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdCorrelationID); len(v) > 0 && v[0] != "" {
		ctx = runtime.WithCorrelationID(ctx, v[0])
	}
	o, err := h.HandleTask(ctx, req.Name, req.Input, req.Async)
	if err != nil {
		return nil, statusError(err)
	}
	if req.Async {
		return &loompb.RunTaskResponse{Accepted: true}, nil
	}
	resp := &loompb.RunTaskResponse{
		Success: o.Success, Value: o.Value, DurationNanos: int64(o.Duration()),
		Attempts: uint32(max(o.Attempts, 0)), FailedStep: o.FailedStep,
	}
	if !o.Start.IsZero() {
		resp.StartUnixNano = o.Start.UnixNano()
	}
	if o.Error != nil {
		resp.Error = &loompb.Error{Code: o.Error.Code, Message: o.Error.Message}
	}
	return resp, nil
}

// RunTask runs a task on the node at addr as one unary RPC (Tasks.Run)
// and returns its outcome; with async the node starts it and answers at
// once (the Outcome is then empty). The correlation id is taken from ctx,
// and so are the deadline and trace context. A run that failed is an
// Outcome with Success false; errors are as for Invoke (a remote
// task.ErrUnknownTask, runtime.ErrBadPayload, ... match their sentinel;
// runtime.ErrUnavailable: not sent; ErrUnknownOutcome: sent, no answer).
func (p *Pool) RunTask(ctx context.Context, addr, name string, input []byte, async bool) (task.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return task.Outcome{}, &notSentError{err}
	}
	if len(input) > p.maxCallBytes {
		return task.Outcome{}, fmt.Errorf("%w: %d bytes, the transport carries at most %d", runtime.ErrPayloadTooLarge, len(input), p.maxCallBytes)
	}
	pe, err := p.peer(addr)
	if err != nil {
		return task.Outcome{}, err
	}
	if cid := runtime.CorrelationID(ctx); cid != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, mdCorrelationID, cid)
	}
	sent := new(atomic.Bool)
	resp, err := loompb.NewTasksClient(pe.conn).Run(context.WithValue(ctx, sentKey{}, sent), &loompb.RunTaskRequest{Name: name, Input: input, Async: async})
	if err != nil {
		return task.Outcome{}, p.rpcError(ctx, addr, err, sent.Load())
	}
	o := task.Outcome{
		Success: resp.Success, Value: resp.Value, DurationMs: float64(resp.DurationNanos) / float64(time.Millisecond),
		Attempts: int(resp.Attempts), FailedStep: resp.FailedStep,
	}
	if len(o.Value) == 0 {
		o.Value = nil
	}
	if resp.StartUnixNano != 0 {
		o.Start = time.Unix(0, resp.StartUnixNano)
	}
	if resp.Error != nil {
		o.Error = &task.OutcomeError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	return o, nil
}
