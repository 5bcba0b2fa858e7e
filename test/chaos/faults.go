package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/loom-mesh/loom/transport/faultnet"
)

// The faults injected through the nodes' chaos hook (each node runs with
// --chaos-hook: PUT /chaos/faults sets its fault state) and the membership
// faults. Each runs to its end: inject, hold, heal, wait for the nodes'
// health (and after a partition for the cluster's convergence: a partition
// that does not heal is an error of the fault, hence a violation).

var hookFaults = map[FaultKind]func(*Nemesis, context.Context) FaultEvent{
	PartitionMinority: func(n *Nemesis, ctx context.Context) FaultEvent {
		ids := n.shuffledIDs()
		k := (len(ids) - 1) / 2
		return n.partition(ctx, ids[:k], ids[k:], nil, n.between(n.opts.Hold), "minority cut off")
	},
	PartitionLeader: func(n *Nemesis, ctx context.Context) FaultEvent {
		l, err := n.leader(ctx)
		if err != nil {
			return n.failed(err)
		}
		return n.partition(ctx, []string{l.ID}, n.others(l.ID), nil, n.between(n.opts.Hold), "Raft leader cut off")
	},
	PartitionSplit: func(n *Nemesis, ctx context.Context) FaultEvent {
		ids := n.shuffledIDs()
		k := len(ids) / 2
		return n.partition(ctx, ids[:k], ids[k:], nil, n.between(n.opts.Hold), "clean split")
	},
	PartitionLong: func(n *Nemesis, ctx context.Context) FaultEvent {
		ids := n.shuffledIDs()
		return n.partition(ctx, ids[:1], ids[1:], nil, n.between(n.opts.LongHold), "cut off past GossipToTheDeadTime")
	},
	PartitionGossip: func(n *Nemesis, ctx context.Context) FaultEvent {
		// A follower, so that the rings disagree while every node keeps
		// its session. (The leader's case is node's
		// TestChaosLeaderGossipPartitionKeepsSessions: the followers used to
		// find no alive member to forward their renewals to, and every
		// session on them lapsed for as long as the partition lasted.)
		l, err := n.leader(ctx)
		if err != nil {
			return n.failed(err)
		}
		others := n.others(l.ID)
		x := others[n.rng.IntN(len(others))]
		return n.partition(ctx, []string{x}, n.others(x), []faultnet.Channel{faultnet.Gossip}, n.between(n.opts.Hold), "gossip only")
	},
	PartitionOneWay: func(n *Nemesis, ctx context.Context) FaultEvent {
		ids := n.shuffledIDs()
		deaf := ids[0]
		rules := map[string][]faultnet.Rule{deaf: {{Peer: "*", Dir: faultnet.In, Drop: true}}}
		ev := FaultEvent{Node: deaf, Detail: "deaf: sends to every peer, hears none", Minority: ids[:1], Majority: ids[1:]}
		return n.hold(ctx, ev, rules, n.between(n.opts.Hold), ids)
	},
	PartitionBridge: func(n *Nemesis, ctx context.Context) FaultEvent {
		ids := n.shuffledIDs()
		bridge, rest := ids[0], ids[1:]
		k := len(rest) / 2
		left, right := rest[:k], rest[k:]
		ev := FaultEvent{Node: bridge, Detail: fmt.Sprintf("bridge %s between %v and %v", bridge, left, right)}
		return n.hold(ctx, ev, cut(left, right, nil), n.between(n.opts.Hold), ids)
	},
	WipeLeaderLoss:   (*Nemesis).wipeLeaderLoss,
	PauseLeaderBurst: (*Nemesis).pauseLeaderBurst,
	ClockSkew:        (*Nemesis).clockSkew,
	DiskSlow:         (*Nemesis).diskSlow,
	DiskFull:         (*Nemesis).diskFull,
	RestartWiped:     (*Nemesis).restartWiped,
	Churn:            (*Nemesis).churn,
	RollingRestart:   (*Nemesis).rollingRestart,
}

