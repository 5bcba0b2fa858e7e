package replica

import (
	"context"
	"fmt"
	"time"
)

// watchLeadership is the goroutine that follows Raft's leadership
// notifications and observations, started by Open and stopped by Close.
// When this node becomes leader it starts a leadership goroutine (lead);
// when it loses leadership it stops it and clears ready. Every change
// closes g.changed, which wakes the committer. It never calls into Raft, so
// Raft never blocks on it.
func (g *Group[R]) watchLeadership() {
	defer g.bgWG.Done()
	for {
		select {
		case isLeader := <-g.notifyCh:
			g.lmu.Lock()
			if g.leaderStop != nil {
				g.leaderStop()
				g.leaderStop = nil
			}
			g.ready = false
			g.office.Store(nil)
			g.leaderGen++
			if isLeader {
				ctx, stop := context.WithCancel(g.ctx)
				g.leaderStop = stop
				g.bgWG.Add(1)
				go g.lead(ctx, g.leaderGen)
			}
			g.signalChangedLocked()
			g.lmu.Unlock()
			g.log.Info(g.name+": leadership changed", "leader", isLeader)
		case <-g.observeCh:
			g.lmu.Lock()
			g.signalChangedLocked()
			g.lmu.Unlock()
		case <-g.ctx.Done():
			g.lmu.Lock()
			if g.leaderStop != nil {
				g.leaderStop()
				g.leaderStop = nil
			}
			g.ready = false
			g.signalChangedLocked()
			g.lmu.Unlock()
			return
		}
	}
}

// signalChangedLocked wakes whoever waits on changed and cancels the
// forwards in flight to the leader known until now (routeCtx): a leader
// that stopped answering (paused, cut off) would otherwise hold them, and
// the forward slots, until the connection dies. Their commands are retried
// with the same ids, flagged as retries, so dedup applies each once.
func (g *Group[R]) signalChangedLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
	g.routeCancel()
	g.routeCtx, g.routeCancel = context.WithCancel(g.ctx)
}

// lead runs while this node is the leader (generation gen). It takes
// office: a Barrier, so that every entry of earlier terms is applied here,
// the office clock, then Config.TakeOffice. Only then does the committer
// use this node as the leader (ready). Afterwards it runs
// Config.WhileLeading until leadership ends.
func (g *Group[R]) lead(ctx context.Context, gen uint64) {
	defer g.bgWG.Done()
	// A failed attempt (a leadership transfer under way, which refuses
	// new entries until it ends, or a slow disk) is tried again while
	// this node still leads: a leader that never took office would hold
	// its group without serving it until an election it never loses.
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := g.takeOffice(ctx, gen)
		if err == nil {
			break
		}
		g.log.Info(g.name+": taking office failed; trying again while leading", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done(): // deposed, or closing
			t.Stop()
			return
		case <-t.C:
		}
	}
	g.lmu.Lock()
	if ctx.Err() == nil && gen == g.leaderGen {
		g.ready = true
		g.signalChangedLocked()
	}
	g.lmu.Unlock()
	g.log.Info(g.name+": leader ready", "term", g.raft.Stats()["term"])
	if g.cfg.WhileLeading != nil {
		g.cfg.WhileLeading(ctx, g)
	}
}

// takeOffice makes one attempt at what lead does before the node is
// ready: a Barrier, so that every entry of earlier terms is applied here,
// the office clock, then Config.TakeOffice.
func (g *Group[R]) takeOffice(ctx context.Context, gen uint64) error {
	if err := g.raft.Barrier(0).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	// This office's clock goes on from the later of the state machine's
	// clock (every earlier stamp is applied here now) and this node's wall
	// clock, at the rate of its monotonic clock.
	_, clock, _ := g.fsm.Progress()
	g.lmu.Lock()
	if ctx.Err() == nil && gen == g.leaderGen && g.office.Load() == nil { // not already deposed
		g.office.Store(&officeClock{base: max(clock, g.cfg.Now().UnixNano()), at: g.monotonic()})
	}
	g.lmu.Unlock()
	if g.cfg.TakeOffice != nil {
		return g.cfg.TakeOffice(ctx, g.commitOffice)
	}
	return nil
}

// commitOffice commits cmds as one Raft entry stamped with the office
// clock, bypassing the committer (which does not use this node before it
// has taken office), and returns their results once applied here.
func (g *Group[R]) commitOffice(cmds ...[]byte) ([]R, error) {
	f := g.raft.Apply(g.wire.EncodeBatch(g.Stamp(), cmds), 0)
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, results, err := g.response(f.Response(), len(cmds))
	if err != nil {
		// This node's state machine has failed: it cannot serve, so it
		// hands leadership to another node (best effort).
		g.log.Error(g.name+": the entry taking office was not applied; transferring leadership", "err", err)
		_ = g.raft.LeadershipTransfer()
		return nil, err
	}
	return results, nil
}

// officeClock is a leader's clock: base (UnixNano) when the monotonic clock
// read at.
type officeClock struct {
	base int64
	at   time.Duration
}

// Stamp is the time a leader stamps into an entry: its office clock, which
// started, when it took office, at the later of the state machine's clock
// and its wall clock (Config.Now), and advances by its monotonic clock;
// or Now on a node not in office.
func (g *Group[R]) Stamp() time.Time {
	if oc := g.office.Load(); oc != nil {
		return time.Unix(0, oc.base+int64(g.monotonic()-oc.at))
	}
	return g.cfg.Now()
}
