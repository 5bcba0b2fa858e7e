package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// FaultKind names a fault.
type FaultKind string

// Faults that need no hook inside the node.
const (
	// KillRandom: kill -9 a random node, restart it with its data dir.
	KillRandom FaultKind = "kill-random"
	// KillLeader: kill -9 the Raft leader, restart it with its data dir.
	KillLeader FaultKind = "kill-leader"
	// KillOwner: kill -9 the node the ring names for a hot actor, restart
	// it with its data dir.
	KillOwner FaultKind = "kill-owner"
	// PauseOwner: SIGSTOP the owner of a hot actor for longer than the
	// session TTL, then SIGCONT (the zombie owner).
	PauseOwner FaultKind = "pause-owner"
	// PauseLeader: SIGSTOP the Raft leader past the session TTL, then
	// SIGCONT.
	PauseLeader FaultKind = "pause-leader"
)

// Faults injected through the nodes' chaos hook (faultnet), and membership
// faults; see faults.go.
const (
	// PartitionMinority cuts a random minority (1 of 3, 2 of 5) off from
	// the rest, for gossip, Raft and gRPC alike.
	PartitionMinority FaultKind = "partition-minority"
	// PartitionLeader cuts the Raft leader off from every other node.
	PartitionLeader FaultKind = "partition-leader"
	// PartitionSplit splits the nodes at random into two halves (the
	// larger one has the majority).
	PartitionSplit FaultKind = "partition-split"
	// PartitionOneWay makes one node deaf: it sends to every peer and
	// hears none (asymmetric loss).
	PartitionOneWay FaultKind = "partition-oneway"
	// PartitionBridge splits the others into two sides that cannot reach
	// each other while one bridge node reaches both.
	PartitionBridge FaultKind = "partition-bridge"
	// PartitionLong isolates one node for longer than memberlist forgets
	// dead members (GossipToTheDeadTime, 15 s with the local preset):
	// only Loom's rejoin loop can heal it.
	PartitionLong FaultKind = "partition-long"
	// PartitionGossip isolates one follower's gossip only (Raft and gRPC
	// still flow): the nodes' rings disagree about who owns what.
	PartitionGossip FaultKind = "partition-gossip"
	// ClockSkew makes one node's clock (its lease keeper's, and its Raft
	// store's, by which a leader expires sessions) run slow or fast
	// within the 10% the keeper's safety margin allows (a follower's
	// faster), and cuts off a node for twice the session TTL meanwhile,
	// so that a lease runs out on the skewed clock. Half the time the
	// target is the Raft leader. (Rates and offsets: see faults.go.)
	ClockSkew FaultKind = "clock-skew"
	// DiskSlow delays every Raft log write (fsync) of the leader.
	DiskSlow FaultKind = "disk-slow"
	// DiskFull fails every Raft log write of one node (the leader or a
	// follower) with "no space left on device", then gives space back.
	DiskFull FaultKind = "disk-full"
	// RestartWiped kills a random node with -9 and restarts it with its
	// data dir wiped: a brand-new node under the same id.
	RestartWiped FaultKind = "restart-wiped"
	// Churn starts one more node that joins under load and, after the
	// hold, stops it gracefully (it leaves).
	Churn FaultKind = "churn"
	// RollingRestart restarts every node gracefully (SIGTERM), one at a
	// time, the leader last, each when the previous one is healthy again.
	RollingRestart FaultKind = "rolling-restart"
)

// Combined faults: several faults at once, in the order that exposes a
// class of bug no single one does (see combined.go).
const (
	// WipeLeaderLoss makes a minority of followers lag (the leader's Raft
	// traffic to them delayed), kills -9 another follower, wipes its data
	// dir and restarts it under the same id, and kills the leader while
	// the laggers still miss the newest committed entries; the leader
	// restarts after the hold. A wiped node that votes as the voter it
	// was lets a lagging follower win an election without entries the
	// old majority committed, and erase them.
	WipeLeaderLoss FaultKind = "wipe-leader-loss"
	// PauseLeaderBurst sends a burst of writes to actors the followers
	// own (each forwarded to the leader, open-loop: a new one every few
	// milliseconds whatever the earlier ones do), then SIGSTOPs the Raft
	// leader past the session TTL while the burst goes on. Every
	// follower must commit again within Bounds.LeaderPause of the stop.
	PauseLeaderBurst FaultKind = "pause-leader-burst"
)

