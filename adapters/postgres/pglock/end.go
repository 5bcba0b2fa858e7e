package pglock

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

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
		return 0, fmt.Errorf("pglock: %s: empty owner: %w", o, lock.ErrInvalid)
	}
	var n int64
	err := c.run(ctx, o, write, func(ctx context.Context, conn *pgxpool.Conn) error {
		tag, err := conn.Exec(ctx, c.sql.endOwner, []byte(owner), string(keep))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
