package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Call is an actor call as it crosses the wire. The correlation id and the
// idempotency key travel in the context (runtime.WithCorrelationID,
// runtime.WithIdempotencyKey).
type Call struct {
	ActorType, ActorID, Method string
	Payload                    []byte
	Hops                       uint32
}

// ActorHandler runs actor calls that arrive at a node.
type ActorHandler interface {
	HandleInvoke(ctx context.Context, c Call) ([]byte, error)
}

// ForwardHandler applies Raft commands forwarded by a follower.
type ForwardHandler interface {
	HandleForward(ctx context.Context, batch []byte) ([]byte, error)
}

// TopologySource provides the cluster's topology. Changed returns a channel
// that is closed at the next change after the call.
type TopologySource interface {
	Topology() *loompb.ClusterTopology
	Changed() <-chan struct{}
}

// ServerOptions configure a Server. Nil handlers make their service answer
// Unavailable.
type ServerOptions struct {
	Actors   ActorHandler
	Forward  ForwardHandler
	Topology TopologySource
	Logger   *slog.Logger
	// TracerProvider and Propagator for otelgrpc; nil means the globals.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxMessageBytes bounds a received message. Default 16 MiB.
	MaxMessageBytes int
}

// Metadata keys.
const (
	mdCorrelationID  = "loom-correlation-id"
	mdIdempotencyKey = "loom-idempotency-key"
)

// Server serves the Actors, Coordinator and Topology services.
type Server struct {
	opts ServerOptions
	grpc *grpc.Server
	log  *slog.Logger
}

// NewServer builds a server. It starts nothing; call Serve.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 16 << 20
	}
	s := &Server{opts: opts, log: opts.Logger}
	s.grpc = grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOptions(opts.TracerProvider, opts.Propagator)...)),
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
	)
	loompb.RegisterActorsServer(s.grpc, actorsServer{s: s})
	loompb.RegisterCoordinatorServer(s.grpc, coordinatorServer{s: s})
	loompb.RegisterTopologyServer(s.grpc, topologyServer{s: s})
	return s
}

func otelOptions(tp trace.TracerProvider, p propagation.TextMapPropagator) []otelgrpc.Option {
	var o []otelgrpc.Option
	if tp != nil {
		o = append(o, otelgrpc.WithTracerProvider(tp))
	}
	if p != nil {
		o = append(o, otelgrpc.WithPropagators(p))
	}
	return o
}

// Serve accepts connections on ln until Stop.
func (s *Server) Serve(ln net.Listener) error {
	err := s.grpc.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop stops the server gracefully (running calls finish, streams end)
// until ctx ends, then closes every connection.
func (s *Server) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

type actorsServer struct {
	loompb.UnimplementedActorsServer
	s *Server
}

// callContext adds the request's correlation id, idempotency key and
// deadline to ctx.
func callContext(ctx context.Context, req *loompb.InvokeRequest) (context.Context, context.CancelFunc) {
	if req.CorrelationId != "" {
		ctx = runtime.WithCorrelationID(ctx, req.CorrelationId)
	}
	if req.IdempotencyKey != "" {
		ctx = runtime.WithIdempotencyKey(ctx, req.IdempotencyKey)
	}
	if req.DeadlineUnixNano != 0 {
		return context.WithDeadline(ctx, time.Unix(0, req.DeadlineUnixNano))
	}
	return ctx, func() {}
}

func (a actorsServer) handle(ctx context.Context, req *loompb.InvokeRequest) *loompb.InvokeResponse {
	resp := &loompb.InvokeResponse{CallId: req.CallId}
	h := a.s.opts.Actors
	if h == nil {
		resp.Error = EncodeError(ErrNotOwner)
		return resp
	}
	out, err := h.HandleInvoke(ctx, Call{ActorType: req.ActorType, ActorID: req.ActorId, Method: req.Method, Payload: req.Payload, Hops: req.Hops})
	if err != nil {
		resp.Error = EncodeError(err)
		return resp
	}
	resp.Payload = out
	return resp
}

func (a actorsServer) Invoke(ctx context.Context, req *loompb.InvokeRequest) (*loompb.InvokeResponse, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(mdCorrelationID); len(v) > 0 && req.CorrelationId == "" {
			req.CorrelationId = v[0]
		}
		if v := md.Get(mdIdempotencyKey); len(v) > 0 && req.IdempotencyKey == "" {
			req.IdempotencyKey = v[0]
		}
	}
	ctx, cancel := callContext(ctx, req)
	defer cancel()
	return a.handle(ctx, req), nil
}

// Stream serves multiplexed calls: each call runs in its own goroutine, and
// one writer sends whatever results are ready as one batch.
func (a actorsServer) Stream(stream loompb.Actors_StreamServer) error {
	ctx := stream.Context()
	results := make(chan *loompb.InvokeResponse, 256)
	var calls sync.WaitGroup
	writerDone := make(chan error, 1)
	go func() { writerDone <- writeBatches(ctx, results, stream.Send) }()
	var recvErr error
	for {
		batch, err := stream.Recv()
		if err != nil {
			recvErr = err
			break
		}
		for _, req := range batch.Calls {
			calls.Add(1)
			go func() {
				defer calls.Done()
				cctx, cancel := callContext(ctx, req)
				resp := a.handle(cctx, req)
				cancel()
				select {
				case results <- resp:
				case <-ctx.Done():
				}
			}()
		}
	}
	calls.Wait()
	close(results)
	werr := <-writerDone
	if errors.Is(recvErr, context.Canceled) || status.Code(recvErr) == codes.Canceled || recvErr == nil || isEOF(recvErr) {
		return werr
	}
	return recvErr
}

// writeBatches sends results as they come, each Send carrying everything
// that is ready. It returns when results is closed (nil) or a Send fails.
func writeBatches(ctx context.Context, results <-chan *loompb.InvokeResponse, send func(*loompb.ResultBatch) error) error {
	var failed error
	for first := range results {
		if failed != nil {
			continue // drain so call goroutines never block
		}
		batch := &loompb.ResultBatch{Results: []*loompb.InvokeResponse{first}}
	more:
		for len(batch.Results) < 1024 {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				batch.Results = append(batch.Results, r)
			default:
				break more
			}
		}
		if err := send(batch); err != nil {
			failed = err
		}
	}
	return failed
}

type coordinatorServer struct {
	loompb.UnimplementedCoordinatorServer
	s *Server
}

func (c coordinatorServer) Forward(ctx context.Context, req *loompb.ForwardRequest) (*loompb.ForwardResponse, error) {
	h := c.s.opts.Forward
	if h == nil {
		return nil, status.Error(codes.Unavailable, "this node has no coordinator")
	}
	out, err := h.HandleForward(ctx, req.Batch)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &loompb.ForwardResponse{Result: out}, nil
}

type topologyServer struct {
	loompb.UnimplementedTopologyServer
	s *Server
}

func (t topologyServer) Watch(_ *loompb.WatchRequest, stream loompb.Topology_WatchServer) error {
	src := t.s.opts.Topology
	if src == nil {
		return status.Error(codes.Unavailable, "this node serves no topology")
	}
	for {
		changed := src.Changed()
		if err := stream.Send(src.Topology()); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}
