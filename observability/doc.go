// Package observability is what an operator sees of a Loom node: its
// health, its Prometheus metrics, its traces and its logs. The node
// (package node) builds one of each and serves them over HTTP:
//
//	GET /health          Report as JSON; 503 when unhealthy
//	GET /health/live     200 while the node's HTTP server answers
//	GET /health/ready    200 when the node serves calls, else 503
//	GET /metrics         Prometheus text format (Metrics.Handler)
//	GET /traces?...      traces, cluster-wide (Traces)
//
// Dependencies point down: the node imports this package, this package
// imports runtime, lock, journal and config, and none of those imports
// Prometheus or OpenTelemetry's SDK. The runtime reports through
// runtime.Observer (implemented by Observer); the journal and the
// coordinator are observed by wrapping them (InstrumentJournal,
// InstrumentCoordinator); the Raft store, the runtime's pools and gossip
// membership are read on each scrape through small interfaces
// (RaftSource, ActorSource, a member-count function). Nothing here sets or
// reads an OpenTelemetry or Prometheus global.
//
// # Metrics
//
// NewMetrics builds one registry per node with the Go runtime and process
// collectors and the loom_* families: actors active, activations,
// deactivations by reason and evictions by type; calls by type, method and
// outcome with a latency histogram (counted once, at the node where the
// call entered the cluster); hops per call; mailbox depth; journal append
// latency, entries per append and outcomes; lock acquisitions, fencing
// rejections, session renewals and lapses; Raft role, term, commit and
// applied index, last contact, group-commit batches and the latency of
// Raft commands; gossip members by state; trace store size and
// evictions. Label values are bounded: actor types and methods are the
// registered ones (a call to an unknown one is not counted), outcomes
// and reasons are fixed lists.
//
// # Traces
//
// NewTracing builds, when tracing.enabled is set, an OpenTelemetry
// TracerProvider whose spans go to the node's TraceStore (and to an OTLP
// collector when tracing.otlpEndpoint is set) and the W3C trace-context
// propagator; with tracing off it returns nil and nothing records spans.
// A call yields spans for the HTTP gateway request, each forwarding hop
// (the transport's client span on the forwarding node), the turn where it
// is served ("loom.turn", kind server, covering the mailbox wait, the
// method and its commit), an activation under it ("loom.activate", with
// the lock acquisition and the journal reads of the replay) and the
// journal append; a call an actor makes during its turn is a child of
// that turn. The receiving side of a hop is the turn: one span per call
// on the owner keeps tracing cheap. Every span records the call's
// correlation id (loom.correlation_id), which travels in the context and
// on the wire, and is generated where a call enters the cluster without
// one.
//
// Spans are recorded on one of two paths, both implementations of the
// OpenTelemetry trace API, chosen by NewTracing:
//
//   - With an exporter (tracing.otlpEndpoint set), the OpenTelemetry SDK:
//     a TracerProvider with the TraceStore as one of its span processors
//     and a batching OTLP exporter. The SDK is what exporting needs (its
//     span snapshots, resource, batching), and it is paid for only then.
//   - Without one (the default when tracing is on), a light tracer
//     (storeProvider) that writes each span, as it ends, straight into the
//     store's record: no processors, no snapshot, one allocation per span
//     instead of eight, and frames small enough that a traced call needs
//     no larger goroutine stack (the SDK path has the transport pre-grow
//     each call's stack to 16 KiB). It costs a third of the SDK's time per
//     span (BenchmarkTurnSpan), which is what keeps the cost of tracing
//     within 15% of remote throughput (see docs/performance.md).
//
// Both record the same spans: the same sampling rule (a child as its
// parent, a root span unless it belongs to a background RPC), trace and
// span ids (fastIDs), parent links, kinds, names, times, status (which
// only moves up, unset < error < ok) and attributes (a key set again takes
// the new value; at most 128), and the correlation id of the starting
// context on the spans of other scopes (the SDK path's annotator).
// TestTracingPathsConform, the store tests and node's three-node trace
// test run on both. The light tracer keeps no events or links: the store
// keeps none on either path.
//
// The TraceStore keeps the node's spans in memory, bounded by
// tracing.maxTraceAge (a span is dropped once it ended longer ago) and
// tracing.maxSpans (the oldest go first); reads drop aged spans first, so
// none is ever returned past its age. Traces answers queries by
// correlation id, trace id, actor and time range, asking every alive peer
// over HTTP (GET /traces?scope=local) and merging, so any node answers for
// the whole cluster; a node that does not answer is named in the result.
// Spans are linked by parent span id and listed children; WriteTree
// prints them as an indented tree.
//
// # Health
//
// A Report has a status per component and overall the worst of them:
//
//   - locks: unhealthy when the coordinator session may have lapsed;
//     degraded when the last renewal is more than 1.5 renew intervals old.
//   - raft: unhealthy when no leader is known; degraded when a follower
//     has not heard from the leader for 5 s or lags the commit index by
//     1000 entries.
//   - membership: degraded when a member is dead or suspect.
//   - actorPools: degraded when a type's pool is full.
//
// Unhealthy answers 503 on /health and /health/ready; /health/live is 200
// as long as the HTTP server answers.
//
// # Logs
//
// NewLogger builds the node's slog logger (text or JSON, with a level)
// behind a ContextHandler, which adds correlation_id (and trace_id) to
// every line logged with a call's context; the node adds its id to every
// line.
package observability
