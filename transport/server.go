package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	goruntime "runtime"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Call is an actor call as it crosses the wire. The correlation id, the
// idempotency key and the call chain travel in the context
// (runtime.WithCorrelationID, runtime.WithIdempotencyKey,
// runtime.WithCallChain), and so does the deadline.
type Call struct {
	ActorType, ActorID, Method string
	Payload                    []byte
	// Hops counts the forwards between nodes so far.
	Hops uint32
}

// ActorHandler runs actor calls that arrive at a node. The Server calls
// HandleInvoke from its own goroutines, concurrently, one per call; ctx
// carries the caller's deadline, correlation id, idempotency key, call
// chain and trace context, and is canceled when the caller gives up or the server stops.
// The returned error is sent through the error table (errors.go): return
// the runtime / journal sentinels (wrapped) or NotOwner. c.Payload must not
// be kept after HandleInvoke returns.
type ActorHandler interface {
	HandleInvoke(ctx context.Context, c Call) ([]byte, error)
}

// ForwardHandler applies Raft commands forwarded by a follower (opaque
// bytes, encoded by raftlock) to Raft group group (0 with one group).
// Called concurrently from gRPC's goroutines.
type ForwardHandler interface {
	HandleForward(ctx context.Context, group int, batch []byte) ([]byte, error)
}

// TopologySource provides the cluster's topology to Topology.Watch.
// Topology returns the current topology (the Server does not modify it);
// Changed returns a channel that is closed at the next change after the
// call. Both are called from the watchers' goroutines, concurrently.
type TopologySource interface {
	Topology() *loompb.ClusterTopology
	Changed() <-chan struct{}
}

// ServerOptions configure a Server. The zero value is valid: every
// service answers Unavailable (Messages: ErrMessagingDisabled).
type ServerOptions struct {
	// Actors serves Actors.Invoke and Actors.Stream; nil answers every call
	// with runtime.ErrUnavailable (not applied).
	Actors ActorHandler
	// Forward serves Coordinator.Forward; nil answers Unavailable.
	Forward ForwardHandler
	// Topology serves Topology.Watch; nil answers Unavailable.
	Topology TopologySource
	// Tasks serves Tasks.Run; nil uses Actors if it implements
	// TaskHandler, else answers Unavailable.
	Tasks TaskHandler
	// Messages serves Messages.Send; nil answers ErrMessagingDisabled.
	Messages MessageHandler
	// Logger; nil discards.
	Logger *slog.Logger
	// TracerProvider and Propagator for trace context: otelgrpc on every
	// RPC, plus a span per call on a stream. nil means none (no-op); this
	// package never reads or sets the OpenTelemetry globals.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxMessageBytes bounds a message either way. 0 means 16 MiB. A
	// larger incoming message is refused with ResourceExhausted ("grpc:
	// received message larger than max (N vs. limit)").
	MaxMessageBytes int
	// CallStackBytes, when > 0, grows the stack of the goroutine each call
	// on a stream runs on to about this size as the goroutine starts. Go
	// starts goroutines with a small stack and copies it whenever a call
	// goes deeper; a handler known to run deep (an actor turn that decodes
	// JSON state; a runtime traced through the OpenTelemetry SDK, whose
	// span start has large frames) pays that copy deep in every call,
	// where walking the frames makes it several times dearer than at the
	// start. 0 means no pre-growth; up to 8 KiB gives an 8 KiB stack, at
	// most 64 KiB is used.
	CallStackBytes int
	// MaxStreamCalls bounds the calls running at once for one call stream;
	// past it the server stops reading that stream until one finishes
	// (backpressure reaches the client through HTTP/2 flow control).
	// 0 means 10,000.
	MaxStreamCalls int
	// TLS, if not nil, serves with TLS (security/tlsconf's ServerConfig:
	// it checks the peers' certificates). nil means plaintext.
	TLS *tls.Config
	// CheckRoles refuses the node-internal methods (see NodeOnly) with
	// PermissionDenied unless the peer presented a node certificate. Set
	// it when TLS verifies incoming certificates.
	CheckRoles bool
	// Tokens, if not nil, makes every call need a bearer token (metadata
	// "authorization: Bearer <secret>") with the scope it needs: an actor
	// call or a send actors:call:<type> (or actors:call), Tasks.Run
	// tasks:run, opening a Stream or a Watch any valid token. A peer with
	// a node certificate needs none (with CheckRoles: certificates
	// verified). Refusals are ErrUnauthenticated and ErrPermissionDenied;
	// nothing was applied.
	Tokens *auth.Tokens

	// handshakeTimeout replaces HandshakeTimeout (tests; export_test.go).
	handshakeTimeout time.Duration
}

