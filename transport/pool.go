package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport/loompb"
)

// PoolOptions configure a Pool. The zero value is valid; each field's
// default is given in its comment.
type PoolOptions struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// TracerProvider and Propagator for trace context: otelgrpc on every
	// RPC, plus a client span per call on a stream and the trace context
	// in the call. nil means none (no-op); this package never reads or
	// sets the OpenTelemetry globals.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxMessageBytes bounds a message either way; a call whose payload is
	// larger than 3/4 of it fails with runtime.ErrPayloadTooLarge before it
	// is sent. 0 means 16 MiB. Give the servers the same value.
	MaxMessageBytes int
	// StreamsPerAddr is how many call streams Invoke spreads calls over per
	// address (all on the address's one connection). 0 means 1. Each
	// stream's write carries every call queued since its previous one, so
	// more streams split the same calls into more, smaller writes, each a
	// system call on both sides: on two cores, against a 3-node cluster
	// with 64 callers, one stream per node answers ~12% more calls than
	// two. A stream's sender and receiver goroutines can keep about one
	// core busy, so a client with many cores and few peers may want more.
	StreamsPerAddr int
	// ConnectTimeout bounds how long opening a connection and a call stream
	// may take before the calls waiting for it fail with
	// runtime.ErrUnavailable (never sent). 0 means 5 s. A refused
	// connection fails at once; this is for addresses that do not answer.
	ConnectTimeout time.Duration
	// Unary makes Invoke use one unary RPC per call instead of the streams
	// (for comparison and debugging).
	Unary bool
	// Dialer, if not nil, opens the pool's TCP connections instead of
	// gRPC's own dialer (the chaos hook's fault-injecting dialer,
	// faultnet.Hook.Dialer). nil means gRPC's.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, if not nil, dials every address with TLS (security/tlsconf's
	// ClientConfig: the node's or client's certificate, the servers'
	// checked against the CA). nil means plaintext. A connection that
	// fails because one side speaks TLS and the other does not, or
	// because a certificate was refused, fails with an error that says
	// so.
	TLS *tls.Config
	// TLSLeaf, if not nil, returns this side's current certificate, named
	// (with its expiry) in the error of a connection whose certificate
	// the node refused.
	TLSLeaf func() *x509.Certificate
	// Token, if not empty, is the bearer token every call presents (a
	// cluster client's; nodes present their certificates). It needs TLS:
	// a token never travels in the clear.
	Token string
}

// Pool holds one gRPC connection per address, dialed on first use and
// shared by every call to that address, and on it up to StreamsPerAddr
// multiplexed call streams, opened on demand. Safe for concurrent use.
type Pool struct {
	opts         PoolOptions
	log          *slog.Logger
	tracer       trace.Tracer // nil without a TracerProvider
	maxCallBytes int

	ctx    context.Context // canceled by Close: ends every stream
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the pool starts

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
}

// NewPool builds a pool. It dials nothing and starts nothing until used.
func NewPool(opts PoolOptions) *Pool {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 16 << 20
	}
	if opts.StreamsPerAddr <= 0 {
		opts.StreamsPerAddr = 1
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	p := &Pool{opts: opts, log: opts.Logger, peers: map[string]*peer{}, maxCallBytes: opts.MaxMessageBytes / 4 * 3}
	if opts.TracerProvider != nil {
		p.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// peer is one address: its connection and its call streams.
type peer struct {
	p     *Pool
	addr  string
	conn  *grpc.ClientConn
	rr    atomic.Uint32
	slots []atomic.Pointer[mux] // nil: none open; replaced under mu

	mu     sync.Mutex
	closed bool
}

// peer returns addr's peer, making it (and its connection, which dials
// lazily) on first use.
func (p *Pool) peer(addr string) (*peer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if pe := p.peers[addr]; pe != nil {
		return pe, nil
	}
	creds := insecure.NewCredentials()
	if cfg := p.opts.TLS; cfg != nil {
		if cfg.ClientSessionCache != nil {
			cfg = cfg.Clone()
			cfg.ClientSessionCache = peerSessions{addr: addr, c: p.opts.TLS.ClientSessionCache}
		}
		creds = verdictCreds{credentials.NewTLS(cfg)}
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOptions(p.opts.TracerProvider, p.opts.Propagator)...)),
		grpc.WithStatsHandler(sentTracker{}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.opts.MaxMessageBytes), grpc.MaxCallSendMsgSize(p.opts.MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: clientKeepalive, Timeout: keepaliveTimeout}),
		grpc.WithConnectParams(grpc.ConnectParams{
			// Reconnect soon after a node comes back (gRPC's default
			// backoff grows to 2 minutes).
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: p.opts.ConnectTimeout,
		}),
	}
	if p.opts.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(p.opts.Dialer))
	}
	if p.opts.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds{header: "Bearer " + p.opts.Token}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", runtime.ErrUnavailable, addr, err)
	}
	pe := &peer{p: p, addr: addr, conn: conn, slots: make([]atomic.Pointer[mux], p.opts.StreamsPerAddr)}
	p.peers[addr] = pe
	return pe, nil
}

