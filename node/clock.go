package node

// Options.Clock is the clock of the node's application timing, the times
// an application sets and waits for: when an actor has been idle past its
// type's idleTimeout, when a reminder or a delayed message is due, when a
// failed delivery is retried, how long an actor remembers an idempotency
// key, and the time written in journal entries. The runtime and the
// message dispatcher read it; a reminder's due time is the registering
// node's Clock plus its delay, and the dispatcher releases it once its own
// Clock passes that. So every node of a cluster must be given the same
// clock (package loomtest gives them one, which it moves forward with
// Cluster.Advance).
//
// Nothing that decides who may write reads it: sessions and leases are
// timed on the keeper's monotonic clock, and Raft's entries are stamped
// with the leader's real clock, as without a Clock. A clock running ahead
// deactivates actors, delivers reminders and forgets idempotency keys
// early; it cannot let two nodes write one actor, nor lose an
// acknowledged write. In-memory actor timers (Context.SetTimer) stay on
// the real clock.

// CheckClock runs now the checks the node otherwise makes on its own
// schedule against Options.Clock: it deactivates the actors idle past
// their type's idle timeout, and looks for due messages and reminders
// (which are then delivered as usual, asynchronously). A test that moved
// its clock forward calls it so as not to wait for the next periodic
// check (every second). It is safe to call at any time.
func (n *Node) CheckClock() {
	if rt := n.runtime(); rt != nil {
		rt.SweepIdle()
	}
	if d := n.dispatcher.Load(); d != nil {
		d.Rescan()
	}
}