// Bounds on what a peer may send a Server, whoever it is: a connection
// must finish its handshake in time, a call's metadata and each message
// must fit (MaxMessageBytes, ResourceExhausted past it). What follows a
// handshake is paced by gRPC's keepalive (serverKeepalive).
const (
	// HandshakeTimeout bounds, from the accept, an incoming connection's
	// TLS handshake, HTTP/2 preface and first SETTINGS frame
	// (grpc.ConnectionTimeout, which defaults to 120 s): a peer that
	// connects and sends nothing, or half a handshake, is disconnected
	// after it. Both ends of a handshake are Go on one network: a TLS
	// 1.3 handshake and the preface take two round trips, so 10 s is
	// ample, and it is the HTTP port's header timeout too.
	HandshakeTimeout = 10 * time.Second
	// MaxHeaderListBytes bounds the metadata (HTTP/2 header list, as
	// HTTP/2 counts it: name + value + 32 bytes a field) of one call,
	// with grpc.MaxHeaderListSize, instead of gRPC's default of 16 MiB.
	// It is advertised in the server's SETTINGS, so a gRPC client
	// refuses to send more itself ("header list size to send violates
	// the maximum size (16384 bytes) set by server"). Loom's own
	// metadata (correlation id, idempotency key of at most 256 bytes,
	// trace context, grpc-timeout) takes well under 1 KiB; 16 KiB is
	// twice the 8 KiB gRPC announces as its future default, with room
	// for a bearer token.
	MaxHeaderListBytes = 16 << 10
)

// Metadata keys of a unary call.
const (
	mdCorrelationID  = "loom-correlation-id"
	mdIdempotencyKey = "loom-idempotency-key"
)

// Server serves the Actors, Coordinator, Topology, Tasks and Messages
// services (see the package doc). Build it
// with NewServer, run it with Serve, end it with Stop.
type Server struct {
	opts   ServerOptions
	grpc   *grpc.Server
	log    *slog.Logger
	tracer trace.Tracer // nil without a TracerProvider
	// maxResultBytes bounds one result on a stream (3/4 of MaxMessageBytes):
	// a larger one would break the stream for every call on it.
	maxResultBytes int

	stopping chan struct{} // closed by Stop: streams drain, watches end
	stopOnce sync.Once
}

// NewServer builds a server. It starts nothing and listens on nothing.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 16 << 20
	}
	if opts.MaxStreamCalls <= 0 {
		opts.MaxStreamCalls = 10_000
	}
	if opts.handshakeTimeout <= 0 {
		opts.handshakeTimeout = HandshakeTimeout
	}
	s := &Server{opts: opts, log: opts.Logger, stopping: make(chan struct{}), maxResultBytes: opts.MaxMessageBytes / 4 * 3}
	if opts.TracerProvider != nil {
		s.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	var roles []grpc.ServerOption
	if opts.CheckRoles || opts.Tokens != nil {
		roles = append(roles, grpc.ChainUnaryInterceptor(s.unaryAuth), grpc.ChainStreamInterceptor(s.streamAuth))
	}
	s.grpc = grpc.NewServer(append(roles,
		ServerTLS(opts.TLS),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOptions(opts.TracerProvider, opts.Propagator)...)),
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
		grpc.ConnectionTimeout(opts.handshakeTimeout),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		// Clients ping idle connections every clientKeepalive; allow it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: clientKeepalive / 2, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: serverKeepalive, Timeout: keepaliveTimeout}),
		// Stop returns only when every handler has (and a Stream handler
		// waits for its calls' goroutines).
		grpc.WaitForHandlers(true),
	)...)
	loompb.RegisterActorsServer(s.grpc, actorsServer{s: s})
	loompb.RegisterCoordinatorServer(s.grpc, coordinatorServer{s: s})
	loompb.RegisterTopologyServer(s.grpc, topologyServer{s: s})
	loompb.RegisterTasksServer(s.grpc, tasksServer{s: s})
	loompb.RegisterMessagesServer(s.grpc, messagesServer{s: s})
	return s
}

