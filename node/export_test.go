package node

import (
	"context"
	"time"
)

// SetHTTPTimeouts makes a node built from o run its HTTP server with these
// timeouts (ReadHeaderTimeout, IdleTimeout, ReadTimeout) instead of
// limits.go's.
func SetHTTPTimeouts(o *Options, header, idle, read time.Duration) {
	o.httpLimits = &httpLimits{header: header, idle: idle, read: read}
}

// TransferGroupLeadership moves the leadership of Raft group g from n,
// which leads it, to node to.
func TransferGroupLeadership(ctx context.Context, n *Node, g int, to *Node) error {
	s := to.mesh.groups.Group(g).LocalServer()
	return n.mesh.groups.Group(g).TransferLeadership(ctx, s.ID, s.Address)
}
