package redisjournal

import (
	"errors"
	"net"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Sentinel errors, besides the journal package's. Both are wrapped with %w,
// together with the underlying go-redis error; test with errors.Is.
var (
	// ErrUnavailable: Redis could not be reached (no connection could be
	// made) or refused to run the operation before running it (it is
	// loading its data, busy with a script, out of memory, read-only, or
	// failing to write its append-only file). The operation had no effect;
	// it may be retried.
	ErrUnavailable = errors.New("redisjournal: redis unavailable, operation not applied")
	// ErrUnknownOutcome: the operation was sent to Redis and no answer came
	// back (the connection broke or timed out, or the caller's context
	// ended while it was in flight), or Redis answered with an error this
	// package does not know to be a refusal. It may or may not have taken
	// effect: Tail (or Read) tells. It is never reported as ErrFenced,
	// ErrConflict or another refusal.
	ErrUnknownOutcome = errors.New("redisjournal: sent to redis, outcome unknown")
)

// refusals are the error codes with which Redis refuses a script before
// running it (a script with a "#!lua" line declares that it may write, so
// these are checked up front): the operation had no effect.
var refusals = []string{
	"LOADING",    // still loading the data set after a start
	"BUSY",       // another script is running past its time limit
	"OOM",        // maxmemory reached
	"MISCONF",    // writes are stopped because the AOF or RDB cannot be written
	"READONLY",   // a replica
	"MASTERDOWN", // a replica that lost its primary
	"NOAUTH",     // authentication required
	"WRONGPASS",  // authentication failed
	"NOPERM",     // the ACL user may not run it
	"NOSCRIPT",   // the script cache does not hold it (retried after loading it)
}

// classify tells what a failed command means: notSent is true when the
// command certainly had no effect (it was never written to a connection, or
// Redis refused it before running it); false means it may have run.
func classify(err error) (notSent bool) {
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

func isNoScript(err error) bool { return goredis.HasErrorPrefix(err, "NOSCRIPT") }
