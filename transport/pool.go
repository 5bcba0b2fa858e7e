package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// PoolOptions configure a Pool.
type PoolOptions struct {
	Logger *slog.Logger
	// TracerProvider and Propagator for otelgrpc; nil means the globals.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxMessageBytes bounds a received message. Default 16 MiB.
	MaxMessageBytes int
}

// Pool holds one gRPC connection per address, dialed on first use and
// shared by every call to that address, and one multiplexed call stream per
// address. Safe for concurrent use.
type Pool struct {
	opts   PoolOptions
	log    *slog.Logger
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	muxes  map[string]*mux
	closed bool
}

// NewPool builds a pool. It dials nothing until used.
func NewPool(opts PoolOptions) *Pool {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 16 << 20
	}
	return &Pool{opts: opts, log: opts.Logger, conns: map[string]*grpc.ClientConn{}, muxes: map[string]*mux{}}
}

func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if c := p.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOptions(p.opts.TracerProvider, p.opts.Propagator)...)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.opts.MaxMessageBytes), grpc.MaxCallSendMsgSize(p.opts.MaxMessageBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// request builds the wire form of a call from ctx and c.
func request(ctx context.Context, c Call) *loompb.InvokeRequest {
	req := &loompb.InvokeRequest{
		ActorType: c.ActorType, ActorId: c.ActorID, Method: c.Method, Payload: c.Payload, Hops: c.Hops,
		CorrelationId:  runtime.CorrelationID(ctx),
		IdempotencyKey: runtime.IdempotencyKey(ctx),
	}
	if d, ok := ctx.Deadline(); ok {
		req.DeadlineUnixNano = d.UnixNano()
	}
	return req
}

// InvokeUnary sends one call as a unary RPC.
func (p *Pool) InvokeUnary(ctx context.Context, addr string, c Call) ([]byte, error) {
	conn, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	req := request(ctx, c)
	md := metadata.MD{}
	if req.CorrelationId != "" {
		md.Set(mdCorrelationID, req.CorrelationId)
	}
	if req.IdempotencyKey != "" {
		md.Set(mdIdempotencyKey, req.IdempotencyKey)
	}
	resp, err := loompb.NewActorsClient(conn).Invoke(metadata.NewOutgoingContext(ctx, md), req)
	if err != nil {
		return nil, rpcError(ctx, addr, err)
	}
	if resp.Error != nil {
		return nil, DecodeError(resp.Error)
	}
	return resp.Payload, nil
}

// rpcError maps a gRPC transport failure. Unavailable means gRPC could not
// deliver the request (it retries transparently what never left); anything
// else after sending is an unknown outcome.
func rpcError(ctx context.Context, addr string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("transport: call to %s: %w", addr, ctxErr)
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, addr, status.Convert(err).Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("transport: call to %s: %w", addr, context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("transport: call to %s: %w", addr, context.Canceled)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnknownOutcome, addr, err)
}

// Invoke sends the call over the address's multiplexed stream.
func (p *Pool) Invoke(ctx context.Context, addr string, c Call) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := p.mux(addr)
	if err != nil {
		return nil, err
	}
	return m.invoke(ctx, request(ctx, c))
}

// Forward sends a batch of Raft commands to the leader at addr.
func (p *Pool) Forward(ctx context.Context, addr string, batch []byte) ([]byte, error) {
	conn, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	resp, err := loompb.NewCoordinatorClient(conn).Forward(ctx, &loompb.ForwardRequest{Batch: batch})
	if err != nil {
		return nil, rpcError(ctx, addr, err)
	}
	return resp.Result, nil
}

// WatchTopology streams the topology served at addr until ctx ends or the
// stream breaks; then the channel is closed.
func (p *Pool) WatchTopology(ctx context.Context, addr string) (<-chan *loompb.ClusterTopology, error) {
	conn, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	stream, err := loompb.NewTopologyClient(conn).Watch(ctx, &loompb.WatchRequest{})
	if err != nil {
		return nil, rpcError(ctx, addr, err)
	}
	out := make(chan *loompb.ClusterTopology, 1)
	go func() {
		defer close(out)
		for {
			t, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Close closes every connection and stream. Calls in flight fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	muxes, conns := p.muxes, p.conns
	p.muxes, p.conns = nil, nil
	p.mu.Unlock()
	for _, m := range muxes {
		m.close(ErrClosed)
	}
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
