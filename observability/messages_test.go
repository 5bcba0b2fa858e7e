package observability

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/messaging"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

func TestMessageQueuesHealthRules(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name    string
		stats   []queue.Stats
		err     error
		want    Status
		reasons string
	}{
		{"no queues", nil, nil, Healthy, ""},
		{"fresh", []queue.Stats{{Type: "counter", Pending: 3, Oldest: now.Add(-time.Second)}}, nil, Healthy, ""},
		{"old", []queue.Stats{{Type: "counter", Pending: 1, Oldest: now.Add(-2 * time.Minute)}}, nil, Degraded, "the oldest counter message has waited 2m0s"},
		{"dead letters only", []queue.Stats{{Type: "counter", Dead: 7, Oldest: now.Add(-time.Hour)}}, nil, Healthy, ""},
		{"unreadable", nil, errors.New("store closed"), Degraded, "reading the queues: store closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := CheckMessageQueues(tc.stats, tc.err, 2, now, time.Minute)
			if h.Status != tc.want || !strings.Contains(strings.Join(h.Reasons, "; "), tc.reasons) {
				t.Fatalf("status %s reasons %q, want %s containing %q", h.Status, h.Reasons, tc.want, tc.reasons)
			}
			r := Report{Components: Components{MessageQueues: h}}
			if got := r.Evaluate(); got != tc.want {
				t.Fatalf("report %s, want %s", got, tc.want)
			}
		})
	}
}

func TestMessageMetrics(t *testing.T) {
	m := NewMetrics()
	o := NewObserver(m, nil).Messages()
	m.MessageSent("counter")
	m.MessageSent("counter")
	o.Delivered("counter", messaging.OutcomeOK, 20*time.Millisecond)
	o.Delivered("counter", messaging.OutcomeRetry, time.Millisecond)
	o.Delivered("counter", messaging.OutcomeDead, time.Millisecond)
	o.Delivered("counter", messaging.OutcomeSettled, time.Millisecond)
	m.SetMessages(MessageSource{
		Stats: func(context.Context) ([]queue.Stats, error) {
			return []queue.Stats{{Type: "counter", Pending: 4, Scheduled: 1, Dead: 2, Reminders: 3, Oldest: time.Now().Add(-10 * time.Second)}}, nil
		},
		InFlight: func() int { return 5 },
	})
	want := map[string]float64{
		`loom_messages_sent_total{type="counter"}`:                        2,
		`loom_messages_delivered_total{outcome="ok",type="counter"}`:      1,
		`loom_messages_delivered_total{outcome="settled",type="counter"}`: 1,
		`loom_messages_retries_total{type="counter"}`:                     1,
		`loom_messages_dead_lettered_total{type="counter"}`:               1,
		`loom_message_delivery_seconds_count{type="counter"}`:             3,
		`loom_message_queue_depth{type="counter"}`:                        4,
		`loom_message_queue_scheduled{type="counter"}`:                    1,
		`loom_message_dead_letters{type="counter"}`:                       2,
		`loom_message_reminders{type="counter"}`:                          3,
		`loom_messages_in_flight`:                                         5,
	}
	got := scrape(t, m)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if age := got[`loom_message_queue_oldest_age_seconds{type="counter"}`]; age < 10 || age > 60 {
		t.Errorf("oldest age %v s, want about 10", age)
	}
}