const (
	tracerName = "github.com/loom-mesh/loom/transport"
	// attrCorrelationID is the span attribute of the call's correlation id
	// (the node's observability records it on the spans it starts).
	attrCorrelationID = "loom.correlation_id"

	clientKeepalive  = 10 * time.Second // a client pings a connection idle this long
	serverKeepalive  = 30 * time.Second
	keepaliveTimeout = 5 * time.Second // no ping answer within this: the connection is dead
)

// otelOptions: explicit providers only, no-op by default, never the globals.
func otelOptions(tp trace.TracerProvider, p propagation.TextMapPropagator) []otelgrpc.Option {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	if p == nil {
		p = propagation.NewCompositeTextMapPropagator() // propagates nothing
	}
	// No RPC metrics (the node's /metrics has its own): a no-op meter, not
	// the global one.
	return []otelgrpc.Option{otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(p), otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())}
}

// Serve accepts connections on ln until Stop; it returns nil after Stop.
func (s *Server) Serve(ln net.Listener) error {
	err := s.grpc.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop stops the server. Gracefully until ctx ends: no new connections or
// RPCs, running calls finish and are answered, call streams drain (the
// client is told to send new calls elsewhere and half-closes the stream
// once it has sent what it had queued), topology watches end. When ctx
// ends first, every connection is closed: calls still running see their
// context canceled, and their callers get ErrUnknownOutcome. Stop returns
// once every call goroutine has returned (handlers must honor ctx). Safe
// to call more than once.
func (s *Server) Stop(ctx context.Context) {
	s.stopOnce.Do(func() { close(s.stopping) })
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

// callContext adds the request's correlation id, idempotency key and trace
// context to ctx.
func (s *Server) callContext(ctx context.Context, req *loompb.InvokeRequest) context.Context {
	if req.CorrelationId == "" {
		// Every call carries a correlation id; one that came without gets
		// it here, where it enters the node.
		req.CorrelationId = runtime.NewCorrelationID()
	}
	ctx = runtime.WithCorrelationID(ctx, req.CorrelationId)
	if req.IdempotencyKey != "" {
		ctx = runtime.WithIdempotencyKeyAge(ctx, req.IdempotencyKey, time.Duration(req.IdempotencyAgeNanos))
	}
	switch {
	case req.MessageId != "" && req.MessageExternal:
		ctx = runtime.WithExternalDelivery(ctx, req.MessageId, req.MessageAttempts, req.MessageHeaders)
	case req.MessageId != "":
		ctx = runtime.WithDelivery(ctx, req.MessageId, req.MessageAttempts, req.MessageHeaders)
	}
	if len(req.Trace) > 0 && s.opts.Propagator != nil {
		ctx = s.opts.Propagator.Extract(ctx, propagation.MapCarrier(req.Trace))
	}
	return ctx
}

// streamCallBase is the context a stream's calls derive from: the stream's
// values (metadata, peer) without its cancellation (see Stream) and without
// its span, which belongs to no call: a call that brings no trace context
// starts a trace rather than hang off it. Computed once per stream, not per
// call. (A stream without a span, as when tracing is off, keeps none.)
func streamCallBase(ctx context.Context) context.Context {
	base := context.WithoutCancel(ctx)
	if trace.SpanContextFromContext(base).IsValid() {
		base = trace.ContextWithSpanContext(base, trace.SpanContext{})
	}
	return base
}

// handle runs one call; span adds a server span (calls on a stream, which
// otelgrpc does not see one by one).
func (s *Server) handle(ctx context.Context, req *loompb.InvokeRequest, span bool) ([]byte, error) {
	h := s.opts.Actors
	if h == nil {
		return nil, errNoActors
	}
	if len(req.CallChain) > 0 {
		var err error
		if ctx, err = runtime.WithCallChain(ctx, req.CallChain); err != nil {
			return nil, err
		}
	}
	if span && s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "loom.Invoke "+req.ActorType+"."+req.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String(attrCorrelationID, req.CorrelationId)))
		defer span.End()
	}
	return h.HandleInvoke(ctx, Call{ActorType: req.ActorType, ActorID: req.ActorId, Method: req.Method, Payload: req.Payload, Hops: req.Hops})
}

