package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/loom-mesh/loom/transport/faultnet"
)

// wipeLeaderLoss is WipeLeaderLoss. With n nodes, k = (n-1)/2 followers
// lag: the leader's Raft traffic to them is delayed by FollowerLag (below
// the heartbeat timeout, so they follow without campaigning), and the
// entries of the last FollowerLag or more are on the leader and the other
// followers only, who are a majority without the laggers. One of those
// followers, W, is killed -9 and its data dir wiped, and the leader is
// killed right after it, so the laggers never get those entries; W
// restarts at once under its id with an empty log, the leader after the
// hold. If W's empty log votes as the voter it was, the laggers and W are
// a majority and elect a lagger without the committed entries: the
// acknowledged writes among them are lost (the journal audit, the
// linearizability and counter checks) and the leader's log is overwritten
// when it returns (the replicas differ).
//
// Done right, W does not vote under its old id; with three nodes the one
// lagger left cannot elect anyone until the leader returns, so the fault's
// Outage is the leader's downtime.
func (n *Nemesis) wipeLeaderLoss(ctx context.Context) FaultEvent {
	l, err := n.leader(ctx)
	if err != nil {
		return n.failed(err)
	}
	followers := n.others(l.ID)
	n.rng.Shuffle(len(followers), func(i, j int) { followers[i], followers[j] = followers[j], followers[i] })
	k := (len(n.cluster.Nodes) - 1) / 2
	if k < 1 || len(followers) < k+1 {
		return n.failed(fmt.Errorf("%s needs at least 3 nodes", WipeLeaderLoss))
	}
	lag, w := followers[:k], n.cluster.Node(followers[k])
	down := n.between(n.opts.KillDown).Round(time.Millisecond)
	delay := n.opts.FollowerLag
	ev := FaultEvent{Node: l.ID + "," + w.ID, Hold: down.String(),
		Detail: fmt.Sprintf("%v lag (leader %s's Raft traffic to them %v late); %s killed -9, wiped and restarted under its id; leader %s killed -9 right after it and down for %v",
			lag, l.ID, delay, w.ID, l.ID, down)}
	n.logf("chaos: +%6.2fs %s", n.rec.Since().Seconds(), ev.Detail)
	ev.Start = n.rec.Now()
	var rules []faultnet.Rule
	for _, b := range lag {
		rules = append(rules, faultnet.Rule{Peer: b, Dir: faultnet.Out, Channels: []faultnet.Channel{faultnet.Raft},
			Delay: faultnet.Duration(delay)})
	}
	err = n.setHooks(ctx, func(id string) faultnet.Faults {
		if id == l.ID {
			return faultnet.Faults{Rules: rules}
		}
		return faultnet.Faults{}
	})
	if err != nil {
		ev.Err = err.Error()
		return n.healAndWait(ctx, ev, n.others(""))
	}
	// The laggers fall behind while the workload writes; the other
	// followers and the leader commit without them.
	sleep(ctx, time.Second)
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	err = w.Kill(kctx)
	if err == nil {
		err = l.Kill(kctx)
	}
	cancel()
	killed := n.rec.Now()
	if err == nil {
		err = w.Wipe()
	}
	if err == nil {
		err = w.Start()
	}
	if err != nil {
		ev.Err = err.Error()
	}
	n.logf("chaos: +%6.2fs %s and %s killed; %s restarted with an empty data dir", n.rec.Since().Seconds(), w.ID, l.ID, w.ID)
	sleep(ctx, down)
	ev.Heal = n.rec.Now()
	if len(n.cluster.Nodes)-2 < len(n.cluster.Nodes)/2+1 {
		ev.Outage = Dur(ev.Heal - killed)
	}
	if l.State() == Down {
		if err := l.Start(); err != nil && ev.Err == "" {
			ev.Err = err.Error()
		}
	}
	return n.healAndWait(ctx, ev, []string{l.ID, w.ID})
}