// request builds the wire form of a call from ctx and c.
func (p *Pool) request(ctx context.Context, c Call) *loompb.InvokeRequest {
	req := &loompb.InvokeRequest{
		ActorType: c.ActorType, ActorId: c.ActorID, Method: c.Method, Payload: c.Payload, Hops: c.Hops,
		CorrelationId:  runtime.CorrelationID(ctx),
		IdempotencyKey: runtime.IdempotencyKey(ctx),
		CallChain:      runtime.CallChain(ctx),
	}
	if req.IdempotencyKey != "" {
		req.IdempotencyAgeNanos = int64(runtime.IdempotencyKeyAge(ctx))
	}
	if id := runtime.DeliveryID(ctx); id != "" {
		req.MessageId, req.MessageAttempts, req.MessageHeaders = id, runtime.DeliveryAttempts(ctx), runtime.MessageHeaders(ctx)
		req.MessageExternal = runtime.DeliveryExternal(ctx)
	}
	if d, ok := ctx.Deadline(); ok {
		// The time left, not the instant: the receiver starts it on
		// its own monotonic clock when the call arrives, so the two
		// nodes' wall clocks are never compared. (The time the call
		// then waits for its stream's next write, microseconds, is
		// not taken off.)
		req.TimeoutNanos = max(int64(time.Until(d)), 1)
	}
	return req
}

func (p *Pool) checkSize(c Call) error {
	if len(c.Payload) > p.maxCallBytes {
		return fmt.Errorf("%w: %d bytes, the transport carries at most %d", runtime.ErrPayloadTooLarge, len(c.Payload), p.maxCallBytes)
	}
	return nil
}

// Invoke runs the call on the node at addr and returns its result. It
// multiplexes the call on one of the address's call streams (see the
// package doc), or sends it as a unary RPC if PoolOptions.Unary is set.
// The correlation id, idempotency key, deadline and trace context are
// taken from ctx. See the package doc for what its errors mean.
func (p *Pool) Invoke(ctx context.Context, addr string, c Call) ([]byte, error) {
	if p.opts.Unary {
		return p.InvokeUnary(ctx, addr, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err}
	}
	if err := p.checkSize(c); err != nil {
		return nil, err
	}
	pe, err := p.peer(addr)
	if err != nil {
		return nil, err
	}
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "loom.Invoke "+c.ActorType+"."+c.Method, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String(attrCorrelationID, runtime.CorrelationID(ctx))))
		defer span.End()
	}
	r := p.onStream(ctx, pe, p.request(ctx, c))
	return r.payload, r.err
}

// onStream sends req on one of pe's call streams, with ctx's trace
// context, and waits for its answer or for ctx to end (abandon).
func (p *Pool) onStream(ctx context.Context, pe *peer, req *loompb.InvokeRequest) result {
	if p.opts.Propagator != nil {
		carrier := propagation.MapCarrier{}
		p.opts.Propagator.Inject(ctx, carrier)
		if len(carrier) > 0 {
			req.Trace = carrier
		}
	}
	pd := &pending{req: req, size: callSize(req), res: make(chan result, 1)}
	pe.submit(pd)
	select {
	case r := <-pd.res:
		return r
	case <-ctx.Done():
		return pe.abandon(pd, ctx.Err())
	}
}

