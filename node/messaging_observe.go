package node

import (
	"context"
	"time"

	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/observability"
)

// messageObserver is what the dispatcher reports deliveries to.
func (o *observation) messageObserver() messaging.Observer { return o.observer.Messages() }

// messageSent counts an accepted message.
func (o *observation) messageSent(actorType string) { o.metrics.MessageSent(actorType) }

// attachMessageMetrics points the message gauges at the node's store and
// dispatcher.
func (n *Node) attachMessageMetrics() {
	if n.messageStore() == nil {
		return
	}
	n.obs.metrics.SetMessages(observability.MessageSource{Stats: n.MessageQueues, InFlight: n.inFlight})
}

// inFlight is the deliveries in progress on this node: the dispatcher's
// and the message broker's.
func (n *Node) inFlight() int {
	k := 0
	if d := n.dispatcher.Load(); d != nil {
		k += d.InFlight()
	}
	if b, ok := n.broker.(interface{ InFlight() int }); ok {
		k += b.InFlight()
	}
	return k
}

// messageQueuesHealth is the /health component of the queues; nil without a
// message store. It is this node's view: with Raft groups on some of the
// nodes, of the groups it replicates (each group is in the health of its
// members), so that /health never waits on another node.
func (n *Node) messageQueuesHealth(now time.Time) *observability.MessageQueuesHealth {
	if n.messageStore() == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := n.localQueues(ctx)
	return observability.CheckMessageQueues(stats, err, n.inFlight(), now, n.cfg.Messaging.DegradedAge)
}
