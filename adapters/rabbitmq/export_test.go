package rabbitmq

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/queue"
)

// DropConnection closes the Broker's connection as a crash of this node's
// consumer would look to the broker: its unacked deliveries go back to
// their queues. The Broker reconnects.
func (b *Broker) DropConnection() {
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s != nil {
		_ = s.conn.Close()
	}
}

// Topology exposes names for tests.
func (b *Broker) FIFOQueueOf(actor string) string { return b.topo.fifoKey(actor) }

func RouteOf(o Options, key string, delayMs int64) string {
	o.defaults()
	t := newTopology(o)
	return t.route(key, msDur(delayMs))
}

// Encode is the AMQP message Publish sends for m (for the benchmark's
// baseline with the same headers).
func Encode(m queue.Message) amqp.Publishing { return encode(envelope{Message: m}) }
