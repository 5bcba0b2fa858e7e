package transport_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// mailbox is a MessageHandler that records what it accepts and refuses
// what it is told to.
type mailbox struct {
	mu      sync.Mutex
	got     []runtime.Envelope
	cids    []string
	tps     []string // the W3C traceparent of each send's context
	dls     []bool   // whether each send's context had a deadline
	refuse  error
	nextSeq uint64
	block   chan struct{} // closed once a send blocks; nil: none blocks
}

func (m *mailbox) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != nil {
		return queue.Accepted{}, fmt.Errorf("refused: %w", m.refuse)
	}
	m.got = append(m.got, e)
	m.cids = append(m.cids, runtime.CorrelationID(ctx))
	tp := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, tp)
	m.tps = append(m.tps, tp["traceparent"])
	_, dl := ctx.Deadline()
	m.dls = append(m.dls, dl)
	m.nextSeq++
	if m.block != nil {
		// Accepted, and the answer never leaves: hold on until the
		// connection is cut.
		close(m.block)
		m.block = nil
		m.mu.Unlock()
		<-ctx.Done()
		m.mu.Lock()
		return queue.Accepted{}, ctx.Err()
	}
	return queue.Accepted{ID: e.MessageID, Seq: m.nextSeq, AcceptedAt: time.Unix(1_700_000_000, 5).UTC()}, nil
}

func TestSendRoundTrip(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m})
	p := newPool(t, transport.PoolOptions{})
	at := time.Unix(1_800_000_000, 7)
	ctx := runtime.WithCorrelationID(context.Background(), "cid-send")
	acc, err := p.Send(ctx, s.addr, runtime.Envelope{
		ActorType: "counter", ActorID: "c1", Method: "add", Payload: []byte(`{"delta":1}`),
		MessageID: "m-1", Headers: map[string]string{"h": "v"}, DeliverAt: at,
	})
	if err != nil || acc.ID != "m-1" || acc.Seq != 1 || !acc.AcceptedAt.Equal(time.Unix(1_700_000_000, 5)) {
		t.Fatalf("Send: %+v, %v", acc, err)
	}
	m.mu.Lock()
	e, cid := m.got[0], m.cids[0]
	m.mu.Unlock()
	if e.ActorType != "counter" || e.ActorID != "c1" || e.Method != "add" || string(e.Payload) != `{"delta":1}` ||
		e.MessageID != "m-1" || e.Headers["h"] != "v" || !e.DeliverAt.Equal(at) || cid != "cid-send" {
		t.Fatalf("handler got %+v (correlation id %q)", e, cid)
	}
	// Refusals come back as their sentinels.
	for _, want := range []error{runtime.ErrUnknownType, runtime.ErrUnknownMethod, runtime.ErrDeliverAtTooFar, runtime.ErrShuttingDown, runtime.ErrPayloadTooLarge} {
		m.mu.Lock()
		m.refuse = want
		m.mu.Unlock()
		if _, err := p.Send(ctx, s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}); !errors.Is(err, want) {
			t.Errorf("refused with %v: got %v", want, err)
		}
	}
	// A node without a handler has no messaging.
	bare := serveOn(t, "127.0.0.1:0", transport.ServerOptions{})
	if _, err := p.Send(ctx, bare.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}); !errors.Is(err, runtime.ErrMessagingDisabled) {
		t.Fatalf("no handler: %v, want ErrMessagingDisabled", err)
	}
}

