package client

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

var _ runtime.Sender = (*Client)(nil)

// Send sends a durable one-way message (Method.Send(ctx, client, id,
// arg)): it returns once the message is accepted, durable in the cluster.
// The message goes to its actor's owner, as Client.Owner says (any node
// would accept it; that one delivers it). It is tried on another node
// while a node fails without effect, and, since the client names the
// message (runtime.NewMessageID when the envelope has no MessageID) and
// the store accepts an id once, sent again under the same id while its
// outcome is unknown, up to Options.MaxRetries times, whether or not
// IdempotentRetries is set: a resend can never apply a message twice.
//
// On an error the returned Accepted still carries the id the message was
// sent under, so that a caller whose send ended in an unknown outcome (its
// deadline passed, or the retries ran out) can send it again safely,
// with runtime.WithMessageID, for as long as the store remembers ids (an
// hour by default).
func (c *Client) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	if e.MessageID == "" {
		e.MessageID = runtime.NewMessageID()
	}
	if runtime.CorrelationID(ctx) == "" {
		ctx = runtime.WithCorrelationID(ctx, runtime.NewCorrelationID())
	}
	backoff := 10 * time.Millisecond
	for retry := 0; ; retry++ {
		acc, err := c.sendOnce(ctx, e)
		if err == nil || ctx.Err() != nil || retry >= c.opts.MaxRetries || !(retryable(err) || unknownOutcome(err)) {
			return acc, err
		}
		c.stats.retries.Add(1)
		c.log.Debug("client: sending again under the same message id", "actor", e.ActorType+"/"+e.ActorID, "id", e.MessageID, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return acc, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sendOnce tries the send on up to MaxAttempts nodes while it fails
// without effect. On an error the Accepted carries only the message id.
func (c *Client) sendOnce(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	var tried []string
	var lastErr error
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		addr, ok := c.target(e.ActorType+"/"+e.ActorID, tried)
		if !ok {
			break
		}
		tried = append(tried, addr)
		acc, err := c.pool.Send(ctx, addr, e)
		if err == nil {
			return acc, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return queue.Accepted{ID: e.MessageID}, err
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: client: no alive node known", runtime.ErrUnavailable)
	}
	return queue.Accepted{ID: e.MessageID}, lastErr
}
