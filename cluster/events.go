package cluster

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// SubscriberBuffer is how many events a subscription holds before it starts
// coalescing (see Subscribe).
const SubscriberBuffer = 64

type subscriber struct {
	ch     chan Event // capacity SubscriberBuffer+1: the last slot is for EventResync
	lagged bool       // an EventResync is queued and events have been dropped since
}

// Subscribe returns a channel of membership events and a function that
// cancels the subscription (closing the channel; safe to call more than
// once). Close closes every subscription channel.
//
// Delivery rule: memberlist reports changes one at a time, from its own
// goroutines, and is never made to wait for a subscriber. Each
// subscription buffers up to SubscriberBuffer events, delivered in the
// order memberlist reported them. When a subscriber's buffer is full, the
// events that do not fit are dropped and a single EventResync is queued
// after the last buffered event; a subscriber that receives EventResync
// must re-read Members or Alive, which by then reflect every dropped
// change. Normal delivery resumes with the first event that fits after the
// subscriber has drained some of its buffer.
//
// A subscription taken before Start sees this node's own EventJoin.
func (c *Cluster) Subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, SubscriberBuffer+1)}
	c.mu.Lock()
	if c.subsClosed {
		c.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if _, ok := c.subs[s]; ok {
				delete(c.subs, s)
				close(s.ch)
			}
		})
	}
}

// publishLocked hands ev to every subscriber without blocking. c.mu must be
// held; it is the only sender on the channels, so the length checks below
// cannot race with another send.
func (c *Cluster) publishLocked(ev Event) {
	for s := range c.subs {
		switch {
		case len(s.ch) < SubscriberBuffer:
			s.ch <- ev
			s.lagged = false
		case !s.lagged:
			s.lagged = true
			select {
			case s.ch <- Event{Type: EventResync}:
			default: // unreachable: the last slot is kept free for this
			}
		}
	}
}

func (c *Cluster) closeSubscribers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subsClosed = true
	for s := range c.subs {
		close(s.ch)
		delete(c.subs, s)
	}
}

// delegate receives memberlist's callbacks. memberlist calls the
// EventDelegate methods one at a time while holding its node lock, and the
// others from its network goroutines; none of them blocks on anything but
// c.mu, which is only ever held briefly.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.MergeDelegate    = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// NodeMeta returns the encoded Meta. Its size was checked against
// MaxMetaSize when it was set; memberlist panics on oversize metadata, so
// the check is repeated here.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.c.metaBytes.Load()
	if len(b) > limit {
		d.c.log.Error("node metadata exceeds memberlist's limit; sending none", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func memberOf(n *memberlist.Node, state State, now time.Time) (Member, bool) {
	w, _ := decodeMeta(n.Meta) // NotifyAlive rejected nodes whose meta does not decode
	return Member{NodeID: n.Name, Meta: w.Meta, State: state, Addr: n.Address(), Since: now}, w.Leaving
}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	c := d.c
	m, leaving := memberOf(n, StateAlive, time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[n.Name] = &entry{m: m, leaving: leaving}
	c.log.Info("member joined", "member", m.NodeID, "addr", m.Addr)
	c.publishLocked(Event{Type: EventJoin, Member: m})
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	c := d.c
	now := time.Now()
	m, leaving := memberOf(n, StateAlive, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.members[n.Name]
	if !ok {
		c.members[n.Name] = &entry{m: m, leaving: leaving}
		c.publishLocked(Event{Type: EventJoin, Member: m})
		return
	}
	e.leaving = leaving
	changed := e.m.Meta != m.Meta || e.m.Addr != m.Addr || e.m.State != StateAlive
	if e.m.State != StateAlive {
		e.m.Since = now
	}
	e.m.Meta, e.m.Addr, e.m.State = m.Meta, m.Addr, StateAlive
	if changed { // a leave intent alone is not a user-visible change
		c.log.Info("member updated", "member", m.NodeID, "addr", m.Addr)
		c.publishLocked(Event{Type: EventUpdate, Member: e.m})
	}
}

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	c := d.c
	now := time.Now()
	m, leaving := memberOf(n, StateDead, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.members[n.Name]
	if !ok {
		e = &entry{m: m}
		c.members[n.Name] = e
	}
	if leaving || e.leaving {
		m.State = StateLeft
	}
	if m.Meta == (Meta{}) {
		m.Meta = e.m.Meta
	}
	e.m, e.leaving = m, false
	c.log.Info("member gone", "member", m.NodeID, "addr", m.Addr, "state", m.State)
	c.publishLocked(Event{Type: EventLeave, Member: m})
}

// NotifyMerge is called before a join's push/pull state exchange is merged,
// on both sides, with the other side's member list. It refuses the merge if
// that list has another live member with this node's id: on a joining node
// that means its id is taken; on an existing node it means the joiner
// claims the id of this node. memberlist does not call it for periodic
// anti-entropy, where its own rule applies instead: an alive message for a
// known, live name at a different address is ignored (NotifyConflict).
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	c := d.c
	id := c.cfg.NodeID
	c.mu.Lock()
	defer c.mu.Unlock()
	self, ok := c.members[id]
	if !ok {
		return nil // memberlist is still starting: nothing to compare with
	}
	for _, p := range peers {
		if p.Name != id || (p.State != memberlist.StateAlive && p.State != memberlist.StateSuspect) {
			continue
		}
		addr := p.Address()
		if addr == self.m.Addr {
			continue
		}
		if c.joining {
			c.conflict = addr
		}
		c.log.Warn("refusing a merge: another live member uses this node id", "other", addr, "self", self.m.Addr)
		return fmt.Errorf("%w: %q is alive at %s and at %s", ErrDuplicateID, id, addr, self.m.Addr)
	}
	return nil
}

// NotifyAlive rejects members whose metadata is not a Meta for their own
// name, so that every Member this package reports has one.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	w, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("member %q: %w", n.Name, err)
	}
	if w.NodeID != n.Name {
		return fmt.Errorf("member %q carries metadata of node id %q", n.Name, w.NodeID)
	}
	return nil
}

// NotifyConflict is memberlist telling us it ignored an alive message for a
// live member's name from a different address.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.c.log.Error("two nodes claim one node id; keeping the one known first",
		"member", existing.Name, "known", existing.Address(), "other", other.Address(),
		"self", existing.Name == d.c.cfg.NodeID)
}