func TestDeliverySpanLinksToTheSender(t *testing.T) {
	cfg := config.Default().Tracing
	cfg.Enabled = true
	tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	// The send's span, and its traceparent as a message carries it.
	sctx, send := tr.Provider.Tracer("test").Start(runtime.WithCorrelationID(context.Background(), "cid-m"), "POST /v1/messages")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(sctx, carrier)
	send.End()

	o := NewObserver(NewMetrics(), tr.Provider).Messages()
	msg := queue.Message{ID: "m1", Actor: "counter/c1", Method: "add", TraceParent: carrier["traceparent"], Attempts: 1}
	_, end := o.StartDelivery(runtime.WithCorrelationID(context.Background(), "cid-m"), msg)
	end(messaging.OutcomeRetry, errors.New("no"))

	spans := tr.Store.Query(Query{CorrelationID: "cid-m"})
	var deliver *Span
	for i := range spans {
		if spans[i].Name == "loom.deliver counter.add" {
			deliver = &spans[i]
		}
	}
	if len(spans) != 2 || deliver == nil {
		t.Fatalf("spans for the correlation id: %+v", spans)
	}
	if deliver.TraceID == send.SpanContext().TraceID().String() {
		t.Fatal("the delivery joined the sender's trace; it should start its own, linked")
	}
	a := deliver.Attributes
	if a[string(AttrSenderTrace)] != send.SpanContext().TraceID().String() || a[string(AttrMessageID)] != "m1" || a[string(AttrAttempt)] != "2" || a[string(AttrOutcome)] != "retry" || deliver.Status != "error" {
		t.Fatalf("delivery span %+v", deliver)
	}
}

