package redislock

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The test clock. It exists only in test binaries: a production
// Coordinator's scripts read Redis's TIME and nothing else, so no key, flag
// or option can move its clock.
//
// A test coordinator's scripts add to TIME the milliseconds stored at
// ClockOffsetKey (0 when absent). Advance raises that offset with INCRBY,
// so every test coordinator of one key prefix (and the sessions of all of
// them) sees time jump forward at once, atomically with respect to every
// script; time also passes as it does on the server. The offset only
// grows.

// ClockOffsetKey is the key holding the test clock's offset.
func (c *Coordinator) ClockOffsetKey() string { return c.base + "clock:offset" }

// NewTestClock is New with the test clock.
func NewTestClock(o Options) (*Coordinator, error) {
	base := o.Redis.Prefix() + "lock:"
	key := base + "clock:offset"
	if strings.Contains(key, "]==]") {
		return nil, fmt.Errorf("redislock: test clock: key prefix %q cannot be quoted in Lua", o.Redis.KeyPrefix)
	}
	clock := serverClock + `
local server_now_ms = now_ms
now_ms = function()
  return server_now_ms() + tonumber(redis.call('GET', [==[` + key + `]==]) or '0')
end
`
	return newCoordinator(o, clock)
}

// Advance moves the test clock of c's key prefix forward by d (rounded up
// to whole milliseconds).
func (c *Coordinator) Advance(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("redislock: advance by %v: the clock only moves forward", d)
	}
	return c.client.IncrBy(ctx, c.ClockOffsetKey(), ttlMillis(d)).Err()
}

// Base is the prefix of c's keys.
func (c *Coordinator) Base() string { return c.base }
