package redisjournal

import (
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/journal"
)

// Sentinel errors, besides the journal package's. Both are wrapped with %w,
// together with the underlying go-redis error; test with errors.Is. Each
// wraps the journal contract's sentinel of the same name, so a caller that
// knows only the contract tests journal.ErrUnavailable and
// journal.ErrUnknownOutcome.
var (
	// ErrUnavailable: Redis could not be reached (no connection could be
	// made) or refused to run the operation before running it (it is
	// loading its data, busy with a script, out of memory, read-only, or
	// failing to write its append-only file). The operation had no effect;
	// it may be retried. It wraps journal.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("redisjournal: redis unavailable, operation not applied: %w", journal.ErrUnavailable)
	// ErrUnknownOutcome: the operation was sent to Redis and no answer came
	// back (the connection broke or timed out, or the caller's context
	// ended while it was in flight), or Redis answered with an error this
	// package does not know to be a refusal. It may or may not have taken
	// effect: Tail (or Read) tells. It is never reported as ErrFenced,
	// ErrConflict or another refusal. It wraps journal.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("redisjournal: sent to redis, outcome unknown: %w", journal.ErrUnknownOutcome)
)

func isNoScript(err error) bool { return goredis.HasErrorPrefix(err, "NOSCRIPT") }