// cut is the rules of a partition between sides a and b (on chs, or every
// channel): each node drops the other side, both ways.
func cut(a, b []string, chs []faultnet.Channel) map[string][]faultnet.Rule {
	rules := map[string][]faultnet.Rule{}
	for _, x := range a {
		for _, y := range b {
			rules[x] = append(rules[x], faultnet.Rule{Peer: y, Drop: true, Channels: chs})
			rules[y] = append(rules[y], faultnet.Rule{Peer: x, Drop: true, Channels: chs})
		}
	}
	return rules
}

func (n *Nemesis) failed(err error) FaultEvent {
	return FaultEvent{Start: n.rec.Now(), Err: err.Error()}
}

func (n *Nemesis) leader(ctx context.Context) (*Node, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return n.cluster.Leader(lctx)
}

// shuffledIDs lists the nodes' ids in an order drawn from the seed.
func (n *Nemesis) shuffledIDs() []string {
	var ids []string
	for _, x := range n.cluster.Nodes {
		ids = append(ids, x.ID)
	}
	n.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

func (n *Nemesis) others(id string) []string {
	var out []string
	for _, x := range n.cluster.Nodes {
		if x.ID != id {
			out = append(out, x.ID)
		}
	}
	return out
}

func (n *Nemesis) partition(ctx context.Context, a, b []string, chs []faultnet.Channel, hold time.Duration, what string) FaultEvent {
	ev := FaultEvent{Node: strings.Join(a, ","), Detail: fmt.Sprintf("%s: %v | %v", what, a, b)}
	if len(chs) > 0 {
		ev.Detail += fmt.Sprintf(" (%v)", chs)
	} else if len(a) < len(b) {
		// Cut on every channel with a majority on one side: the
		// report's availability per side.
		ev.Minority, ev.Majority = slices.Clone(a), slices.Clone(b)
	}
	return n.hold(ctx, ev, cut(a, b, chs), hold, append(slices.Clone(a), b...))
}

// hold sets rules (node id → its rules) for hold, heals every node's hook,
// and waits for the involved nodes' health and the cluster's convergence.
func (n *Nemesis) hold(ctx context.Context, ev FaultEvent, rules map[string][]faultnet.Rule, hold time.Duration, involved []string) FaultEvent {
	ev.Hold = hold.Round(time.Millisecond).String()
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, hold)
	ev.Start = n.rec.Now()
	if n.kernel != nil {
		// The same rules, cut by the kernel (kernel.go).
		note, err := n.kernel.apply(ctx, rules)
		if err != nil {
			ev.Err = err.Error()
		} else {
			ev.Notes = append(ev.Notes, note)
		}
	} else if err := n.setHooks(ctx, func(id string) faultnet.Faults { return faultnet.Faults{Rules: rules[id]} }); err != nil {
		ev.Err = err.Error()
	}
	sleep(ctx, hold)
	return n.healAndWait(ctx, ev, involved)
}

// healAndWait lifts every hook fault and waits for health and convergence.
func (n *Nemesis) healAndWait(ctx context.Context, ev FaultEvent, involved []string) FaultEvent {
	hctx := context.WithoutCancel(ctx)
	if n.kernel != nil && n.kernel.installed > 0 {
		dropped, err := n.kernel.heal(hctx)
		ev.Notes = append(ev.Notes, fmt.Sprintf("the kernel dropped %d packets", dropped))
		switch {
		case err != nil && ev.Err == "":
			ev.Err = err.Error()
		case dropped == 0 && ev.Err == "":
			// Gossip alone sends several packets a second: a cut
			// that dropped nothing did not cut.
			ev.Err = "the kernel partition dropped no packet"
		}
	}
	if err := n.healHooks(hctx); err != nil && ev.Err == "" {
		ev.Err = err.Error()
	}
	ev.Heal = n.rec.Now()
	rctx, cancel := context.WithTimeout(hctx, n.opts.ReadyTimeout)
	defer cancel()
	for _, id := range involved {
		if x := n.cluster.Node(id); x != nil {
			if err := x.WaitHealthy(rctx, n.hc); err != nil && ev.Err == "" {
				ev.Err = err.Error()
			}
		}
	}
	if _, err := n.cluster.AwaitConverged(rctx); err != nil && ev.Err == "" {
		ev.Err = "after the heal: " + err.Error()
	}
	ev.Ready = n.rec.Now()
	n.logf("chaos: +%6.2fs %s healed; %s after %v %v", n.rec.Since().Seconds(), ev.Detail, outcome(ev),
		time.Duration(ev.Ready-ev.Heal).Round(time.Millisecond), ev.Notes)
	return ev
}

