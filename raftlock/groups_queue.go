package raftlock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
)

// The message queues of Groups. An actor's queue, dead letters and
// reminders live in its group, as its journal does, so that a turn's acks
// commit with its entries in one command. A message an actor sends is
// enqueued by its turn's append, in the sender's group, since that too
// must commit with the turn; when the receiver belongs to another group
// the message waits there, invisible to the queues' reads (Ready leaves
// out the actors of other groups, and every read of an actor goes to its
// group), until a relay moves it: it enqueues the message in the
// receiver's group, under the same id, then hands it off in the sender's
// (queuesm.Handoff). Ids make the move idempotent: an Enqueue of an id the
// receiver's group already took is a duplicate, and a handoff of an id
// already gone takes nothing. So a message is delivered from one group
// only, at least once, and a relay cut short is simply run again (within
// the queues' id retention, an hour by default).
//
// The relay runs right after an append that sends to another group, on
// the sender's node, so a send is visible at once as it is with one group.
// Each group's leader relays too, in the background, what was left: the
// messages its replica is told of (Notify) that belong to other groups,
// and everything a sweep finds when it takes office or after a relay
// failed. The messages of one receiver in one group are moved in their
// order there (pending by Seq, then scheduled), each relay from the
// first, so that an ordered receiver sees one sender's messages in the
// order they were sent.

// relayBatch is the most messages one relay step reads, moves and hands
// off at once.
const relayBatch = 256

// relayCheck is how often a group's background relay checks whether this
// node leads the group (and sweeps when it has just taken office), and
// how long it waits to retry after a relay failed.
const relayCheck = time.Second

// relayTimeout bounds one receiver's relay in the background.
const relayTimeout = 10 * time.Second

// relay is the background relay of one group.
type relay struct {
	mu     sync.Mutex
	actors map[string]bool // receivers of other groups with messages here
	sweep  bool            // look for all of them (Ready)
	wake   chan struct{}   // buffered 1: actors or sweep changed
}

func (r *relay) add(actor string) {
	r.mu.Lock()
	r.actors[actor] = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *relay) take() (actors []string, sweep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a := range r.actors {
		actors = append(actors, a)
	}
	clear(r.actors)
	sweep, r.sweep = r.sweep, false
	return actors, sweep
}

// startRelays starts every group's background relay and routes the
// groups' notifications: an actor of the group to the function given to
// Notify, any other to the group's relay.
func (gs *Groups) startRelays() {
	ctx, cancel := context.WithCancel(context.Background())
	gs.stop = cancel
	for g, s := range gs.stores {
		r := &relay{actors: map[string]bool{}, sweep: true, wake: make(chan struct{}, 1)}
		gs.relays = append(gs.relays, r)
		s.Queues().Notify(func(actor string, at time.Time) {
			if GroupOf(actor, len(gs.stores)) != g {
				r.add(actor)
			} else if fn := gs.notify.Load(); fn != nil {
				(*fn)(actor, at)
			}
		})
		gs.wg.Go(func() { gs.runRelay(ctx, g, r) })
	}
}

// runRelay is group g's background relay: while this node leads g, it
// moves the messages of other groups' actors that wait in g.
func (gs *Groups) runRelay(ctx context.Context, g int, r *relay) {
	s := gs.stores[g]
	tick := time.NewTicker(relayCheck)
	defer tick.Stop()
	leading := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tick.C:
		}
		if !s.IsLeader() {
			leading = false
			r.take() // the leader relays them (and sweeps when it takes office)
			continue
		}
		if !leading {
			leading = true
			r.mu.Lock()
			r.sweep = true // a new leader does not know what its predecessor left
			r.mu.Unlock()
		}
		actors, sweep := r.take()
		if sweep {
			found, err := gs.foreign(ctx, g)
			if err != nil {
				r.mu.Lock()
				r.sweep = true
				r.mu.Unlock()
			}
			actors = append(actors, found...)
		}
		slices.Sort(actors)
		for _, actor := range slices.Compact(actors) {
			// A receiver's group without a leader holds up its own
			// receivers only for a while, not every other group's.
			rctx, cancel := context.WithTimeout(ctx, relayTimeout)
			err := gs.relay(rctx, g, actor)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.rep.Logger().Warn("raftlock: relaying messages to another group failed; retrying", "group", g, "actor", actor, "err", err)
				r.mu.Lock()
				r.actors[actor] = true // the next tick retries
				r.mu.Unlock()
			}
		}
	}
}

// foreign returns the actors of other groups with messages in group g.
func (gs *Groups) foreign(ctx context.Context, g int) ([]string, error) {
	ready, err := gs.stores[g].Queues().Ready(ctx, time.Unix(0, 1<<62), 1<<20)
	var out []string
	for _, r := range ready {
		if GroupOf(r.Actor, len(gs.stores)) != g {
			out = append(out, r.Actor)
		}
	}
	return out, err
}