// AllFaults lists every fault kind, for random schedules.
var AllFaults = []FaultKind{KillRandom, KillLeader, KillOwner, PauseOwner, PauseLeader,
	PartitionMinority, PartitionLeader, PartitionSplit, PartitionOneWay, PartitionBridge, PartitionLong, PartitionGossip,
	ClockSkew, DiskSlow, DiskFull, RestartWiped, Churn, RollingRestart, WipeLeaderLoss, PauseLeaderBurst}

// FaultEvent is one injected fault on the timeline. Times are ns since the
// run started.
type FaultEvent struct {
	Kind   FaultKind `json:"kind"`
	Node   string    `json:"node"`
	Detail string    `json:"detail,omitempty"`
	Start  int64     `json:"start"`            // injected
	Heal   int64     `json:"heal"`             // restarted or continued
	Ready  int64     `json:"ready"`            // the node answered /health again
	Hold   string    `json:"hold"`             // how long it was down or paused
	Err    string    `json:"error,omitempty"`  // the nemesis could not do it all
	Notes  []string  `json:"notes,omitempty"`  // what the nemesis saw
	Active bool      `json:"active,omitempty"` // still in effect (not healed)
	// A partition with a majority side: the node ids of each side (the
	// report's availability per side).
	Majority []string `json:"majority,omitempty"`
	Minority []string `json:"minority,omitempty"`
	// Outage is how long the fault, by design, left some actors without
	// a node that can serve them: too few voters to elect a leader, or a
	// node whose Raft log cannot be written (it can neither apply its own
	// renewals nor load an actor, yet its session is kept alive by the
	// others, so its actors stay with it until its disk is back). The
	// recovery bound of the fault grows by it.
	Outage Dur `json:"outage,omitempty"`
	// Burst names, per follower, the actors it owned that a
	// PauseLeaderBurst wrote to (the commit stall is measured on them).
	Burst map[string][]string `json:"burst,omitempty"`
}

// NemesisOptions configure fault injection.
type NemesisOptions struct {
	// KillDown is the range of how long a killed node stays down.
	KillDown [2]time.Duration
	// PauseFactor is the range of a pause in session TTLs (> 1).
	PauseFactor [2]float64
	SessionTTL  time.Duration
	// ReadyTimeout bounds the wait for a healed node's health (and, after
	// a partition, for the cluster's convergence).
	ReadyTimeout time.Duration
	// Hold is the range of how long a partition, clock or disk fault or
	// a churn node lasts; LongHold that of PartitionLong.
	Hold, LongHold [2]time.Duration
	// FollowerLag is the delay WipeLeaderLoss puts on the leader's Raft
	// traffic to the followers it makes lag (Bounds.FollowerLag).
	FollowerLag time.Duration
	// BurstEvery is how often PauseLeaderBurst starts a write on each
	// follower, and BurstLead how long the burst runs before the pause.
	BurstEvery, BurstLead time.Duration
}

// Nemesis injects faults into a cluster and keeps the timeline.
type Nemesis struct {
	opts     NemesisOptions
	cluster  *Cluster
	workload *Workload
	rec      *Recorder
	rng      *rand.Rand
	hc       *http.Client
	Timeline []FaultEvent
	logf     func(string, ...any)
	// kernel, when set, cuts partitions with tc instead of the hook's
	// rules (kernel.go).
	kernel *kernelNet
	// redis and redisAddr: the server of a Redis scenario (redis.go).
	redis     RedisServer
	redisAddr string
	// postgres: the server of a mixed scenario (postgres.go).
	postgres PostgresServer
	// rabbitmq: the broker of a mixed scenario (rabbitmq.go).
	rabbitmq RabbitMQServer
}

// NewNemesis draws its choices from seed.
func NewNemesis(c *Cluster, w *Workload, rec *Recorder, seed int64, o NemesisOptions, logf func(string, ...any)) *Nemesis {
	return &Nemesis{opts: o, cluster: c, workload: w, rec: rec,
		rng: rand.New(rand.NewPCG(uint64(seed), 0xfa017)), hc: c.HTTPClient(time.Second, nil), logf: logf}
}

func (n *Nemesis) between(r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(n.rng.Int64N(int64(r[1]-r[0])))
}

