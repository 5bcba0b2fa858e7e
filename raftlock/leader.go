package raftlock

import (
	"context"
	"time"
)

// watchLeadership is the goroutine that follows Raft's leadership
// notifications and observations, started by Open and stopped by Close.
// When this node becomes leader it starts a leadership goroutine (lead);
// when it loses leadership it stops it and clears ready. Every change
// closes s.changed, which wakes the committer. It never calls into Raft, so
// Raft never blocks on it.
func (s *Store) watchLeadership() {
	defer s.bgWG.Done()
	for {
		select {
		case isLeader := <-s.notifyCh:
			s.lmu.Lock()
			if s.leaderStop != nil {
				s.leaderStop()
				s.leaderStop = nil
			}
			s.ready = false
			s.office.Store(nil)
			s.leaderGen++
			if isLeader {
				ctx, stop := context.WithCancel(s.ctx)
				s.leaderStop = stop
				s.bgWG.Add(1)
				go s.lead(ctx, s.leaderGen)
			}
			s.signalChangedLocked()
			s.lmu.Unlock()
			s.log.Info("raftlock: leadership changed", "leader", isLeader)
		case <-s.observeCh:
			s.lmu.Lock()
			s.signalChangedLocked()
			s.lmu.Unlock()
		case <-s.ctx.Done():
			s.lmu.Lock()
			if s.leaderStop != nil {
				s.leaderStop()
				s.leaderStop = nil
			}
			s.ready = false
			s.signalChangedLocked()
			s.lmu.Unlock()
			return
		}
	}
}

// signalChangedLocked wakes whoever waits on changed and cancels the
// forwards in flight to the leader known until now (routeCtx): a leader
// that stopped answering (paused, cut off) would otherwise hold them, and
// the forward slots, until the connection dies. Their commands are retried
// with the same ids, flagged as retries, so dedup applies each once.
func (s *Store) signalChangedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	s.routeCancel()
	s.routeCtx, s.routeCancel = context.WithCancel(s.ctx)
}

// lead runs while this node is the leader (generation gen). It takes
// office: a Barrier, so that every entry of earlier terms is applied here,
// then the leader-start command, which extends every live session to at
// least a full TTL from this leader's clock. Only then does the committer
// use this node as the leader (ready). Afterwards it reaps lapsed sessions
// every ReapInterval until leadership ends.
func (s *Store) lead(ctx context.Context, gen uint64) {
	defer s.bgWG.Done()
	if err := s.raft.Barrier(0).Error(); err != nil {
		s.log.Info("raftlock: barrier on taking office failed", "err", err)
		return
	}
	// This office's clock goes on from the later of the state machine's
	// clock (every earlier stamp is applied here now) and this node's wall
	// clock, at the rate of its monotonic clock.
	_, clock, _ := s.fsm.progress()
	s.lmu.Lock()
	if ctx.Err() == nil && gen == s.leaderGen { // not already deposed
		s.office.Store(&officeClock{base: max(clock, s.cfg.Now().UnixNano()), at: s.monotonic()})
	}
	s.lmu.Unlock()
	start := encodeBatch(s.stamp(), [][]byte{encodeCommand(command{op: opLeaderStart})})
	f := s.raft.Apply(start, 0)
	if err := f.Error(); err != nil {
		s.log.Info("raftlock: leader-start failed", "err", err)
		return
	}
	if resp, ok := f.Response().(*applyResponse); !ok || resp.err != nil {
		// This node's state machine has failed: it cannot serve, so it
		// hands leadership to another node (best effort).
		s.log.Error("raftlock: leader-start was not applied; transferring leadership", "response", f.Response())
		_ = s.raft.LeadershipTransfer()
		return
	}
	s.lmu.Lock()
	if ctx.Err() == nil && gen == s.leaderGen {
		s.ready = true
		s.signalChangedLocked()
	}
	s.lmu.Unlock()
	s.log.Info("raftlock: leader ready", "term", s.raft.Stats()["term"])

	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lapsed, err := s.fsm.hasLapsed(s.stamp().UnixNano())
		if err != nil || !lapsed {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*s.cfg.ReapInterval)
		if _, err := s.exec(rctx, command{op: opReap}); err != nil && ctx.Err() == nil {
			s.log.Warn("raftlock: reap failed", "err", err)
		}
		cancel()
	}
}

// officeClock is a leader's clock: base (UnixNano) when the monotonic clock
// read at.
type officeClock struct {
	base int64
	at   time.Duration
}

// stamp is the time a leader stamps into an entry: its office clock, or
// Now on a node not in office.
func (s *Store) stamp() time.Time {
	if oc := s.office.Load(); oc != nil {
		return time.Unix(0, oc.base+int64(s.monotonic()-oc.at))
	}
	return s.cfg.Now()
}
