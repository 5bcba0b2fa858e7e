// Package transport carries Loom's traffic between nodes and from cluster
// clients to nodes over gRPC (proto/loom/v1/loom.proto, generated code in
// loompb, regenerated with `make proto`):
//
//   - Actors: actor calls. Pool.Invoke multiplexes calls on one long-lived
//     bidirectional stream per address; a sender goroutine writes whatever
//     is queued as one batch message, and the server runs each call in its
//     own goroutine and batches the results back the same way. The unary
//     Invoke exists too (Pool.InvokeUnary).
//   - Coordinator: Raft commands a follower forwards to the leader (opaque
//     bytes; raftlock encodes them).
//   - Topology: a stream of the cluster's membership, for clients.
//
// Errors cross the wire as a stable code, the remote message and whether the
// call may have taken effect, and come back as the same sentinel errors
// (errors.Is works on both sides; see errors.go). What a failure means for
// the caller:
//
//   - runtime.ErrUnavailable (and the errors that wrap it) before anything
//     was sent — no stream could be opened, the address is unknown — the
//     call had no effect and may be retried anywhere.
//   - ErrUnknownOutcome: the request was sent and the connection failed
//     before the answer came; it may have taken effect. Not safe to retry
//     unless the operation is idempotent.
//   - context.DeadlineExceeded / Canceled: the caller stopped waiting; the
//     outcome is unknown if the call was already sent.
//   - Every other remote error carries the remote node's verdict.
//
// Correlation ids and idempotency keys travel in gRPC metadata (unary) or in
// the request (stream) and arrive in the handler's context; deadlines travel
// with gRPC (unary) or in the request (stream). OpenTelemetry context is
// propagated by otelgrpc stats handlers using the TracerProvider and
// propagator given in the options (the global ones if nil; this package sets
// no globals).
//
// Goroutines: a Server runs gRPC's goroutines plus, per Stream, one result
// writer and one goroutine per call. A Pool owns, per address with a live
// stream, one sender and one receiver goroutine; Close stops them all.
package transport
