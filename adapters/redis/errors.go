package redis

import (
	"errors"
	"net"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// refusals are the error replies with which Redis refuses a command before
// running it. A script with a "#!lua" line declares that it may write, so
// the server checks these up front for it too.
var refusals = []string{
	"LOADING",     // still loading the data set after a start
	"BUSY",        // another script is running past its time limit
	"OOM",         // maxmemory reached
	"MISCONF",     // writes are stopped because the AOF or RDB cannot be written
	"READONLY",    // a replica
	"MASTERDOWN",  // a replica that lost its primary
	"NOREPLICAS",  // min-replicas-to-write not met
	"NOAUTH",      // authentication required
	"WRONGPASS",   // authentication failed
	"NOPERM",      // the ACL user may not run it
	"NOSCRIPT",    // the script cache does not hold it
	"CLUSTERDOWN", // the cluster cannot serve
	"TRYAGAIN",    // a cluster slot is being moved
}

// NotApplied reports whether err, the error of one go-redis command (or of
// a pipeline's command), proves that the command certainly had no effect:
// it was never written to a connection (no connection could be made, none
// was free in the pool, the client was closed), or Redis refused it before
// running it (one of the refusals above: LOADING, BUSY, OOM, MISCONF,
// READONLY, NOAUTH, NOSCRIPT, ...). false means it may have run: a timeout
// or a lost connection after it was sent, the context ending meanwhile, or
// any other error reply. nil is false.
func NotApplied(err error) bool {
	if err == nil {
		return false
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		code, _, _ := strings.Cut(rerr.Error(), " ")
		for _, c := range refusals {
			if code == c {
				return true
			}
		}
		return false
	}
	// Failures to get a connection happen before anything is written.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrPoolExhausted)
}