// relay moves actor's messages that wait in group g to actor's group, in
// their order in g, a batch at a time: each enqueued there under its id,
// then the batch handed off in g.
func (gs *Groups) relay(ctx context.Context, g int, actor string) error {
	h := fnv.New32a()
	_, _ = h.Write([]byte(actor))
	mu := &gs.relayMu[h.Sum32()%uint32(len(gs.relayMu))]
	mu.Lock()
	defer mu.Unlock()
	src, dst := gs.stores[g].Queues(), gs.Of(actor).Queues()
	for {
		msgs, err := src.queued(ctx, actor, relayBatch)
		if err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			if _, err := dst.Enqueue(ctx, queue.Message{
				ID: m.ID, Actor: m.Actor, Method: m.Method, Payload: m.Payload, Headers: m.Headers,
				CorrelationID: m.CorrelationID, TraceParent: m.TraceParent, Ordered: m.Ordered, DeliverAt: m.DeliverAt,
			}); err != nil {
				return err
			}
			ids[i] = m.ID
		}
		if _, err := src.handoff(ctx, actor, ids); err != nil {
			return err
		}
		if len(msgs) < relayBatch {
			return nil
		}
	}
}

// relaySends relays the messages entries sent, from group g, to the
// receivers of other groups; a relay that fails is left to g's leader.
func (gs *Groups) relaySends(ctx context.Context, g int, entries []journal.Entry) {
	var to []string
	for _, e := range entries {
		if e.Kind != journal.KindMessageSend {
			continue
		}
		m, err := queue.UnmarshalMessage(e.Payload)
		if err == nil && GroupOf(m.Actor, len(gs.stores)) != g && !slices.Contains(to, m.Actor) {
			to = append(to, m.Actor)
		}
	}
	for _, actor := range to {
		if err := gs.relay(ctx, g, actor); err != nil {
			gs.relays[g].add(actor)
		}
	}
}

// Queues returns the message queues of the groups' actors: a
// queue.Store and queue.Notifier over every group's, each actor's in its
// group (see the relay above for messages sent across groups).
func (gs *Groups) Queues() GroupQueues { return GroupQueues{gs} }

// GroupQueues is Groups' queue.Store face (see Store.Queues). Calls about
// one actor go to its group; Ready, Stats and the dead-letter calls
// without an actor ask every group and merge their answers.
type GroupQueues struct{ gs *Groups }

var (
	_ queue.Store    = GroupQueues{}
	_ queue.Notifier = GroupQueues{}
	_ queue.Sharded  = GroupQueues{}
)

// Shard implements queue.Sharded: an actor's shard is its group.
func (q GroupQueues) Shard(actor string) int { return GroupOf(actor, len(q.gs.stores)) }

func (q GroupQueues) of(actor string) Queues { return q.gs.Of(actor).Queues() }

// Close closes the groups (see Groups.Close).
func (q GroupQueues) Close() error { return q.gs.Close() }

// Enqueue implements queue.Store in msg.Actor's group.
func (q GroupQueues) Enqueue(ctx context.Context, msg queue.Message) (queue.Accepted, error) {
	return q.of(msg.Actor).Enqueue(ctx, msg)
}

// Due implements queue.Store in actor's group.
func (q GroupQueues) Due(ctx context.Context, actor string, now time.Time, max int) ([]queue.Message, error) {
	return q.of(actor).Due(ctx, actor, now, max)
}

// Release implements queue.Store in actor's group.
func (q GroupQueues) Release(ctx context.Context, actor string, now time.Time) (int, error) {
	return q.of(actor).Release(ctx, actor, now)
}

// Retry implements queue.Store in f.Actor's group.
func (q GroupQueues) Retry(ctx context.Context, f queue.Failure) error {
	return q.of(f.Actor).Retry(ctx, f)
}

// DeadLetter implements queue.Store in f.Actor's group.
func (q GroupQueues) DeadLetter(ctx context.Context, f queue.Failure) error {
	return q.of(f.Actor).DeadLetter(ctx, f)
}

// SetReminder implements queue.Store in r.Actor's group.
func (q GroupQueues) SetReminder(ctx context.Context, r queue.Reminder) error {
	return q.of(r.Actor).SetReminder(ctx, r)
}

// DeleteReminder implements queue.Store in actor's group.
func (q GroupQueues) DeleteReminder(ctx context.Context, actor, name string) error {
	return q.of(actor).DeleteReminder(ctx, actor, name)
}

// Reminders implements queue.Store in actor's group.
func (q GroupQueues) Reminders(ctx context.Context, actor string) ([]queue.Reminder, error) {
	return q.of(actor).Reminders(ctx, actor)
}

// Ready implements queue.Store: the earliest max actors of every group,
// each from its own group, earliest first (by actor key among equal
// instants).
//
// Groups this node is outside of (Config.Partial) are left out: their
// members deliver their messages.
func (q GroupQueues) Ready(ctx context.Context, until time.Time, max int) ([]queue.Ready, error) {
	var out []queue.Ready
	for g, s := range q.gs.stores {
		ready, err := s.Queues().Ready(ctx, until, max)
		if errors.Is(err, ErrNotReplica) {
			continue // a group this node is outside of: its members deliver
		}
		if err != nil {
			return nil, err
		}
		for _, r := range ready {
			if GroupOf(r.Actor, len(q.gs.stores)) == g {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b queue.Ready) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Actor, b.Actor))
	})
	return out[:min(len(out), max)], nil
}