// The caller's trace context reaches the handler through otelgrpc's
// metadata when both sides have a propagator (a node's server has no
// TracerProvider, only the propagator: the handler still sees the remote
// span), an envelope's own traceparent travels as is, and so does the
// deadline.
func TestSendTraceContext(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{}
	prop := propagation.TraceContext{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m, Propagator: prop})
	p := newPool(t, transport.PoolOptions{Propagator: prop})
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx, cancel := context.WithTimeout(trace.ContextWithRemoteSpanContext(context.Background(), sc), 10*time.Second)
	defer cancel()
	e := runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}
	if _, err := p.Send(ctx, s.addr, e); err != nil {
		t.Fatal(err)
	}
	const own = "00-0102030405060708090a0b0c0d0e0f10-0807060504030201-01"
	e.TraceParent = own
	if _, err := p.Send(context.Background(), s.addr, e); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if want := "00-" + tid.String() + "-0102030405060708-01"; m.tps[0] != want || !m.dls[0] {
		t.Errorf("first send: handler saw traceparent %q (want %q), deadline %v", m.tps[0], want, m.dls[0])
	}
	if m.got[0].TraceParent != "" || m.got[1].TraceParent != own || m.dls[1] {
		t.Errorf("envelopes' traceparents %q, %q (want \"\", %q); second deadline %v", m.got[0].TraceParent, m.got[1].TraceParent, own, m.dls[1])
	}
}

// A node without a MessageHandler answers Messages.Send with the table's
// status for ErrMessagingDisabled: Unimplemented, not applied.
func TestSendWithoutHandler(t *testing.T) {
	checkLeaks(t)
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = loompb.NewMessagesClient(conn).Send(context.Background(), &loompb.SendRequest{ActorType: "counter", ActorId: "c1", Method: "add"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("raw Send: %v, want Unimplemented", err)
	}
	p := newPool(t, transport.PoolOptions{})
	_, err = p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"})
	if !errors.Is(err, runtime.ErrMessagingDisabled) || transport.MaybeApplied(err) {
		t.Fatalf("Pool.Send: %v (maybe applied %v), want ErrMessagingDisabled, not applied", err, transport.MaybeApplied(err))
	}
}

// A send whose connection is cut after the request was written has an
// unknown outcome; one that could not be sent is unavailable; a payload
// too large for the transport is refused before it is sent.
func TestSendFailures(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{block: make(chan struct{})}
	entered := m.block
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m})
	p := newPool(t, transport.PoolOptions{MaxMessageBytes: 1 << 20})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add", MessageID: "m-cut"})
		errc <- err
	}()
	<-entered
	s.stop(0) // hard: the connection is cut under the running send
	if err := <-errc; !errors.Is(err, transport.ErrUnknownOutcome) || errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("cut mid-send: %v, want ErrUnknownOutcome", err)
	}
	_, err := p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"})
	if !errors.Is(err, runtime.ErrUnavailable) || transport.MaybeApplied(err) {
		t.Fatalf("to a stopped server: %v, want ErrUnavailable, not applied", err)
	}
	_, err = p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add", Payload: make([]byte, 1<<20)})
	if !errors.Is(err, runtime.ErrPayloadTooLarge) {
		t.Fatalf("1 MiB payload: %v, want ErrPayloadTooLarge", err)
	}
}

// A client other than the Pool may send the correlation id and the trace
// context in the request, or in metadata; the request's win. A send with
// no correlation id gets one where it enters the node.
func TestSendContextFromRequest(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m, Propagator: propagation.TraceContext{}})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := loompb.NewMessagesClient(conn)
	const tp = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	const mdTP = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"
	md := metadata.AppendToOutgoingContext(context.Background(), "loom-correlation-id", "cid-md", "traceparent", mdTP)
	for _, tc := range []struct {
		name    string
		req     *loompb.SendRequest
		cid, tp string
	}{
		{"metadata", &loompb.SendRequest{}, "cid-md", mdTP},
		{"request", &loompb.SendRequest{CorrelationId: "cid-req", Trace: map[string]string{"traceparent": tp}}, "cid-req", tp},
	} {
		tc.req.ActorType, tc.req.ActorId, tc.req.Method = "counter", "c1", "add"
		if _, err := raw.Send(md, tc.req); err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		cid, got, env := m.cids[len(m.cids)-1], m.tps[len(m.tps)-1], m.got[len(m.got)-1]
		m.mu.Unlock()
		if cid != tc.cid || got != tc.tp || env.TraceParent != "" {
			t.Errorf("%s: correlation id %q, trace context %q, envelope's traceparent %q; want %q, %q, none", tc.name, cid, got, env.TraceParent, tc.cid, tc.tp)
		}
	}
	p := newPool(t, transport.PoolOptions{})
	if _, err := p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	cid := m.cids[len(m.cids)-1]
	m.mu.Unlock()
	if len(cid) == 0 {
		t.Error("a send without a correlation id got none on the node")
	}
}

