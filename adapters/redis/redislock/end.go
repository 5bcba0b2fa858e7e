package redislock

import (
	"context"
	"fmt"

	"github.com/loom-mesh/loom/lock"
)

// EndSessionsOf ends every alive session whose owner is owner except keep
// ("" keeps none), freeing their locks at once, and returns how many it
// ended. A node calls it when it starts, for the sessions of its previous
// incarnation (a crash, a kill -9): their locks would otherwise stay held
// until the sessions' TTL ran out. Node ids are unique in a cluster, so no
// other live node owns them.
func (c *Coordinator) EndSessionsOf(ctx context.Context, owner string, keep lock.SessionID) (int, error) {
	o := op{name: "end sessions", owner: owner}
	if owner == "" {
		return 0, fmt.Errorf("redislock: %s: empty owner: %w", o, lock.ErrInvalid)
	}
	v, err := c.run(ctx, o, c.scripts.endOwner, []string{c.base + "sessions"}, owner, string(keep), sweepBudget)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok || n < 0 {
		return 0, c.badReply(o, v)
	}
	return int(n), nil
}
