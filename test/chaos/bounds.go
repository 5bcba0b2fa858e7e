package chaos

import (
	"fmt"
	"math"
	"time"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/raftlock"
)

// Bounds are the liveness bounds a run checks, each derived from the
// nodes' configuration (their config file and the settings their command
// line adds, read back by Cluster.Config) as the node derives its Raft and
// gossip timings from it (node/mesh_start.go), not picked by hand: a loose
// constant hides a cluster that stalls for as long as the constant allows.
type Bounds struct {
	// Coordination is coordination.backend: raft, or redis (no Raft store:
	// Election is 0, and a restart of redis-server adds its downtime to
	// the bound of that fault as its designed outage).
	Coordination string `json:"coordination"`
	// SessionTTL is coordination.sessionTTL: how long a dead or cut-off
	// owner's locks stay held.
	SessionTTL Dur `json:"sessionTTL"`
	// Election is how long the followers take to replace a lost Raft
	// leader: a follower waits up to twice HeartbeatTimeout (Raft
	// randomises it between 1x and 2x) without hearing from a leader,
	// then one election round of ElectionTimeout. 0 on Redis, which
	// elects nothing.
	Election Dur `json:"election"`
	// FailureDetection is how long gossip takes to declare a member dead
	// (the placement ring then moves its actors): one probe interval and
	// its timeout, then memberlist's shortest suspicion timeout for the
	// cluster's size (SuspicionMult × max(1, log10 n) × ProbeInterval),
	// which the other members' confirmations bring it down to.
	FailureDetection Dur `json:"failureDetection"`
	// Margin covers what the run adds to the cluster's own recovery: an
	// operation started just before the actor recovered may still run
	// for the workload's op timeout, and the nodes and the test share a
	// busy machine (one more second).
	Margin Dur `json:"margin"`
	// Recovery = SessionTTL + Election + FailureDetection + Margin: the
	// longest a hot actor may go without a successful operation around a
	// fault (plus the fault's own designed outage, if it has one; see
	// FaultEvent.Outage).
	Recovery Dur `json:"recovery"`
	// LeaderPause = Election + 1 s: after the Raft leader is stopped
	// (SIGSTOP), every node of the majority commits again within it.
	LeaderPause Dur `json:"leaderPause"`
	// FollowerLag is the delay the wipe-then-leader-loss fault puts on
	// the leader's Raft traffic to the followers it makes lag: three
	// quarters of HeartbeatTimeout, so that they fall behind the log
	// without starting an election.
	FollowerLag Dur `json:"followerLag"`
}

// String lists the bounds and their parts.
func (b Bounds) String() string {
	d := func(x Dur) time.Duration { return time.Duration(x).Round(time.Millisecond) }
	if b.Coordination == config.CoordinationRedis {
		return fmt.Sprintf("recovery %v = session TTL %v + failure detection %v + margin %v (coordination on Redis: no election; a redis-server restart adds its downtime)",
			d(b.Recovery), d(b.SessionTTL), d(b.FailureDetection), d(b.Margin))
	}
	return fmt.Sprintf("recovery %v = session TTL %v + election %v + failure detection %v + margin %v; commit after a leader pause %v = election %v + 1s",
		d(b.Recovery), d(b.SessionTTL), d(b.Election), d(b.FailureDetection), d(b.Margin), d(b.LeaderPause), d(b.Election))
}

// DeriveBounds computes the bounds for a cluster of n nodes running cfg,
// whose workload gives up on an operation after opTimeout.
func DeriveBounds(cfg config.Config, n int, opTimeout time.Duration) Bounds {
	rc, cc := raftlock.DefaultConfig(), cluster.DefaultConfig()
	if cfg.Cluster.Gossip == config.GossipLocal {
		rc, cc = raftlock.FastConfig(), cluster.DevConfig()
	}
	var b Bounds
	b.Coordination = cfg.Coordination.Backend
	b.SessionTTL = Dur(cfg.Coordination.SessionTTL)
	if b.Coordination != config.CoordinationRedis {
		b.Election = Dur(2*rc.HeartbeatTimeout + rc.ElectionTimeout)
	}
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	suspicion := time.Duration(float64(cc.SuspicionMult) * scale * float64(cc.ProbeInterval))
	b.FailureDetection = Dur(cc.ProbeInterval + cc.ProbeTimeout + suspicion)
	b.Margin = Dur(opTimeout + time.Second)
	b.Recovery = b.SessionTTL + b.Election + b.FailureDetection + b.Margin
	b.LeaderPause = b.Election + Dur(time.Second)
	b.FollowerLag = Dur(rc.HeartbeatTimeout * 3 / 4)
	return b
}