// setHooks PUTs faults(id) plus the address book to every running node.
func (n *Nemesis) setHooks(ctx context.Context, faults func(id string) faultnet.Faults) error {
	peers := map[string][]string{}
	for _, x := range n.cluster.Nodes {
		peers[x.ID] = []string{x.IP}
	}
	var errs []error
	for _, x := range n.cluster.Nodes {
		if x.State() == Down {
			continue
		}
		f := faults(x.ID)
		f.Peers = peers
		if err := n.putFaults(ctx, x, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// healHooks clears every running node's faults.
func (n *Nemesis) healHooks(ctx context.Context) error {
	return n.setHooks(ctx, func(string) faultnet.Faults { return faultnet.Faults{} })
}

func (n *Nemesis) putFaults(ctx context.Context, x *Node, f faultnet.Faults) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	var last error
	for range 3 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPut, x.URL("/chaos/faults"), bytes.NewReader(body))
		resp, err := n.hc.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		last = fmt.Errorf("chaos: PUT %s/chaos/faults: %w", x.ID, err)
		sleep(ctx, 200*time.Millisecond)
	}
	return last
}

// sleep waits d or until ctx ends (a fault's duration is part of the
// schedule, not a wait for an event).
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// clockSkew runs one node's clock (its session keeper's and its Raft
// store's, which stamps entries while it leads) slow or fast, and cuts a
// node off for twice the session TTL meanwhile, so that a session runs out
// on a skewed clock. Half the time the target is the Raft leader, whose
// clock then decides when every session expires: it cuts off a follower
// (whose session the skewed leader expires, and whose locks it grants to
// others) or itself (a new leader takes over from the skewed one's
// stamps). Otherwise the target is a follower and is cut off itself (its
// keeper must give its lease up in time on its own clock).
//
// Rates stay within what the lease contract allows: a node's keeper gives
// its lease up a safety margin (TTL/10) before the TTL, so a keeper's clock
// may run at most 10% slow (slower, and it believes in its lease after the
// leader expired it), and a leader's clock at most 10% fast (faster, and it
// expires sessions whose keepers still hold). A follower's clock may run
// faster (its keeper gives up early): up to 1.5, lifted with the cut so
// that it never stamps entries at that rate if it takes office.
//
// And the target's wall clock steps 5 to 60 s ahead or back when the
// fault starts, and back when it heals: an offset moves only the hook's
// wall clock (what a Raft leader's first stamp in office reads, and what
// a follower's lock lookups read), not the monotonic clock the keeper and
// a leader in office time by, as a real step (NTP, an operator) moves
// Go's time.Now but not its monotonic reading.
func (n *Nemesis) clockSkew(ctx context.Context) FaultEvent {
	l, err := n.leader(ctx)
	if err != nil {
		return n.failed(err)
	}
	followers := n.others(l.ID)
	n.rng.Shuffle(len(followers), func(i, j int) { followers[i], followers[j] = followers[j], followers[i] })
	target, role, cutOff := followers[0], "follower", followers[0]
	rate := 0.93 + n.rng.Float64()*0.07 // slow, within the keeper's margin
	if n.rng.IntN(2) == 0 {
		target, role = l.ID, "Raft leader"
		if n.rng.IntN(2) == 0 {
			cutOff = l.ID
		}
		if n.rng.IntN(2) == 0 {
			rate = 1.02 + n.rng.Float64()*0.08 // fast, within the margin
		}
	} else if n.rng.IntN(2) == 0 {
		rate = 1.1 + n.rng.Float64()*0.4 // fast: the node gives up early
	}
	rate = float64(int(rate*1000)) / 1000
	step := time.Duration(5+n.rng.IntN(56)) * time.Second
	if n.rng.IntN(2) == 0 {
		step = -step
	}
	hold := n.between(n.opts.Hold)
	iso := 2 * n.opts.SessionTTL
	ev := FaultEvent{Node: target, Detail: fmt.Sprintf("clock of %s %s at rate %v, wall clock stepped %v; %s cut off for %v meanwhile", role, target, rate, step, cutOff, iso),
		Hold: (hold + iso).String()}
	n.logf("chaos: +%6.2fs %s", n.rec.Since().Seconds(), ev.Detail)
	clock := faultnet.ClockFault{Rate: rate, Offset: faultnet.Duration(step)}
	ev.Start = n.rec.Now()
	set := func(rules map[string][]faultnet.Rule, clock faultnet.ClockFault) {
		err := n.setHooks(ctx, func(id string) faultnet.Faults {
			f := faultnet.Faults{Rules: rules[id]}
			if id == target {
				f.Clock = clock
			}
			return f
		})
		if err != nil && ev.Err == "" {
			ev.Err = err.Error()
		}
	}
	set(nil, clock)
	sleep(ctx, hold/2)
	set(cut([]string{cutOff}, n.others(cutOff), nil), clock)
	sleep(ctx, iso)
	if rate > 1.1 {
		clock = faultnet.ClockFault{Offset: clock.Offset}
	}
	set(nil, clock)
	sleep(ctx, hold-hold/2)
	return n.healAndWait(ctx, ev, append([]string{l.ID}, followers...))
}