// TestSendErrorTable: a refused send answers every row of the error table
// as Actors.Invoke does: the row's gRPC code with the wire Error as its
// detail, which the Pool decodes into an error that matches the row's
// sentinel, with the remote message.
func TestSendErrorTable(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m})
	p := newPool(t, transport.PoolOptions{})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := loompb.NewMessagesClient(conn)
	env := runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}
	for _, row := range transport.ErrorRows() {
		var sent error
		switch {
		case row.Err == nil: // method_error: not a send's, but it travels
			sent = &runtime.MethodError{Actor: "t/1", Method: "m", Err: errors.New("no")}
		case row.Code == "not_owner":
			sent = transport.NotOwner("node-b", "t/1")
		default:
			sent = fmt.Errorf("remote detail: %w", row.Err)
		}
		m.mu.Lock()
		m.refuse = sent
		m.mu.Unlock()
		_, err := p.Send(context.Background(), s.addr, env)
		if want := "refused: " + sent.Error(); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want the remote %q", row.Code, err, want)
			continue
		}
		if row.Err != nil && !errors.Is(err, row.Err) {
			t.Errorf("%s: %v does not match its sentinel", row.Code, err)
		}
		var re *transport.RemoteError
		if !errors.As(err, &re) || re.Code != row.Code || transport.MaybeApplied(err) != row.MaybeApplied {
			t.Errorf("%s: remote error %+v", row.Code, re)
		}
		_, err = raw.Send(context.Background(), &loompb.SendRequest{ActorType: "counter", ActorId: "c1", Method: "add"})
		if st, _ := status.FromError(err); st.Code() != row.GRPC || len(st.Details()) != 1 {
			t.Errorf("%s: status %v, want code %v with the wire error", row.Code, st, row.GRPC)
		}
	}
}

// Delivery times UnixNano cannot say arrive as past as the past one and
// as far as the far one; an acceptance without a time comes back without
// one.
func TestSendEdgeTimes(t *testing.T) {
	checkLeaks(t)
	m := &mailbox{}
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: m})
	p := newPool(t, transport.PoolOptions{})
	for _, at := range []time.Time{time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), time.Unix(0, 0), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := p.Send(context.Background(), s.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add", DeliverAt: at}); err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		got := m.got[len(m.got)-1].DeliverAt
		m.mu.Unlock()
		past := at.Before(time.Now())
		if got.IsZero() || got.Before(time.Now()) != past || (!past && got.Year() < 2262) {
			t.Errorf("DeliverAt %v arrived as %v", at, got)
		}
	}
	zs := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Messages: noTime{}})
	if acc, err := p.Send(context.Background(), zs.addr, runtime.Envelope{ActorType: "counter", ActorID: "c1", Method: "add"}); err != nil || !acc.AcceptedAt.IsZero() || acc.ID != "made-up" || !acc.Duplicate || acc.Seq != 9 {
		t.Fatalf("acceptance without a time: %+v, %v", acc, err)
	}
}

// noTime accepts everything as a duplicate, without an acceptance time.
type noTime struct{}

func (noTime) Send(context.Context, runtime.Envelope) (queue.Accepted, error) {
	return queue.Accepted{ID: "made-up", Seq: 9, Duplicate: true}, nil
}
