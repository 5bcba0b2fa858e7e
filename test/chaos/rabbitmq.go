package chaos

import (
	"context"
	"fmt"
	"time"
)

// In a mixed scenario with Scenario.RabbitMQ, the nodes keep the durable
// messages sent from outside actors in a RabbitMQ broker (messaging.backend
// rabbitmq, applied on acceptance off, so every send goes through it):
// each delivery's turn records the message id in the actor's journal, and
// the broker's copy is acknowledged after that. The nemesis also kills the
// broker.

// RabbitMQServer is the broker of a mixed scenario: the tests pass an
// internal/rabbitmqtest.Server. Kill and Restart are called from the
// goroutine that runs the scenario.
type RabbitMQServer interface {
	// Kill kills the broker with SIGKILL and waits for it to exit.
	Kill()
	// Restart starts it again on the same ports and data directory.
	Restart() error
}

// RabbitMQKill kills -9 the RabbitMQ broker and restarts it after KillDown
// on its data directory: every message it confirmed must still be
// delivered, and applied once.
const RabbitMQKill FaultKind = "rabbitmq-kill"

func init() {
	hookFaults[RabbitMQKill] = (*Nemesis).rabbitmqKill
}

func (n *Nemesis) rabbitmqKill(ctx context.Context) FaultEvent {
	if n.rabbitmq == nil {
		return n.failed(fmt.Errorf("no RabbitMQ broker to kill (not a mixed scenario with RabbitMQ)"))
	}
	down := n.between(n.opts.KillDown).Round(time.Millisecond)
	ev := FaultEvent{Kind: RabbitMQKill, Node: "rabbitmq", Hold: down.String(),
		Detail: "kill -9 of the RabbitMQ broker, restarted on its data directory"}
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, down)
	ev.Start = n.rec.Now()
	n.rabbitmq.Kill()
	sleep(ctx, down)
	if err := n.rabbitmq.Restart(); err != nil {
		ev.Err = "restarting RabbitMQ: " + err.Error()
	}
	ev.Heal = n.rec.Now()
	// Sends fail while the broker is down (nothing is accepted); calls
	// go on.
	return n.waitNodes(ctx, ev)
}
