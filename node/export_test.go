package node

import "time"

// SetHTTPTimeouts makes a node built from o run its HTTP server with these
// timeouts (ReadHeaderTimeout, IdleTimeout, ReadTimeout) instead of
// limits.go's.
func SetHTTPTimeouts(o *Options, header, idle, read time.Duration) {
	o.httpLimits = &httpLimits{header: header, idle: idle, read: read}
}