// scrape gathers m's registry into "name{k="v",...}" → value, labels
// sorted by name; a histogram gives name_count.
func scrape(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, lp := range mt.GetLabel() {
				ls = append(ls, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			sort.Strings(ls)
			key := mf.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case mt.Counter != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.Histogram != nil:
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_count", 1)] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// A delivery span on the SDK path carries the link to the sender's span
// itself (the store keeps no links: AttrSenderTrace stands for it), is a
// consumer span of a trace of its own, and a dead letter's is an error.
func TestDeliverySpanExportsItsLink(t *testing.T) {
	cfg := config.Default().Tracing
	cfg.Enabled = true
	exp := tracetest.NewInMemoryExporter()
	tr, err := NewTracing(context.Background(), cfg, TracingOptions{NodeID: "n1", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	sctx, send := tr.Provider.Tracer("test").Start(context.Background(), "POST /v1/messages")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(sctx, carrier)
	send.End()

	o := NewObserver(NewMetrics(), tr.Provider).Messages()
	msg := queue.Message{ID: "m1", Actor: "counter/c1", Method: "add", TraceParent: carrier["traceparent"], Attempts: 4}
	_, end := o.StartDelivery(runtime.WithCorrelationID(context.Background(), "cid-m"), msg)
	end(messaging.OutcomeDead, errors.New("handler failed"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	var deliver *tracetest.SpanStub
	for i, s := range exp.GetSpans() {
		if s.Name == "loom.deliver counter.add" {
			deliver = &exp.GetSpans()[i]
		}
	}
	if deliver == nil {
		t.Fatalf("no delivery span exported: %+v", exp.GetSpans())
	}
	sc := send.SpanContext()
	if len(deliver.Links) != 1 || !deliver.Links[0].SpanContext.Equal(sc.WithRemote(true)) {
		t.Fatalf("links %+v, want the sender's span %s/%s", deliver.Links, sc.TraceID(), sc.SpanID())
	}
	if deliver.Parent.IsValid() || deliver.SpanContext.TraceID() == sc.TraceID() {
		t.Fatalf("the delivery has parent %v in trace %s: it should be a root of its own trace", deliver.Parent, deliver.SpanContext.TraceID())
	}
	if deliver.SpanKind != trace.SpanKindConsumer || deliver.Status.Code != codes.Error {
		t.Fatalf("kind %v status %+v, want consumer and error", deliver.SpanKind, deliver.Status)
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range deliver.Attributes {
		attrs[kv.Key] = kv.Value.Emit()
	}
	for k, v := range map[attribute.Key]string{
		AttrCorrelationID: "cid-m", AttrActor: "counter/c1", AttrMethod: "add",
		AttrMessageID: "m1", AttrAttempt: "5", AttrOutcome: messaging.OutcomeDead,
	} {
		if attrs[k] != v {
			t.Errorf("%s = %q, want %q", k, attrs[k], v)
		}
	}
}

// Without a sender's span (none, or a traceparent that does not parse)
// the delivery is still traced, unlinked; an acknowledged one is no error.
func TestDeliverySpanWithoutASender(t *testing.T) {
	for _, tp := range []string{"", "00-not-a-traceparent-01"} {
		tr := newTracingPath(t, false)
		o := NewObserver(NewMetrics(), tr.Provider).Messages()
		_, end := o.StartDelivery(runtime.WithCorrelationID(context.Background(), "cid-x"), queue.Message{ID: "m1", Actor: "counter/c1", Method: "add", TraceParent: tp})
		end(messaging.OutcomeOK, nil)
		spans := tr.Store.Query(Query{CorrelationID: "cid-x"})
		if len(spans) != 1 || spans[0].Name != "loom.deliver counter.add" || spans[0].Status == "error" {
			t.Fatalf("traceparent %q: spans %+v", tp, spans)
		}
		if a, ok := spans[0].Attributes[string(AttrSenderTrace)]; ok {
			t.Fatalf("traceparent %q: linked to %q", tp, a)
		}
	}
}

// With tracing off the observer leaves the context alone and still counts.
func TestDeliveryWithoutTracing(t *testing.T) {
	m := NewMetrics()
	o := NewObserver(m, nil).Messages()
	ctx := runtime.WithCorrelationID(context.Background(), "cid-off")
	got, end := o.StartDelivery(ctx, queue.Message{ID: "m1", Actor: "counter/c1", Method: "add", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	end(messaging.OutcomeRetry, errors.New("no"))
	if got != ctx || trace.SpanFromContext(got).SpanContext().IsValid() {
		t.Fatal("StartDelivery changed the context with tracing off")
	}
	o.Delivered("counter", messaging.OutcomeRetry, time.Millisecond)
	if v := scrape(t, m)[`loom_messages_retries_total{type="counter"}`]; v != 1 {
		t.Fatalf("retries %v, want 1", v)
	}
}

// The delivery span's correlation id is the message's, whatever context
// the delivery runs in.
func TestDeliverySpanTakesTheMessagesCorrelationID(t *testing.T) {
	tr := newTracingPath(t, false)
	o := NewObserver(NewMetrics(), tr.Provider).Messages()
	_, end := o.StartDelivery(context.Background(), queue.Message{ID: "m1", Actor: "counter/c1", Method: "add", CorrelationID: "cid-sent"})
	end(messaging.OutcomeOK, nil)
	if spans := tr.Store.Query(Query{CorrelationID: "cid-sent"}); len(spans) != 1 || spans[0].Name != "loom.deliver counter.add" {
		t.Fatalf("spans for the message's correlation id: %+v", spans)
	}
}

// A scrape whose queue figures cannot be read leaves their gauges out and
// the rest of the scrape whole; nothing attached, nothing is reported.
func TestMessageGaugesWhenTheQueuesCannotBeRead(t *testing.T) {
	m := NewMetrics()
	m.MessageSent("counter")
	if got := scrape(t, m); got[`loom_messages_sent_total{type="counter"}`] != 1 {
		t.Fatalf("with no source: %v", got)
	} else if _, ok := got[`loom_messages_in_flight`]; ok {
		t.Fatal("loom_messages_in_flight reported with no dispatcher attached")
	}
	m.SetMessages(MessageSource{
		Stats: func(ctx context.Context) ([]queue.Stats, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("the queue figures are read without a deadline")
			}
			return nil, errors.New("store closed")
		},
		InFlight: func() int { return 1 },
	})
	got := scrape(t, m)
	for k := range got {
		if strings.HasPrefix(k, "loom_message_queue_") || strings.HasPrefix(k, "loom_message_dead_letters") || strings.HasPrefix(k, "loom_message_reminders") {
			t.Errorf("%s reported though the queues could not be read", k)
		}
	}
	if got[`loom_messages_in_flight`] != 1 || got[`loom_messages_sent_total{type="counter"}`] != 1 {
		t.Fatalf("scrape: %v", got)
	}
}
