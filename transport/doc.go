// Package transport carries Loom's traffic between nodes, and from cluster
// clients to nodes, over gRPC. The wire protocol is proto/loom/v1/loom.proto
// (generated code in loompb, committed; `make proto` regenerates it):
//
//   - Actors: actor calls. Invoke is one unary call; Stream multiplexes many
//     calls, tagged with call ids, on one bidirectional stream.
//   - Coordinator: Raft commands a follower forwards to the leader (opaque
//     bytes; raftlock encodes them).
//   - Topology: a stream of the cluster's membership, for clients.
//   - Tasks: runs a stateless task registered on the node (package task)
//     by name, one unary call; Pool.RunTask is its calling side.
//   - Messages: accepts a durable one-way message to an actor (package
//     messaging), one unary call answered once the message is durable;
//     Pool.Send is its calling side. The envelope travels whole (a
//     traceparent it names too); the correlation id travels in the
//     request, the trace context in otelgrpc's metadata (another client
//     may put either in the request or in metadata: the request's win),
//     and the deadline is gRPC's. A refusal is a gRPC status from the
//     error table, exactly as Actors.Invoke answers.
//
// A Server serves the services from handler interfaces (ActorHandler,
// ForwardHandler, TopologySource, TaskHandler, MessageHandler), so this
// package knows nothing of nodes or the runtime's internals. A Pool is the
// calling side: one connection per address, shared by everything that
// talks to it.
//
// # Calls on streams
//
// Pool.Invoke sends calls on long-lived streams (opened on demand), one
// per address unless PoolOptions.StreamsPerAddr says more. Each stream has
// a sender goroutine that writes everything queued since its last write as
// ONE InvokeBatch message, so 64 concurrent callers cost a handful of
// writes, not 64. The server runs each call in its own goroutine and its
// writer batches the results back the same way. Per-call metadata travels
// in the request: correlation id, idempotency key, call chain
// (runtime.CallChain), the durable message the call delivers, if it does
// (runtime.WithDelivery: its id, attempts and headers, so that the
// owner's turn acknowledges it; on both paths), the time left before
// the caller's deadline (a duration, started on the receiver's monotonic
// clock when the call arrives, as gRPC's grpc-timeout is: the nodes' wall
// clocks never meet) and trace context. A caller whose context ends stops waiting at once, and
// the server is told to cancel the call. Pool.InvokeUnary (or
// PoolOptions.Unary) sends one unary RPC per call instead; there the
// correlation id and idempotency key travel in gRPC metadata and the
// deadline is gRPC's own.
//
// # What an error means
//
// Errors cross the wire as a stable code, the remote message and whether the
// call may have taken effect (one table, errors.go), and come back as errors
// that match the same sentinel on the caller's side (errors.Is: the
// runtime's and the journal's sentinels, ErrNotOwner; errors.As:
// *runtime.MethodError), with the remote message. MaybeApplied tells the two
// kinds of failure apart:
//
//   - Not applied, safe to retry: runtime.ErrUnavailable and everything that
//     wraps it (ErrNotOwner, whose OwnerHint names the holder when known;
//     ErrClosed; a connection that could not be made or a stream that could
//     not be opened: the request never left), and remote errors whose code
//     says so (unknown type or method, bad payload, fenced, conflict, ...).
//     A call queued on a stream that breaks before it was written is moved
//     to another stream, transparently.
//   - Outcome unknown: ErrUnknownOutcome. The request was written and the
//     connection failed (or the server was stopped hard) before the answer
//     came. It may have taken effect; retry only what is idempotent. A
//     Pool.Send is: sent again with the same message id, it is accepted
//     once (the store keeps the id) and answered with the first acceptance.
//   - The caller's context ended: the error matches ctx.Err(); if the call
//     had been sent it also matches ErrUnknownOutcome.
//   - A remote error the table does not know travels as code "internal",
//     maybe applied, with its message.
//
// # Stopping
//
// Server.Stop is graceful until its context ends: the listener closes, each
// call stream is told to drain (the client sends its new calls elsewhere,
// sends what it had queued and half-closes), running calls finish and are
// answered. When the context ends first, connections are cut and the calls
// still running see their context canceled; their callers get
// ErrUnknownOutcome.
//
// # TLS and roles
//
// ServerOptions.TLS and PoolOptions.TLS carry crypto/tls configurations
// (security/tlsconf builds them; nil is plaintext). With
// ServerOptions.CheckRoles the server refuses the node-internal methods
// (NodeOnly: Coordinator.Forward, the Raft commands a follower sends its
// leader) with PermissionDenied unless the peer presented a node
// certificate; the caller gets ErrPermissionDenied (not applied). Actor
// calls, tasks, messages and topology watches are open to client
// certificates: a node forwarding an actor call uses the same Actors
// service a client does. After a TLS handshake the pool waits for the
// server's first bytes, so that a certificate the server refuses (TLS 1.3
// tells the client only after its handshake) fails the connection with
// the server's alert, and connection errors that come from one side
// speaking TLS and the other not, or from a refused certificate, say so
// and match ErrTLSMismatch (and runtime.ErrUnavailable: nothing was sent).
//
// # Bearer tokens
//
// With ServerOptions.Tokens every call needs a bearer token in the
// "authorization" metadata with the scope it needs (package
// security/auth): an actor call or a send, actors:call:<type>; a task,
// tasks:run; opening a call stream or a topology watch, any valid token.
// Each call on a stream is checked on its own, so a token for one actor
// type cannot call another through a stream opened with it. A peer with
// a verified node certificate needs no token (nodes forward calls for
// callers already checked), and no token opens the node-internal methods.
// Refusals are ErrUnauthenticated and ErrPermissionDenied, never applied;
// a refused stream fails its calls with the refusal. PoolOptions.Token
// sends a token, and only over TLS.
//
// # Limits
//
// A Server bounds what any peer can make it hold or read: a connection
// must finish its TLS handshake and HTTP/2 preface within
// HandshakeTimeout of its accept (gRPC's own default is two minutes), or
// it is closed; a call's metadata must fit in MaxHeaderListBytes and each
// message in ServerOptions.MaxMessageBytes (past it the call is refused
// with ResourceExhausted, naming the limit); a call stream runs at most
// MaxStreamCalls calls at once. Past its handshake a connection stays
// open while its peer answers keepalive pings, even with no call: a Pool
// keeps its connections open between calls, so idleness alone must not
// close one.
//
// # Tracing
//
// otelgrpc stats handlers run on both sides with the TracerProvider and
// Propagator given in the options; nil means no-op. Calls on a stream carry
// their own trace context (injected and extracted with the same
// Propagator), and get a client and a server span when a TracerProvider is
// given. This package never reads or sets the OpenTelemetry globals.
//
// # Goroutines
//
// A Server runs on gRPC's goroutines; a Stream handler additionally starts
// one writer goroutine and one goroutine per call, and returns only after
// all of them have. Stop returns after every handler has returned, so
// handlers must honor their context. A Pool owns, per open stream, one
// sender and one receiver goroutine, and one goroutine per topology watch;
// every one of them ends when its stream ends, and Close waits for all of
// them. A Pool's state is guarded by Pool.mu (peers), each stream's by its
// own mutex (queue and calls waiting); callers only wait on a channel.
package transport