func (n *Nemesis) diskSlow(ctx context.Context) FaultEvent {
	l, err := n.leader(ctx)
	if err != nil {
		return n.failed(err)
	}
	delay := (20*time.Millisecond + time.Duration(n.rng.Int64N(int64(130*time.Millisecond)))).Round(time.Millisecond)
	ev := FaultEvent{Node: l.ID, Detail: fmt.Sprintf("Raft leader %s: every log write (fsync) %v slower", l.ID, delay)}
	return n.diskFault(ctx, ev, l.ID, faultnet.DiskFault{SyncDelay: faultnet.Duration(delay)})
}

func (n *Nemesis) diskFull(ctx context.Context) FaultEvent {
	l, err := n.leader(ctx)
	if err != nil {
		return n.failed(err)
	}
	target, role := l.ID, "Raft leader"
	if n.rng.IntN(2) == 0 {
		others := n.others(l.ID)
		target, role = others[n.rng.IntN(len(others))], "follower"
	}
	ev := FaultEvent{Node: target, Detail: fmt.Sprintf("%s %s: no space left for Raft log writes", role, target)}
	ev = n.diskFault(ctx, ev, target, faultnet.DiskFault{NoSpace: true})
	if ev.Heal > ev.Start {
		ev.Outage = Dur(ev.Heal - ev.Start) // see FaultEvent.Outage
	}
	return ev
}

func (n *Nemesis) diskFault(ctx context.Context, ev FaultEvent, target string, d faultnet.DiskFault) FaultEvent {
	hold := n.between(n.opts.Hold)
	ev.Hold = hold.String()
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, hold)
	ev.Start = n.rec.Now()
	err := n.setHooks(ctx, func(id string) faultnet.Faults {
		if id == target {
			return faultnet.Faults{Disk: d}
		}
		return faultnet.Faults{}
	})
	if err != nil {
		ev.Err = err.Error()
	}
	sleep(ctx, hold)
	return n.healAndWait(ctx, ev, []string{target})
}