// pauseLeaderBurst is PauseLeaderBurst: up to three cold registers each
// follower owns get a write every BurstEvery (each a client of its own,
// at most burstInFlight per follower, through the follower's own gateway,
// so each is appended there and forwarded to the leader); after BurstLead
// the leader is stopped for PauseFactor session TTLs while the burst goes
// on, then continued. A follower that keeps its forward slots on the
// stopped leader commits nothing until a connection dies; the report's
// commit stall (MeasureLeaderPause) shows how long each one went.
func (n *Nemesis) pauseLeaderBurst(ctx context.Context) FaultEvent {
	l, err := n.leader(ctx)
	if err != nil {
		return n.failed(err)
	}
	w := n.workload
	burst := map[string][]Actor{}
	for _, a := range w.Actors {
		if a.Type != TypeRegister || a.Hot {
			continue
		}
		if id, ok := w.Owner(a); ok && id != l.ID && n.cluster.Node(id) != nil && len(burst[id]) < 3 {
			burst[id] = append(burst[id], a)
		}
	}
	f := n.opts.PauseFactor[0] + n.rng.Float64()*(n.opts.PauseFactor[1]-n.opts.PauseFactor[0])
	hold := time.Duration(f * float64(n.opts.SessionTTL)).Round(time.Millisecond)
	ev := FaultEvent{Node: l.ID, Hold: hold.String(), Burst: map[string][]string{}}
	for _, id := range n.others(l.ID) {
		for _, a := range burst[id] {
			ev.Burst[id] = append(ev.Burst[id], a.Key())
		}
	}
	ev.Detail = fmt.Sprintf("Raft leader %s SIGSTOPped for %v during a burst of forwarded writes (one every %v per follower) to %v",
		l.ID, hold, n.opts.BurstEvery, ev.Burst)
	for _, id := range n.others(l.ID) {
		if len(burst[id]) == 0 {
			ev.Start, ev.Err = n.rec.Now(), fmt.Sprintf("follower %s owns no cold register to burst", id)
			return ev
		}
	}
	n.logf("chaos: +%6.2fs %s", n.rec.Since().Seconds(), ev.Detail)
	bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, id := range keys(burst) {
		wg.Go(func() { n.burst(bctx, n.cluster.Node(id), burst[id]) })
	}
	sleep(ctx, n.opts.BurstLead)
	ev.Start = n.rec.Now()
	if err := l.Pause(); err != nil {
		stop()
		wg.Wait()
		ev.Err = err.Error()
		return ev
	}
	sleep(ctx, hold)
	err = l.Resume()
	ev.Heal = n.rec.Now()
	stop()
	wg.Wait()
	if err != nil {
		ev.Err, ev.Active = err.Error(), true
		return ev
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	err = l.WaitHealthy(rctx, n.hc)
	cancel()
	if err != nil {
		ev.Err = err.Error()
	}
	return n.converged(ctx, ev)
}

// burstInFlight bounds a burst's writes in flight per follower: 96 writes
// one BurstEvery (20 ms) apart span 1.92 s, more than Bounds.LeaderPause
// with the local preset (1.6 s), so writes keep being invoked past the
// bound even when none of them returns.
const burstInFlight = 96

// burst writes to actors (owned by x) through x's gateway, open-loop:
// one write every BurstEvery, whatever the earlier ones do, at most
// burstInFlight in flight, until ctx ends; it waits for the writes in flight.
func (n *Nemesis) burst(ctx context.Context, x *Node, actors []Actor) {
	w := n.workload
	tick := time.NewTicker(n.opts.BurstEvery)
	defer tick.Stop()
	slots := make(chan struct{}, burstInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	via := gatewayCaller{hc: w.hc, node: x, timeout: w.opts.OpTimeout}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // all in flight: this tick's write is not started
		}
		a := actors[i%len(actors)]
		op := Op{Actor: a.Key(), Kind: OpWrite, Value: w.nextValue.Add(1), Client: int(w.nextClient.Add(1)) - 1}
		// Unique in the run (a later burst at the same node must not
		// reuse an op id: the journal audit matches entries by it).
		key := fmt.Sprintf("chaos-burst-%s-%d", x.ID, op.Client)
		wg.Go(func() {
			defer func() { <-slots }()
			w.exec(context.WithoutCancel(ctx), via, op, key)
		})
	}
}