// InvokeUnary runs the call as one unary RPC (no multiplexing). Same
// contract as Invoke.
func (p *Pool) InvokeUnary(ctx context.Context, addr string, c Call) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err}
	}
	if err := p.checkSize(c); err != nil {
		return nil, err
	}
	pe, err := p.peer(addr)
	if err != nil {
		return nil, err
	}
	req := p.request(ctx, c)
	req.TimeoutNanos = 0 // gRPC carries it (grpc-timeout)
	var md metadata.MD
	if req.CorrelationId != "" || req.IdempotencyKey != "" {
		md = metadata.MD{}
		if req.CorrelationId != "" {
			md.Set(mdCorrelationID, req.CorrelationId)
		}
		if req.IdempotencyKey != "" {
			md.Set(mdIdempotencyKey, req.IdempotencyKey)
		}
		req.CorrelationId, req.IdempotencyKey = "", ""
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	sent := new(atomic.Bool)
	resp, err := loompb.NewActorsClient(pe.conn).Invoke(context.WithValue(ctx, sentKey{}, sent), req)
	if err != nil {
		return nil, p.rpcError(ctx, addr, err, sent.Load())
	}
	return resp.Payload, nil
}

// Forward sends a batch of Raft commands for Raft group group to the node
// at addr (the group's leader) and returns its answer. Errors as for
// Invoke.
func (p *Pool) Forward(ctx context.Context, addr string, group int, batch []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err}
	}
	pe, err := p.peer(addr)
	if err != nil {
		return nil, err
	}
	sent := new(atomic.Bool)
	resp, err := loompb.NewCoordinatorClient(pe.conn).Forward(context.WithValue(ctx, sentKey{}, sent), &loompb.ForwardRequest{Batch: batch, Group: uint32(group)})
	if err != nil {
		return nil, p.rpcError(ctx, addr, err, sent.Load())
	}
	return resp.Result, nil
}

// WatchTopology subscribes to the topology served at addr. The channel
// receives the current topology at once, then every change; a slow reader
// may miss intermediate versions (only the latest waiting one is kept), and
// the channel is closed when ctx ends, the stream breaks (the caller
// re-subscribes, possibly elsewhere) or the Pool closes. The error is for
// failing to subscribe.
func (p *Pool) WatchTopology(ctx context.Context, addr string) (<-chan *loompb.ClusterTopology, error) {
	pe, err := p.peer(addr)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(p.ctx, cancel)
	stream, err := loompb.NewTopologyClient(pe.conn).Watch(wctx, &loompb.WatchRequest{})
	if err != nil {
		stopOnClose()
		cancel()
		return nil, p.rpcError(ctx, addr, err, false)
	}
	// The node sends its topology at once: wait for it here, so that a
	// refusal (no token, a token not valid there) is this call's error
	// rather than a channel that closes.
	first, err := stream.Recv()
	if err != nil {
		stopOnClose()
		cancel()
		return nil, p.rpcError(ctx, addr, err, false)
	}
	out := make(chan *loompb.ClusterTopology, 1)
	out <- first
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		stopOnClose()
		cancel()
		return nil, ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer close(out)
		defer stopOnClose()
		defer cancel()
		for {
			t, err := stream.Recv()
			if err != nil {
				if !isEOF(err) && wctx.Err() == nil {
					p.log.Debug("transport: topology watch ended", "addr", addr, "err", err)
				}
				return
			}
			// Keep only the newest: replace a topology the reader has not
			// taken yet.
			select {
			case out <- t:
				continue
			default:
			}
			select {
			case <-out:
			default:
			}
			select {
			case out <- t:
			case <-wctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// CloseAddr closes addr's connection and streams (a node that left for
// good); calls in flight to it fail as if the connection broke. A later
// call to addr dials again.
func (p *Pool) CloseAddr(addr string) {
	p.mu.Lock()
	pe := p.peers[addr]
	delete(p.peers, addr)
	p.mu.Unlock()
	if pe != nil {
		pe.close(fmt.Errorf("transport: connection to %s closed", addr))
	}
}

// Addrs returns the addresses the pool has connections to, sorted.
func (p *Pool) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.peers))
}

