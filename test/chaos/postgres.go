package chaos

import (
	"context"
	"fmt"
	"time"
)

// A mixed scenario (Scenario.Postgres) keeps the nodes' journals, and
// with them their message queues, in one PostgreSQL server, while the
// locks and fencing tokens stay in the cluster's Raft group: the journal
// checks the Raft coordinator's tokens. Every Raft fault still applies,
// and the nemesis also kills the server.

// PostgresServer is the PostgreSQL server of a mixed scenario: the tests
// pass an internal/pgtest.Server (fsync and synchronous_commit on). Kill
// and Restart are called from the goroutine that runs the scenario.
type PostgresServer interface {
	// Kill kills the postmaster and its children with SIGKILL at once,
	// as a power cut of the processes would, and waits for them.
	Kill()
	// Restart starts it again on the same port and data directory; it
	// recovers from its write-ahead log.
	Restart() error
}

// PostgresKill kills -9 the PostgreSQL server and restarts it after
// KillDown, on its data directory: what it committed (every acknowledged
// append) must be there after its recovery. No journal can be read or
// appended meanwhile: the downtime is the fault's designed outage.
const PostgresKill FaultKind = "postgres-kill"

func init() {
	hookFaults[PostgresKill] = (*Nemesis).postgresKill
}

func (n *Nemesis) postgresKill(ctx context.Context) FaultEvent {
	if n.postgres == nil {
		return n.failed(fmt.Errorf("no PostgreSQL server to kill (not a mixed scenario)"))
	}
	down := n.between(n.opts.KillDown).Round(time.Millisecond)
	ev := FaultEvent{Kind: PostgresKill, Node: "postgres", Hold: down.String(),
		Detail: "kill -9 of the PostgreSQL server (fsync on), restarted on its data directory"}
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, down)
	ev.Start = n.rec.Now()
	n.postgres.Kill()
	// Down for the schedule's time even if ctx ended: the cluster must be
	// whole again.
	sleep(ctx, down)
	if err := n.postgres.Restart(); err != nil {
		ev.Err = "restarting PostgreSQL: " + err.Error()
	}
	ev.Heal = n.rec.Now()
	ev.Outage = Dur(ev.Heal - ev.Start)
	return n.waitNodes(ctx, ev)
}