// ListDead implements queue.Store: f.Actor's group's, or every group's
// merged, oldest DeadAt first. A group this node is outside of
// (Config.Partial) is listed by the function SetRemoteDead gave, if any.
func (q GroupQueues) ListDead(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error) {
	if f.Actor != "" {
		return q.listDeadOf(ctx, q.Shard(f.Actor), f)
	}
	var out []queue.DeadLetter
	for g := range q.gs.stores {
		dead, err := q.listDeadOf(ctx, g, f)
		if err != nil {
			return nil, err
		}
		out = append(out, dead...)
	}
	slices.SortStableFunc(out, func(a, b queue.DeadLetter) int { return a.DeadAt.Compare(b.DeadAt) })
	if f.Limit > 0 {
		out = out[:min(len(out), f.Limit)]
	}
	return out, nil
}

// ListDeadIn lists the dead letters f selects in group g from this
// node's replica of it: ErrNotReplica if the node is outside it.
func (q GroupQueues) ListDeadIn(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error) {
	if g < 0 || g >= len(q.gs.stores) {
		return nil, fmt.Errorf("%w: group %d of %d", queue.ErrInvalid, g, len(q.gs.stores))
	}
	return q.gs.stores[g].Queues().ListDead(ctx, f)
}

// listDeadOf is ListDeadIn, or, in a group this node is outside of, the
// remote listing SetRemoteDead gave.
func (q GroupQueues) listDeadOf(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error) {
	dead, err := q.ListDeadIn(ctx, g, f)
	if errors.Is(err, ErrNotReplica) {
		if fn := q.gs.remoteDead.Load(); fn != nil {
			return (*fn)(ctx, g, f)
		}
	}
	return dead, err
}

// SetRemoteDead gives the groups the way to list the dead letters of a
// group this node is outside of: fn asks a node that replicates group g
// (its leader) for ListDeadIn(g, f).
func (q GroupQueues) SetRemoteDead(fn func(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error)) {
	q.gs.remoteDead.Store(&fn)
}

// Replay implements queue.Store: in f.Actor's group, or in every group
// until f.Limit dead letters are replayed.
func (q GroupQueues) Replay(ctx context.Context, f queue.Filter, now time.Time) (int, error) {
	return q.eachDead(f, func(s Queues, f queue.Filter) (int, error) { return s.Replay(ctx, f, now) })
}

// Purge implements queue.Store: in f.Actor's group, or in every group
// until f.Limit dead letters are purged.
func (q GroupQueues) Purge(ctx context.Context, f queue.Filter) (int, error) {
	return q.eachDead(f, func(s Queues, f queue.Filter) (int, error) { return s.Purge(ctx, f) })
}

// eachDead runs a dead-letter write in f.Actor's group, or group after
// group with what is left of f.Limit. (With a limit, the dead letters it
// takes are the oldest of each group in turn, not of all groups.)
func (q GroupQueues) eachDead(f queue.Filter, do func(Queues, queue.Filter) (int, error)) (int, error) {
	if f.Actor != "" {
		return do(q.of(f.Actor), f)
	}
	total := 0
	for _, s := range q.gs.stores {
		n, err := do(s.Queues(), f)
		total += n
		if err != nil {
			return total, err
		}
		if f.Limit > 0 {
			if f.Limit -= n; f.Limit == 0 {
				break
			}
		}
	}
	return total, nil
}

// Stats implements queue.Store: every group's figures, summed by type
// (Oldest the oldest of the groups'), by type name. Groups this node is
// outside of (Config.Partial) are left out: their members count them.
func (q GroupQueues) Stats(ctx context.Context) ([]queue.Stats, error) {
	var lists [][]queue.Stats
	for g := range q.gs.stores {
		stats, err := q.StatsIn(ctx, g)
		if errors.Is(err, ErrNotReplica) {
			continue // a group this node is outside of
		}
		if err != nil {
			return nil, err
		}
		lists = append(lists, stats)
	}
	return queue.MergeStats(lists...), nil
}

// StatsIn is the queues' figures of group g from this node's replica of
// it: ErrNotReplica if the node is outside it.
func (q GroupQueues) StatsIn(ctx context.Context, g int) ([]queue.Stats, error) {
	if g < 0 || g >= len(q.gs.stores) {
		return nil, fmt.Errorf("%w: group %d of %d", queue.ErrInvalid, g, len(q.gs.stores))
	}
	return q.gs.stores[g].Queues().Stats(ctx)
}

// Notify implements queue.Notifier: fn hears of every group's actors, on
// the replica of their group (see Queues.Notify).
func (q GroupQueues) Notify(fn func(actor string, at time.Time)) {
	if len(q.gs.stores) == 1 {
		q.gs.stores[0].Queues().Notify(fn) // no relays to route around
		return
	}
	q.gs.notify.Store(&fn)
}
