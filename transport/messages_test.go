package transport_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
)

// mailbox is a MessageHandler that records what it accepts and refuses
// what it is told to.
type mailbox struct {
	mu      sync.Mutex
	got     []runtime.Envelope
	cids    []string
	refuse  error
	nextSeq uint64
}

func (m *mailbox) Send(ctx context.Context, e runtime.Envelope) (queue.Accepted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != nil {
		return queue.Accepted{}, fmt.Errorf("refused: %w", m.refuse)
	}
	m.got = append(m.got, e)
	m.cids = append(m.cids, runtime.CorrelationID(ctx))
	m.nextSeq++
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
