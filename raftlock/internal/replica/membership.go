package replica

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Membership and introspection.

// CaughtUp reports whether this server, a follower, has applied the log
// up to about the leader's commit index as the leader last told it (within
// MaxAppendEntries entries), and heard from the leader within an election
// timeout: it could vote and acknowledge without first replaying a
// backlog. The leader reports true.
func (g *Group[R]) CaughtUp() bool {
	if leads, follows := g.role(); leads || !follows {
		return leads
	}
	commit := g.raft.CommitIndex()
	if commit == 0 {
		return false
	}
	return g.raft.AppliedIndex()+uint64(max(g.cfg.Raft.MaxAppendEntries, 1)) >= commit
}

// Replicating reports whether this node's replica follows the group's
// log: it leads, or it is a follower in its own latest configuration that
// heard from the leader within an election timeout. A node the group does
// not run on (Config.Partial) is not replicating.
func (g *Group[R]) Replicating() bool {
	if leads, follows := g.role(); leads || !follows {
		return leads
	}
	for _, s := range g.raft.GetConfiguration().Configuration().Servers {
		if s.ID == g.id {
			return true
		}
	}
	return false
}

// role reports whether this server leads, or follows a leader it heard
// from within an election timeout.
func (g *Group[R]) role() (leads, follows bool) {
	switch g.raft.State() {
	case raft.Leader:
		return true, false
	case raft.Follower:
		return false, time.Since(g.raft.LastContact()) <= g.cfg.Raft.ElectionTimeout
	}
	return false, false
}

// LocalID is this node's Raft server id.
func (g *Group[R]) LocalID() raft.ServerID { return g.id }

// Addr is the Raft address peers reach this node at.
func (g *Group[R]) Addr() raft.ServerAddress { return g.trans.LocalAddr() }

// LocalServer describes this node as a voter, for Bootstrap.
func (g *Group[R]) LocalServer() raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: g.id, Address: g.Addr()}
}

// HasState reports whether the node had Raft state (a log, a snapshot or a
// term) when it was opened.
func (g *Group[R]) HasState() bool { return g.hasState }

// Bootstrap creates a new cluster whose configuration is servers. It fails
// (wrapping raft.ErrCantBootstrap) if the node has state already.
func (g *Group[R]) Bootstrap(servers []raft.Server) error {
	if err := g.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return fmt.Errorf("%s: bootstrap: %w", g.name, err)
	}
	return nil
}

// AddVoter adds (or promotes) a voting server. Leader only: elsewhere it
// fails with Errors.NotLeader. It waits until the change is committed or
// Raft gives up (leadership lost, shutdown); ctx's deadline bounds the
// wait for Raft to take the change.
func (g *Group[R]) AddVoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return g.membership(ctx, "add voter "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return g.raft.AddVoter(id, addr, 0, timeout)
	})
}

// AddNonvoter adds a server that receives the log but does not vote.
// Leader only, like AddVoter.
func (g *Group[R]) AddNonvoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return g.membership(ctx, "add nonvoter "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return g.raft.AddNonvoter(id, addr, 0, timeout)
	})
}

// RemoveServer removes a server from the cluster. Leader only, like
// AddVoter.
func (g *Group[R]) RemoveServer(ctx context.Context, id raft.ServerID) error {
	return g.membership(ctx, "remove server "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return g.raft.RemoveServer(id, 0, timeout)
	})
}

func (g *Group[R]) membership(ctx context.Context, what string, change func(timeout time.Duration) raft.IndexFuture) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.isClosed() {
		return g.errs.Closed
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	// Raft answers within a few round trips, or fails once it loses
	// leadership or shuts down; the deadline bounds the wait to enqueue.
	if err := change(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			id, addr := g.Leader()
			return fmt.Errorf("%s: %s: %w (leader is %q at %q): %w", g.name, what, g.errs.NotLeader, id, addr, err)
		}
		return fmt.Errorf("%s: %s: %w", g.name, what, err)
	}
	return nil
}

