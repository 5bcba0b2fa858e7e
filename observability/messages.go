package observability

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// Span attributes of message deliveries.
const (
	AttrMessageID = attribute.Key("loom.message.id")
	AttrAttempt   = attribute.Key("loom.message.attempt") // 1 for the first delivery
	AttrOutcome   = attribute.Key("loom.message.outcome") // messaging.Outcome*
	// AttrSenderTrace is the trace id of the send a delivery is linked to
	// (the span link, as an attribute the trace store keeps).
	AttrSenderTrace = attribute.Key("loom.message.sender_trace_id")
)

// MessageSource is what the message gauges and the health report read: a
// node's queue figures and its deliveries in progress.
type MessageSource struct {
	Stats    func(ctx context.Context) ([]queue.Stats, error)
	InFlight func() int
}

// messageMetrics are the durable-messaging families.
type messageMetrics struct {
	sent      *prometheus.CounterVec   // type
	delivered *prometheus.CounterVec   // type, outcome
	retries   *prometheus.CounterVec   // type
	dead      *prometheus.CounterVec   // type
	latency   *prometheus.HistogramVec // type
	source    atomic.Pointer[MessageSource]
}

// Delivery latency buckets: 1 ms to ~65 s, doubling.
var deliveryBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

func newMessageMetrics(reg *prometheus.Registry) *messageMetrics {
	mm := &messageMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loom_messages_sent_total",
			Help: "Durable messages accepted through this node, by receiving actor type (a duplicate id is not counted).",
		}, []string{"type"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loom_messages_delivered_total",
			Help: "Message deliveries this node made, by actor type and outcome (ok, retry, dead, settled, unavailable).",
		}, []string{"type", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loom_messages_retries_total",
			Help: "Deliveries whose handler failed and that will be retried, by actor type.",
		}, []string{"type"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loom_messages_dead_lettered_total",
			Help: "Messages this node moved to the dead-letter queue, by actor type.",
		}, []string{"type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "loom_message_delivery_seconds",
			Help:    "From a message's acceptance (or its due time) to the outcome of a delivery attempt (ok, retry or dead), by actor type.",
			Buckets: deliveryBuckets,
		}, []string{"type"}),
	}
	reg.MustRegister(mm.sent, mm.delivered, mm.retries, mm.dead, mm.latency, messageCollector{mm})
	return mm
}

// SetMessages attaches the node's message store figures and dispatcher.
func (m *Metrics) SetMessages(s MessageSource) { m.msgs.source.Store(&s) }

// MessageSent counts an accepted message to an actor of actorType.
func (m *Metrics) MessageSent(actorType string) { m.msgs.sent.WithLabelValues(actorType).Inc() }

var (
	descQueueDepth  = prometheus.NewDesc("loom_message_queue_depth", "Messages waiting in actors' queues (due or in backoff), by actor type.", []string{"type"}, nil)
	descQueueSched  = prometheus.NewDesc("loom_message_queue_scheduled", "Delayed messages not yet due, by actor type.", []string{"type"}, nil)
	descQueueOldest = prometheus.NewDesc("loom_message_queue_oldest_age_seconds", "Age of the oldest waiting message, by actor type (0 when none).", []string{"type"}, nil)
	descDeadLetters = prometheus.NewDesc("loom_message_dead_letters", "Messages in the dead-letter queue, by actor type.", []string{"type"}, nil)
	descReminders   = prometheus.NewDesc("loom_message_reminders", "Registered reminders, by actor type.", []string{"type"}, nil)
	descInFlight    = prometheus.NewDesc("loom_messages_in_flight", "Deliveries this node has in progress.", nil, nil)
)

// statsTimeout bounds the queue figures' read on a scrape.
const statsTimeout = 2 * time.Second

type messageCollector struct{ mm *messageMetrics }

func (c messageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descQueueSched, descQueueOldest, descDeadLetters, descReminders, descInFlight} {
		ch <- d
	}
}

func (c messageCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.mm.source.Load()
	if p == nil {
		return
	}
	if p.InFlight != nil {
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(p.InFlight()))
	}
	if p.Stats == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	stats, err := p.Stats(ctx)
	if err != nil {
		return // the gauges are absent from this scrape
	}
	now := time.Now()
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(s.Pending), s.Type)
		ch <- prometheus.MustNewConstMetric(descQueueSched, prometheus.GaugeValue, float64(s.Scheduled), s.Type)
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.GaugeValue, float64(s.Dead), s.Type)
		ch <- prometheus.MustNewConstMetric(descReminders, prometheus.GaugeValue, float64(s.Reminders), s.Type)
		ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, oldestAge(s, now).Seconds(), s.Type)
	}
}

// oldestAge is the age of s's oldest waiting message, 0 when none.
func oldestAge(s queue.Stats, now time.Time) time.Duration {
	if s.Pending == 0 || s.Oldest.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.Oldest))
}

// Messages returns the dispatcher's observer: metrics always, a span per
// delivery when tracing is on.
func (o *Observer) Messages() messaging.Observer { return deliveryObserver{o} }

type deliveryObserver struct{ o *Observer }

var _ messaging.Observer = deliveryObserver{}

var consumerKind = trace.WithSpanKind(trace.SpanKindConsumer)

