package node

import (
	"net/http"
	"time"
)

// The HTTP port's bounds. The other ports bound themselves: gRPC in
// package transport (HandshakeTimeout, MaxHeaderListBytes,
// MaxMessageBytes), Raft in raftlock (replica.AcceptTimeout), gossip in
// memberlist (cluster.Config.TCPTimeout, its packet and state limits).
const (
	// httpHeaderTimeout bounds, from the accept (or from the first byte
	// of a later request on a kept-alive connection), the TLS handshake
	// (net/http uses the smallest of its timeouts for it) and the request
	// line and headers. 10 s is ample for a few hundred bytes, and the
	// gRPC and Raft ports' handshake bound.
	httpHeaderTimeout = 10 * time.Second

	// httpIdleTimeout closes a kept-alive connection that sends no next
	// request for this long (without it net/http keeps one forever).
	// It is longer than Go's http.Transport keeps an idle connection
	// (90 s), so a Go client drops its idle connection first and never
	// sends a request on one the node is closing.
	httpIdleTimeout = 2 * time.Minute

	// httpMaxHeaderBytes bounds the request line and headers (past it:
	// 431 Request Header Fields Too Large), instead of net/http's 1 MiB.
	// It bounds their number too: net/http has no limit of its own on the
	// count (textproto is called with none), and each field takes at
	// least 4 bytes, some 200 bytes once parsed. The gateway's headers
	// (correlation id, Idempotency-Key of at most 256 bytes, X-Loom-
	// Timeout, trace context, a bearer token) take a few hundred bytes;
	// 32 KiB is what nginx accepts by default. (net/http reads 4 KiB past
	// it before it refuses.)
	httpMaxHeaderBytes = 32 << 10

	// httpReadTimeout and httpReadTimePerMiB bound how long a request
	// may take to arrive, headers and body, from where httpHeaderTimeout
	// starts (http.Server.ReadTimeout): 30 s plus 1 s per MiB of
	// node.maxPayloadBytes (34 s with the default 4 MiB), so the largest
	// body the gateway accepts arrives in time at 1 MiB/s, and a client
	// that trickles or stalls cannot hold the connection longer. The
	// deadline ends with the body: net/http lifts it when it starts
	// watching the connection for a client that goes away, once the body
	// has been read (or at once, without a body), so a call that runs
	// longer, as X-Loom-Timeout may ask, is not cut. There is no
	// WriteTimeout: net/http starts it when the headers are read, so it
	// would cut such calls; a client that does not read its response
	// holds its connection until the response fits in the socket buffers.
	httpReadTimeout    = 30 * time.Second
	httpReadTimePerMiB = time.Second
)

// httpLimits are the timeouts the HTTP server runs with: the constants
// above, shorter in tests (Options.httpLimits).
type httpLimits struct {
	header, idle, read time.Duration
}

// httpLimits returns the node's HTTP timeouts; read includes the time per
// MiB of node.maxPayloadBytes.
func (n *Node) httpLimits() httpLimits {
	if n.opts.httpLimits != nil {
		return *n.opts.httpLimits
	}
	mib := time.Duration((n.cfg.Node.MaxPayloadBytes + 1<<20 - 1) >> 20)
	return httpLimits{header: httpHeaderTimeout, idle: httpIdleTimeout, read: httpReadTimeout + mib*httpReadTimePerMiB}
}

// httpServer is the node's HTTP server for h, with the bounds above.
func (n *Node) httpServer(h http.Handler) *http.Server {
	l := n.httpLimits()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.header,
		ReadTimeout:       l.read,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    httpMaxHeaderBytes,
	}
}

// grpcMessageBytes is the largest gRPC message the node sends or takes,
// between nodes: room for a call of node.maxPayloadBytes (a call may use
// 3/4 of a message, the rest is its envelope and the batch it shares),
// and never below transport's default of 16 MiB. Without it a payload
// over 12 MiB, which the config allows up to 256 MiB, could not cross
// nodes.
func grpcMessageBytes(maxPayload int) int {
	return max(16<<20, (maxPayload/3)*4+(1<<20))
}