// Close closes every connection and stream and waits for the pool's
// goroutines. Calls waiting for an answer fail with ErrUnknownOutcome,
// calls not yet sent with ErrClosed. Safe to call more than once.
func (p *Pool) Close() error {
	p.mu.Lock()
	peers := p.peers
	p.peers = map[string]*peer{}
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, pe := range peers {
		errs = append(errs, pe.close(ErrClosed))
	}
	p.cancel()
	p.wg.Wait()
	return errors.Join(errs...)
}

// close fails the peer's streams with cause and closes its connection.
func (pe *peer) close(cause error) error {
	pe.mu.Lock()
	pe.closed = true
	var muxes []*mux
	for i := range pe.slots {
		if m := pe.slots[i].Swap(nil); m != nil {
			muxes = append(muxes, m)
		}
	}
	pe.mu.Unlock()
	for _, m := range muxes {
		m.fail(cause)
	}
	// The streams' goroutines end on their own once their context is
	// canceled (fail does it); closing the connection ends anything left.
	if err := pe.conn.Close(); err != nil && status.Code(err) != codes.Canceled {
		return err
	}
	return nil
}

// rpcError maps a unary RPC's failure. A status carrying a wire Error is
// the remote node's answer; otherwise sent (the request was handed to the
// connection) decides between ErrUnknownOutcome and runtime.ErrUnavailable.
func (p *Pool) rpcError(ctx context.Context, addr string, err error, sent bool) error {
	if remote, ok := fromStatus(err); ok {
		return remote
	}
	ctxErr := ctx.Err()
	if ctxErr == nil {
		switch status.Code(err) {
		case codes.DeadlineExceeded:
			ctxErr = context.DeadlineExceeded
		case codes.Canceled:
			ctxErr = context.Canceled
		}
	}
	msg, mismatch := p.explainMsg(status.Convert(err).Message())
	switch {
	case status.Code(err) == codes.PermissionDenied:
		// Refused before the handler ran: not applied.
		return fmt.Errorf("%w: %s: %s", ErrPermissionDenied, addr, msg)
	case status.Code(err) == codes.Unauthenticated:
		return fmt.Errorf("%w: %s: %s", ErrUnauthenticated, addr, msg)
	case ctxErr != nil && sent:
		return fmt.Errorf("transport: %s: %w: %w", addr, ctxErr, ErrUnknownOutcome)
	case ctxErr != nil:
		return fmt.Errorf("transport: %s: %w", addr, &notSentError{ctxErr})
	case sent:
		return fmt.Errorf("%w: %s: %s", ErrUnknownOutcome, addr, msg)
	case status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("%w: %s: %s", runtime.ErrPayloadTooLarge, addr, msg)
	case mismatch:
		return fmt.Errorf("%w: %s: %w", runtime.ErrUnavailable, addr, &tlsMismatch{msg: msg})
	default:
		return fmt.Errorf("%w: %s: %s", runtime.ErrUnavailable, addr, msg)
	}
}

// sentTracker is a client stats handler that records, in the *atomic.Bool
// under sentKey in the RPC's context, that a request message was handed to
// the connection (gRPC reports OutPayload only after the write was
// queued): from then on a failure has an unknown outcome.
type sentTracker struct{}

type sentKey struct{}

func (sentTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (sentTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutPayload); ok {
		if f, _ := ctx.Value(sentKey{}).(*atomic.Bool); f != nil {
			f.Store(true)
		}
	}
}
func (sentTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (sentTracker) HandleConn(context.Context, stats.ConnStats)                       {}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
