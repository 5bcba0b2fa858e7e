package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// Tasks through the client: a task has no owner, so any alive node that
// has it registered can run it. Each run goes to a node picked at random
// (spreading the load), and on a failure that certainly had no effect
// (runtime.ErrUnavailable, runtime.ErrShuttingDown: not sent, or refused)
// to the next one, up to Options.MaxAttempts nodes, within the caller's
// deadline. A run sent whose answer was lost (transport.ErrUnknownOutcome)
// is not retried: the task may have run. Nodes are assumed to register the
// same tasks; task.ErrUnknownTask from one of them is returned as is.

var _ task.Invoker = (*Client)(nil)

// RunTask implements task.Invoker: it runs the task on some node and
// returns its outcome. Typed: t.Call(ctx, client, in).
func (c *Client) RunTask(ctx context.Context, name string, input []byte) (task.Outcome, error) {
	return c.runTask(ctx, name, input, false)
}

// StartTask implements task.Invoker: a node starts the task and the call
// returns once it has (the outcome goes to that node's task metrics, spans
// and log). Typed: t.Start(ctx, client, in).
func (c *Client) StartTask(ctx context.Context, name string, input []byte) error {
	_, err := c.runTask(ctx, name, input, true)
	return err
}

func (c *Client) runTask(ctx context.Context, name string, input []byte, async bool) (task.Outcome, error) {
	addrs := c.taskTargets()
	var lastErr error
	for i := 0; i < len(addrs) && i < c.opts.MaxAttempts; i++ {
		o, err := c.pool.RunTask(ctx, addrs[i], name, input, async)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return o, err
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: client: no alive node known", runtime.ErrUnavailable)
	}
	return task.Outcome{}, lastErr
}

// taskTargets lists the alive nodes' addresses from a random one on.
func (c *Client) taskTargets() []string {
	c.mu.RLock()
	addrs := make([]string, 0, len(c.members))
	for _, m := range c.members {
		addrs = append(addrs, m.GrpcAddr)
	}
	c.mu.RUnlock()
	if len(addrs) == 0 {
		return nil
	}
	slices.Sort(addrs)
	start := rand.IntN(len(addrs))
	return slices.Concat(addrs[start:], addrs[:start])
}
