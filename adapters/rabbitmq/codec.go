package rabbitmq

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/loom-mesh/loom/queue"
)

// Header names of the fields that have no AMQP property of their own.
// Times are Unix nanoseconds (int64), 0 for none.
const (
	hActor      = "loom-actor"
	hMethod     = "loom-method"
	hOrdered    = "loom-ordered"
	hDeliverAt  = "loom-deliver-at"
	hAcceptedAt = "loom-accepted-at"
	hNextAt     = "loom-next-at"
	hAttempts   = "loom-attempts"
	hLastError  = "loom-last-error"
	hDeadAt     = "loom-dead-at"
	hHeaders    = "loom-headers" // a table: the application's headers
	hTrace      = "traceparent"  // W3C trace context, under its usual name
)

// maxErrorLen bounds the LastError kept in a header.
const maxErrorLen = 4096

// envelope is a message as it travels: the message and the instants the
// broker does not know.
type envelope struct {
	queue.Message
	deadAt time.Time
	// delivery facts (decode only)
	deliveryCount uint32 // x-delivery-count: returns to the queue without an outcome
	deathReason   string // the latest x-death's reason, when the broker dead-lettered it
	deathTime     time.Time
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// encode makes the AMQP message of e.
func encode(e envelope) amqp.Publishing {
	h := amqp.Table{
		hActor:      e.Actor,
		hMethod:     e.Method,
		hOrdered:    e.Ordered,
		hDeliverAt:  nanos(e.DeliverAt),
		hAcceptedAt: nanos(e.AcceptedAt),
		hNextAt:     nanos(e.NextAt),
		hAttempts:   int64(e.Attempts),
	}
	if e.LastError != "" {
		le := e.LastError
		if len(le) > maxErrorLen {
			le = le[:maxErrorLen]
		}
		h[hLastError] = le
	}
	if !e.deadAt.IsZero() {
		h[hDeadAt] = nanos(e.deadAt)
	}
	if e.TraceParent != "" {
		h[hTrace] = e.TraceParent
	}
	if len(e.Headers) > 0 {
		t := make(amqp.Table, len(e.Headers))
		for k, v := range e.Headers {
			t[k] = v
		}
		h[hHeaders] = t
	}
	p := amqp.Publishing{
		Headers:       h,
		ContentType:   "application/octet-stream",
		DeliveryMode:  amqp.Persistent,
		CorrelationId: e.CorrelationID,
		MessageId:     e.ID,
		AppId:         "loom",
		Body:          e.Payload,
	}
	if !e.AcceptedAt.IsZero() {
		p.Timestamp = e.AcceptedAt
	}
	return p
}

// decode reads a delivered message. It fails for a message Loom did not
// publish (no actor or method).
func decode(d amqp.Delivery) (envelope, error) {
	h := d.Headers
	var e envelope
	e.ID = d.MessageId
	e.CorrelationID = d.CorrelationId
	e.Payload = d.Body
	e.Actor, _ = h[hActor].(string)
	e.Method, _ = h[hMethod].(string)
	e.Ordered, _ = h[hOrdered].(bool)
	e.TraceParent, _ = h[hTrace].(string)
	e.LastError, _ = h[hLastError].(string)
	e.DeliverAt = fromNanos(toInt(h[hDeliverAt]))
	e.AcceptedAt = fromNanos(toInt(h[hAcceptedAt]))
	e.NextAt = fromNanos(toInt(h[hNextAt]))
	e.deadAt = fromNanos(toInt(h[hDeadAt]))
	e.Attempts = uint32(max(0, toInt(h[hAttempts])))
	e.deliveryCount = uint32(max(0, toInt(h["x-delivery-count"])))
	if t, ok := h[hHeaders].(amqp.Table); ok && len(t) > 0 {
		e.Headers = make(map[string]string, len(t))
		for k, v := range t {
			if s, ok := v.(string); ok {
				e.Headers[k] = s
			}
		}
	}
	// x-death lists the message's deaths, the latest first (a hop down
	// the delay ladder is one, reason "expired"): the latest is why it
	// is in the dead-letter queue.
	if deaths, ok := h["x-death"].([]any); ok && len(deaths) > 0 {
		if t, ok := deaths[0].(amqp.Table); ok {
			e.deathTime, _ = t["time"].(time.Time)
			e.deathReason, _ = t["reason"].(string)
		}
	}
	if e.Actor == "" || e.Method == "" {
		return e, fmt.Errorf("%w: message %q has no %s or %s header: not published by Loom", queue.ErrInvalid, e.ID, hActor, hMethod)
	}
	return e, nil
}

// toInt reads an integer header of any width.
func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int8:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case uint32:
		return int64(x)
	case uint16:
		return int64(x)
	case uint8:
		return int64(x)
	}
	return 0
}