// Rand is the nemesis's random source (for the schedule's own draws).
func (n *Nemesis) Rand() *rand.Rand { return n.rng }

// target picks the node for a fault kind.
func (n *Nemesis) target(ctx context.Context, kind FaultKind) (*Node, string, error) {
	switch kind {
	case KillLeader, PauseLeader:
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		l, err := n.cluster.Leader(lctx)
		return l, "Raft leader", err
	case KillOwner, PauseOwner:
		hot := n.workload.HotActors()
		a := hot[n.rng.IntN(len(hot))]
		id, ok := n.workload.Owner(a)
		if !ok || n.cluster.Node(id) == nil {
			return nil, "", fmt.Errorf("no owner known for %s", a.Key())
		}
		return n.cluster.Node(id), "owner of " + a.Key(), nil
	default:
		var up []*Node
		for _, x := range n.cluster.Nodes {
			if x.State() == Running {
				up = append(up, x)
			}
		}
		if len(up) == 0 {
			return nil, "", fmt.Errorf("no running node")
		}
		return up[n.rng.IntN(len(up))], "random", nil
	}
}

// Inject runs one fault to its end: it kills or pauses the target, holds
// the fault, heals it (restart with the data dir kept, or SIGCONT) and waits
// for the node's health. It returns the event, also appended to Timeline.
func (n *Nemesis) Inject(ctx context.Context, kind FaultKind) FaultEvent {
	if f, ok := hookFaults[kind]; ok {
		ev := f(n, ctx)
		ev.Kind = kind
		if ev.Err != "" {
			n.logf("chaos: +%6.2fs %s: %s", n.rec.Since().Seconds(), kind, ev.Err)
		}
		n.Timeline = append(n.Timeline, ev)
		return ev
	}
	ev := FaultEvent{Kind: kind}
	node, detail, err := n.target(ctx, kind)
	if err != nil {
		ev.Start, ev.Err = n.rec.Now(), err.Error()
		n.Timeline = append(n.Timeline, ev)
		n.logf("chaos: +%6.2fs %s: no target: %v", n.rec.Since().Seconds(), kind, err)
		return ev
	}
	ev.Node, ev.Detail = node.ID, detail
	var hold time.Duration
	switch kind {
	case PauseOwner, PauseLeader:
		f := n.opts.PauseFactor[0] + n.rng.Float64()*(n.opts.PauseFactor[1]-n.opts.PauseFactor[0])
		hold = time.Duration(f * float64(n.opts.SessionTTL)).Round(time.Millisecond)
	default:
		hold = n.between(n.opts.KillDown).Round(time.Millisecond)
	}
	ev.Hold = hold.String()
	n.logf("chaos: +%6.2fs %s %s (%s) for %v", n.rec.Since().Seconds(), kind, node.ID, detail, hold)
	ev.Start = n.rec.Now()
	switch kind {
	case PauseOwner, PauseLeader:
		err = node.Pause()
	default:
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = node.Kill(kctx)
		cancel()
	}
	if err != nil {
		ev.Err = err.Error()
		n.Timeline = append(n.Timeline, ev)
		return ev
	}
	// The fault's duration is part of the schedule, not a wait for an
	// event; heal even if ctx ended, so that the cluster is whole again.
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	switch kind {
	case PauseOwner, PauseLeader:
		err = node.Resume()
	default:
		err = node.Start()
	}
	ev.Heal = n.rec.Now()
	if err != nil {
		ev.Err, ev.Active = err.Error(), true
		n.Timeline = append(n.Timeline, ev)
		return ev
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	err = node.WaitHealthy(rctx, n.hc)
	cancel()
	if err != nil {
		ev.Err = err.Error()
	}
	ev = n.converged(ctx, ev)
	n.Timeline = append(n.Timeline, ev)
	return ev
}

// HealAll restarts every down node, continues every paused one and lifts
// every hook fault (for a run cut short); it waits for no node's health.
func (n *Nemesis) HealAll() {
	for _, x := range n.cluster.Nodes {
		switch x.State() {
		case Paused:
			_ = x.Resume()
		case Down:
			_ = x.Start()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n.kernel != nil {
		_, _ = n.kernel.heal(ctx)
	}
	_ = n.healHooks(ctx)
}