var errNoActors = fmt.Errorf("%w: this node serves no actors", runtime.ErrUnavailable)

func (a actorsServer) Invoke(ctx context.Context, req *loompb.InvokeRequest) (*loompb.InvokeResponse, error) {
	if v := metadata.ValueFromIncomingContext(ctx, mdCorrelationID); len(v) > 0 && req.CorrelationId == "" {
		req.CorrelationId = v[0]
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdIdempotencyKey); len(v) > 0 && req.IdempotencyKey == "" {
		req.IdempotencyKey = v[0]
	}
	// The deadline is gRPC's own (already on ctx); otelgrpc extracted the
	// trace context, and started its span before the correlation id was
	// known: record it there (the node's span processor records it on the
	// spans that start later).
	req.Trace = nil
	cctx := a.s.callContext(ctx, req)
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(attribute.String(attrCorrelationID, req.CorrelationId))
	}
	out, err := a.s.handle(cctx, req, false)
	if err != nil {
		return nil, statusError(err)
	}
	return &loompb.InvokeResponse{Payload: out}, nil
}

// Stream serves multiplexed calls. The handler goroutine reads batches and
// starts one goroutine per call; a writer goroutine sends whatever results
// are ready as one batch. When the server stops, the writer tells the
// client to drain; the stream ends when the client half-closes it and every
// call has been answered (or when the connection is cut).
func (a actorsServer) Stream(stream loompb.Actors_StreamServer) error {
	s := a.s
	ctx := stream.Context()

	results := make(chan *loompb.InvokeResponse, 256)
	writerDone := make(chan error, 1)
	go func() { writerDone <- writeBatches(results, s.maxResultBytes, s.stopping, stream.Send) }()

	var (
		calls   sync.WaitGroup
		slots   = make(chan struct{}, s.opts.MaxStreamCalls)
		mu      sync.Mutex
		running = map[uint64]context.CancelFunc{} // by call id, for InvokeBatch.cancel and the stream's end
	)
	// A call's context does not hang off the stream's: deriving 64
	// concurrent calls from one cancelable parent makes each creation and
	// each cancel take the parent's lock and touch its map of children.
	// Calls keep the stream's values (metadata, peer; not its span, see
	// streamCallBase); when the stream's context ends, the calls still
	// running are canceled here, through running, which is kept anyway.
	base := streamCallBase(ctx)
	stopCancels := context.AfterFunc(ctx, func() {
		mu.Lock()
		for _, cancel := range running {
			cancel()
		}
		mu.Unlock()
	})
	defer stopCancels()
	var recvErr error
	for {
		batch, err := stream.Recv()
		if err != nil {
			recvErr = err
			break
		}
		for _, req := range batch.Calls {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			var cctx context.Context
			var cancel context.CancelFunc
			reqCtx := s.callContext
			if req.Send != nil {
				reqCtx = s.streamSendContext
			}
			if req.TimeoutNanos > 0 {
				// The caller's time left, from now on this node's
				// monotonic clock: no wall clocks compared.
				cctx, cancel = context.WithTimeout(reqCtx(base, req), time.Duration(req.TimeoutNanos))
			} else {
				cctx, cancel = context.WithCancel(reqCtx(base, req))
			}
			mu.Lock()
			running[req.CallId] = cancel
			if ctx.Err() != nil {
				cancel() // the stream ended before this call was registered
			}
			mu.Unlock()
			calls.Add(1)
			go func() {
				if s.opts.CallStackBytes > 0 {
					growStack(s.opts.CallStackBytes)
				}
				defer calls.Done()
				resp := &loompb.InvokeResponse{CallId: req.CallId}
				var out []byte
				err := s.allowCall(ctx, req)
				switch {
				case err != nil:
				case req.Send != nil:
					resp.Accepted, err = s.send(cctx, req.Send)
				default:
					out, err = s.handle(cctx, req, true)
				}
				if err == nil && len(out) > s.maxResultBytes {
					err = fmt.Errorf("transport: the result of %s.%s is %d bytes, more than the transport carries (%d); the call ran", req.ActorType, req.Method, len(out), s.maxResultBytes)
				}
				if err != nil {
					resp.Error = EncodeError(err)
				} else {
					resp.Payload = out
				}
				mu.Lock()
				delete(running, req.CallId)
				mu.Unlock()
				cancel()
				select {
				case <-slots:
				default: // the stream's context ended while waiting for a slot
				}
				results <- resp // the writer drains results until it is closed
			}()
		}
		if len(batch.Cancel) > 0 {
			mu.Lock()
			for _, id := range batch.Cancel {
				if cancel := running[id]; cancel != nil {
					cancel()
				}
			}
			mu.Unlock()
		}
	}
	calls.Wait()
	close(results)
	werr := <-writerDone
	if isEOF(recvErr) || status.Code(recvErr) == codes.Canceled || errors.Is(recvErr, context.Canceled) {
		return werr
	}
	return recvErr
}