// restartNode starts x and waits for its health.
func (n *Nemesis) restartNode(ctx context.Context, x *Node) error {
	if err := x.Start(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	defer cancel()
	return x.WaitHealthy(rctx, n.hc)
}

func (n *Nemesis) restartWiped(ctx context.Context) FaultEvent {
	ids := n.shuffledIDs()
	x := n.cluster.Node(ids[0])
	down := n.between(n.opts.KillDown)
	ev := FaultEvent{Node: x.ID, Detail: "kill -9, data dir wiped, restarted as a brand-new node", Hold: down.String()}
	n.logf("chaos: +%6.2fs %s: %s", n.rec.Since().Seconds(), x.ID, ev.Detail)
	ev.Start = n.rec.Now()
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := x.Kill(kctx)
	cancel()
	if err == nil {
		err = x.Wipe()
	}
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	sleep(ctx, down)
	ev.Heal = n.rec.Now()
	if err := n.restartNode(ctx, x); err != nil {
		ev.Err = err.Error()
	}
	return n.converged(ctx, ev)
}

// converged waits for the cluster's convergence and stamps Ready.
func (n *Nemesis) converged(ctx context.Context, ev FaultEvent) FaultEvent {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	defer cancel()
	if _, err := n.cluster.AwaitConverged(rctx); err != nil && ev.Err == "" {
		ev.Err = "after the heal: " + err.Error()
	}
	ev.Ready = n.rec.Now()
	n.logf("chaos: +%6.2fs %s %s: %s %v after the heal", n.rec.Since().Seconds(), ev.Kind, ev.Node, outcome(ev),
		time.Duration(ev.Ready-ev.Heal).Round(time.Millisecond))
	return ev
}

func outcome(ev FaultEvent) string {
	if ev.Err != "" {
		return "NOT converged"
	}
	return "converged"
}

func (n *Nemesis) churn(ctx context.Context) FaultEvent {
	hold := n.between(n.opts.Hold)
	ev := FaultEvent{Hold: hold.String()}
	ev.Start = n.rec.Now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	x, err := n.cluster.AddNode(actx)
	cancel()
	if x != nil {
		ev.Node = x.ID
	}
	ev.Detail = fmt.Sprintf("%s joins under load, leaves after %v", ev.Node, hold)
	n.logf("chaos: +%6.2fs %s", n.rec.Since().Seconds(), ev.Detail)
	if err != nil {
		ev.Err = err.Error()
		if x != nil {
			_ = n.cluster.RemoveNode(context.WithoutCancel(ctx), x)
		}
		return ev
	}
	// It counts as a member from its health on: converged with it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	if _, err := n.cluster.AwaitConverged(cctx); err != nil {
		ev.Err = "with " + x.ID + " joined: " + err.Error()
	}
	cancel()
	sleep(ctx, hold)
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	if err := n.cluster.RemoveNode(tctx, x); err != nil && ev.Err == "" {
		ev.Err = err.Error()
	}
	cancel()
	ev.Heal = n.rec.Now()
	return n.converged(ctx, ev)
}

func (n *Nemesis) rollingRestart(ctx context.Context) FaultEvent {
	ev := FaultEvent{Node: "all", Detail: "graceful restart of every node in turn, the leader last"}
	n.logf("chaos: +%6.2fs %s", n.rec.Since().Seconds(), ev.Detail)
	ev.Start = n.rec.Now()
	var order []*Node
	l, _ := n.leader(ctx)
	for _, id := range n.shuffledIDs() {
		if x := n.cluster.Node(id); x != l {
			order = append(order, x)
		}
	}
	if l != nil {
		order = append(order, l)
	}
	for _, x := range order {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := x.Terminate(tctx) // kills it if it does not exit in time
		cancel()
		if x.State() == Down {
			// Restarted even after a failed graceful stop, so that one
			// error does not leave the cluster a node short.
			if rerr := n.restartNode(ctx, x); err == nil {
				err = rerr
			}
		}
		if err != nil {
			ev.Err = err.Error()
			break
		}
		n.logf("chaos: +%6.2fs %s restarted", n.rec.Since().Seconds(), x.ID)
	}
	ev.Heal = n.rec.Now()
	return n.converged(ctx, ev)
}
