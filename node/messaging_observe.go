package node

import "github.com/loom-mesh/loom/messaging"

// messageObserver is what the dispatcher reports deliveries to.
func (o *observation) messageObserver() messaging.Observer { return nil }

// messageSent counts an accepted message.
func (o *observation) messageSent(actorType string) {}