// writeBatches sends results as they come, each Send carrying everything
// that is ready (up to maxBatch). When stopping closes it sends one
// draining batch. It returns when results is closed: nil, or the first
// Send error (after which it only drains results, so no call goroutine
// ever blocks).
func writeBatches(results <-chan *loompb.InvokeResponse, maxBytes int, stopping <-chan struct{}, send func(*loompb.ResultBatch) error) error {
	var failed error
	drainSent := false
	for {
		var first *loompb.InvokeResponse
		select {
		case r, ok := <-results:
			if !ok {
				return failed
			}
			first = r
		case <-stopping:
			stopping = nil
			if failed == nil && !drainSent {
				drainSent = true
				failed = send(&loompb.ResultBatch{Draining: true})
			}
			continue
		}
		if failed != nil {
			continue
		}
		// Let the other calls that are about to answer do so first, so that
		// they share this write (the sender does the same, see mux.send).
		goruntime.Gosched()
		batch := &loompb.ResultBatch{Results: []*loompb.InvokeResponse{first}}
		size := resultSize(first)
	more:
		for len(batch.Results) < maxBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				if size+resultSize(r) > maxBytes {
					if failed = send(batch); failed != nil {
						break more
					}
					batch, size = &loompb.ResultBatch{}, 0
				}
				batch.Results = append(batch.Results, r)
				size += resultSize(r)
			default:
				break more
			}
		}
		if failed == nil {
			failed = send(batch)
		}
	}
}

func resultSize(r *loompb.InvokeResponse) int {
	n := 32 + len(r.Payload)
	if r.Error != nil {
		n += len(r.Error.Code) + len(r.Error.Message) + len(r.Error.OwnerHint)
	}
	return n
}

// maxBatch bounds the calls or results in one stream message.
const maxBatch = 1024

type coordinatorServer struct {
	loompb.UnimplementedCoordinatorServer
	s *Server
}

var errNoCoordinator = fmt.Errorf("%w: this node has no coordinator", runtime.ErrUnavailable)

func (c coordinatorServer) Forward(ctx context.Context, req *loompb.ForwardRequest) (*loompb.ForwardResponse, error) {
	h := c.s.opts.Forward
	if h == nil {
		return nil, statusError(errNoCoordinator)
	}
	out, err := h.HandleForward(ctx, int(req.Group), req.Batch)
	if err != nil {
		return nil, statusError(err)
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
		case <-t.s.stopping:
			return status.Error(codes.Unavailable, "server stopping")
		}
	}
}

// growStack makes the calling goroutine's stack at least about n bytes
// (up to 64 KiB) deep, so that it is grown now, while shallow, rather than
// copied later deep in a call.
func growStack(n int) {
	switch {
	case n > 32<<10:
		growStack64()
	case n > 16<<10:
		growStack32()
	case n > 8<<10:
		growStack16()
	default:
		growStack8()
	}
}

// growStack8 leaves room in an 8 KiB stack for the frames beneath it, so
// that the stack is grown to 8 KiB, a size the runtime keeps cached per
// processor, and not past it.
//
//go:noinline
func growStack8() {
	var buf [6 << 10]byte
	touchStack(buf[:])
}

//go:noinline
func growStack16() {
	var buf [16 << 10]byte
	touchStack(buf[:])
}

//go:noinline
func growStack32() {
	var buf [32 << 10]byte
	touchStack(buf[:])
}

//go:noinline
func growStack64() {
	var buf [64 << 10]byte
	touchStack(buf[:])
}

//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 1 }