// StartDelivery starts "loom.deliver T.m", a new trace linked to the
// sender's span (the message's traceparent), carrying the message's
// correlation id, so /traces?correlationId= finds the send and its
// deliveries together.
func (d deliveryObserver) StartDelivery(ctx context.Context, msg queue.Message) (context.Context, func(string, error)) {
	tr := d.o.tracer
	if tr == nil {
		return ctx, func(string, error) {}
	}
	typ, _, _ := strings.Cut(msg.Actor, "/")
	cid := msg.CorrelationID // the send's; the context's only for a message without one
	if cid == "" {
		cid = runtime.CorrelationID(ctx)
	}
	opts := []trace.SpanStartOption{consumerKind, trace.WithNewRoot(), trace.WithAttributes(
		AttrActor.String(msg.Actor), AttrMethod.String(msg.Method), AttrMessageID.String(msg.ID),
		AttrAttempt.Int(int(msg.Attempts)+1), AttrCorrelationID.String(cid),
	)}
	if sc := senderSpan(msg.TraceParent); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}), trace.WithAttributes(AttrSenderTrace.String(sc.TraceID().String())))
	}
	ctx, span := tr.Start(ctx, "loom.deliver "+typ+"."+msg.Method, opts...)
	return ctx, func(outcome string, err error) {
		span.SetAttributes(AttrOutcome.String(outcome))
		if err != nil && outcome != messaging.OutcomeSettled {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// senderSpan parses a W3C traceparent; invalid when absent or malformed.
func senderSpan(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}

// Delivered counts a delivery's outcome and, for an attempt (ok, retry,
// dead), its latency: an unavailable delivery made no attempt, and a
// settled one was recorded by another delivery, whose latency counts.
func (d deliveryObserver) Delivered(actorType, outcome string, latency time.Duration) {
	mm := d.o.m.msgs
	mm.delivered.WithLabelValues(actorType, outcome).Inc()
	switch outcome {
	case messaging.OutcomeRetry:
		mm.retries.WithLabelValues(actorType).Inc()
	case messaging.OutcomeDead:
		mm.dead.WithLabelValues(actorType).Inc()
	}
	if outcome != messaging.OutcomeUnavailable && outcome != messaging.OutcomeSettled {
		mm.latency.WithLabelValues(actorType).Observe(latency.Seconds())
	}
}

// MessageQueuesHealth reports the message queues. Degraded when a type's
// oldest waiting message is older than DegradedAge (deliveries are not
// keeping up, or an ordered queue is blocked by a failing message) or the
// figures cannot be read. Dead letters are reported but do not degrade:
// they are an operator's work queue, not a fault of the node.
type MessageQueuesHealth struct {
	Status   Status                      `json:"status"`
	Reasons  []string                    `json:"reasons,omitempty"`
	InFlight int                         `json:"inFlight"`
	Types    map[string]MessageTypeQueue `json:"types"`
	// DegradedAgeMs is the threshold (messaging.degradedAge).
	DegradedAgeMs int64 `json:"degradedAgeMs"`
	// Redis is the queues' server, when it is Redis.
	Redis *RedisHealth `json:"redis,omitempty"`
	// Postgres is the queues' server, when it is PostgreSQL.
	Postgres *PostgresHealth `json:"postgres,omitempty"`
	// RabbitMQ is the broker of messaging.backend rabbitmq.
	RabbitMQ *RabbitMQHealth `json:"rabbitmq,omitempty"`
	err      error
}

// MessageTypeQueue is one actor type's queues.
type MessageTypeQueue struct {
	Pending          int     `json:"pending"`
	Scheduled        int     `json:"scheduled"`
	DeadLetters      int     `json:"deadLetters"`
	Reminders        int     `json:"reminders"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
}

// CheckMessageQueues builds the component from the queue figures (or the
// error reading them) at now.
func CheckMessageQueues(stats []queue.Stats, err error, inFlight int, now time.Time, degradedAge time.Duration) *MessageQueuesHealth {
	h := &MessageQueuesHealth{InFlight: inFlight, Types: map[string]MessageTypeQueue{}, DegradedAgeMs: degradedAge.Milliseconds(), err: err}
	for _, s := range stats {
		h.Types[s.Type] = MessageTypeQueue{
			Pending: s.Pending, Scheduled: s.Scheduled, DeadLetters: s.Dead, Reminders: s.Reminders,
			OldestAgeSeconds: oldestAge(s, now).Seconds(),
		}
	}
	h.Check()
	return h
}

// Check applies the rules and returns the status.
func (h *MessageQueuesHealth) Check() Status {
	h.Status, h.Reasons = Healthy, nil
	if r := h.Redis.reason(); r != "" {
		h.Status = Degraded
		h.Reasons = append(h.Reasons, r)
	}
	if r := h.Postgres.reason(); r != "" {
		h.Status = Degraded
		h.Reasons = append(h.Reasons, r)
	}
	if r := h.RabbitMQ.reason(); r != "" {
		h.Status = Degraded
		h.Reasons = append(h.Reasons, r)
	}
	if h.err != nil {
		h.Status = Degraded
		h.Reasons = append(h.Reasons, "reading the queues: "+h.err.Error())
		return h.Status
	}
	limit := time.Duration(h.DegradedAgeMs) * time.Millisecond
	names := make([]string, 0, len(h.Types))
	for n := range h.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		age := time.Duration(h.Types[n].OldestAgeSeconds * float64(time.Second))
		if limit > 0 && age > limit {
			h.Status = Degraded
			h.Reasons = append(h.Reasons, fmt.Sprintf("the oldest %s message has waited %s (degraded after %s)", n, age.Round(time.Millisecond), limit))
		}
	}
	return h.Status
}