// TransferLeadership hands this node's leadership to the voter id at
// addr and returns once that server has won an election (or the transfer
// failed: ErrNotLeader on a node that does not lead). Commands sent
// meanwhile are refused by Raft and retried by the committer.
func (g *Group[R]) TransferLeadership(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.isClosed() {
		return g.errs.Closed
	}
	f := g.raft.LeadershipTransferToServer(id, addr)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("%s: transfer leadership to %s: %w: %w", g.name, id, g.errs.NotLeader, err)
		}
		if err != nil {
			return fmt.Errorf("%s: transfer leadership to %s: %w", g.name, id, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err() // Raft ends the transfer after an election timeout
	}
}

// Leader returns the id and address of the leader this node knows of;
// empty if none.
func (g *Group[R]) Leader() (raft.ServerID, raft.ServerAddress) {
	addr, id := g.raft.LeaderWithID()
	return id, addr
}

// LeaderChanged returns a channel that is closed the next time the
// leader this node knows of changes, or this node takes or leaves office.
func (g *Group[R]) LeaderChanged() <-chan struct{} {
	g.lmu.Lock()
	defer g.lmu.Unlock()
	return g.changed
}

// State is this node's Raft state (Follower, Candidate, Leader, Shutdown).
func (g *Group[R]) State() raft.RaftState { return g.raft.State() }

// IsLeader reports whether this node is the leader and has taken office
// (Config.TakeOffice succeeded), so that it commits commands itself
// instead of forwarding them.
func (g *Group[R]) IsLeader() bool {
	g.lmu.Lock()
	defer g.lmu.Unlock()
	return g.ready
}

// Configuration returns the latest cluster configuration.
func (g *Group[R]) Configuration() (raft.Configuration, error) {
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("%s: configuration: %w", g.name, err)
	}
	return f.Configuration(), nil
}

// Stats returns Raft's statistics (raft.Raft.Stats) plus the Group's:
// fsm_applied_index, fsm_clock (the state machine's clock, RFC 3339),
// fsm_error (if it failed), batches and batch_commands (Raft entries this
// node committed as leader and the commands in them), forwards and
// forwarded_commands (requests this node sent to the leader and the
// commands in them), nudges and send_retries.
func (g *Group[R]) Stats() map[string]string {
	st := maps.Clone(g.raft.Stats())
	applied, clock, failed := g.fsm.Progress()
	st["fsm_applied_index"] = strconv.FormatUint(applied, 10)
	st["fsm_clock"] = time.Unix(0, clock).UTC().Format(time.RFC3339Nano)
	if failed != nil {
		st["fsm_error"] = failed.Error()
	}
	st["batches"] = strconv.FormatUint(g.stats.batches.Load(), 10)
	st["batch_commands"] = strconv.FormatUint(g.stats.commands.Load(), 10)
	st["forwards"] = strconv.FormatUint(g.stats.forwards.Load(), 10)
	st["forwarded_commands"] = strconv.FormatUint(g.stats.forwarded.Load(), 10)
	st["send_retries"] = strconv.FormatUint(g.stats.retries.Load(), 10)
	st["nudges"] = strconv.FormatUint(g.stats.nudges.Load(), 10)
	return st
}

// AppliedIndex is the index of the last Raft entry applied to this node's
// state machine.
func (g *Group[R]) AppliedIndex() uint64 {
	applied, _, _ := g.fsm.Progress()
	return applied
}

// Snapshot asks Raft to snapshot the state machine now (and truncate the
// log).
func (g *Group[R]) Snapshot() error {
	if err := g.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("%s: snapshot: %w", g.name, err)
	}
	return nil
}

// VotesRefused is how many vote and pre-vote requests this server refused
// because it was not in its own configuration (see Config.VoteGate).
func (g *Group[R]) VotesRefused() uint64 {
	if g.gate == nil {
		return 0
	}
	return g.gate.refused.Load()
}
