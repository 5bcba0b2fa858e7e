package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
)

// Messages is what the durable-messaging routes need: a node implements
// it. nil answers 501 messaging_disabled.
type Messages interface {
	runtime.Sender
	// DeadLetters lists the dead letters f selects, oldest first.
	DeadLetters(ctx context.Context, f queue.Filter) ([]queue.DeadLetter, error)
	// Replay moves the dead letters f selects back into their queues.
	Replay(ctx context.Context, f queue.Filter) (int, error)
	// Purge deletes the dead letters f selects.
	Purge(ctx context.Context, f queue.Filter) (int, error)
	// Reminders lists an actor's reminders.
	Reminders(ctx context.Context, actorType, id string) ([]queue.Reminder, error)
	// DeleteReminder removes one.
	DeleteReminder(ctx context.Context, actorType, id, name string) error
}

// Headers of POST /v1/messages.
const (
	// HeaderMessageID names the message (a retry with the same id is
	// accepted once); without it the node generates one.
	HeaderMessageID = "Loom-Message-Id"
	// HeaderDeliverAt delays delivery until an RFC 3339 instant.
	HeaderDeliverAt = "Loom-Deliver-At"
	// HeaderDelay delays delivery by a Go duration ("30s").
	HeaderDelay = "Loom-Delay"
	// HeaderPrefix: each request header Loom-Header-Name: v becomes the
	// message header Name: v.
	HeaderPrefix = "Loom-Header-"
)

func (h *Handler) messageRoutes() {
	h.mux.HandleFunc("POST /v1/messages/{type}/{id}/{method}", h.send)
	h.mux.HandleFunc("GET /v1/deadletters", h.listDead)
	h.mux.HandleFunc("GET /v1/deadletters/{msg}", h.getDead)
	h.mux.HandleFunc("POST /v1/deadletters/replay", h.replayDead)
	h.mux.HandleFunc("POST /v1/deadletters/purge", h.purgeDead)
	h.mux.HandleFunc("GET /v1/actors/{type}/{id}/reminders", h.listReminders)
	h.mux.HandleFunc("DELETE /v1/actors/{type}/{id}/reminders/{name}", h.deleteReminder)
}

// SendResult is the body of a 202 from POST /v1/messages.
type SendResult struct {
	MessageID  string    `json:"messageId"`
	Seq        uint64    `json:"seq"`
	AcceptedAt time.Time `json:"acceptedAt"`
	// Duplicate: the id had been accepted before; this is that acceptance.
	Duplicate bool `json:"duplicate"`
	// Applied: the node applied the message as it accepted it; Seq is 0.
	Applied bool `json:"applied"`
}

func (h *Handler) messages(w http.ResponseWriter) (Messages, bool) {
	if h.opts.Messages == nil {
		writeErr(w, runtime.ErrMessagingDisabled)
		return nil, false
	}
	return h.opts.Messages, true
}

// writeErr answers err as the error table says.
func writeErr(w http.ResponseWriter, err error) {
	status, code := Classify(err)
	writeError(w, status, code, err.Error())
}

func (h *Handler) send(w http.ResponseWriter, r *http.Request) {
	m, ok := h.messages(w)
	if !ok {
		return
	}
	cid := correlationID(w, r)
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	e := runtime.Envelope{
		ActorType: r.PathValue("type"), ActorID: r.PathValue("id"), Method: r.PathValue("method"),
		Payload: body, MessageID: r.Header.Get(HeaderMessageID),
	}
	if v := r.Header.Get(HeaderDeliverAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_deliver_at", fmt.Sprintf("%s: %q is not an RFC 3339 time", HeaderDeliverAt, v))
			return
		}
		e.DeliverAt = t
	}
	if v := r.Header.Get(HeaderDelay); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || e.DeliverAt != (time.Time{}) {
			writeError(w, http.StatusBadRequest, "bad_delay", fmt.Sprintf("%s: %q is not a duration >= 0, or %s is set too", HeaderDelay, v, HeaderDeliverAt))
			return
		}
		e.DeliverAt = time.Now().Add(d)
	}
	for k, vs := range r.Header {
		if name, ok := strings.CutPrefix(k, textproto.CanonicalMIMEHeaderKey(HeaderPrefix)); ok && name != "" && len(vs) > 0 {
			if e.Headers == nil {
				e.Headers = map[string]string{}
			}
			e.Headers[name] = vs[0]
		}
	}
	ctx := runtime.WithCorrelationID(r.Context(), cid)
	if h.opts.Propagator != nil {
		ctx = h.opts.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	acc, err := m.Send(ctx, e)
	if err != nil {
		h.opts.Logger.Info("send failed", "actor", e.ActorType+"/"+e.ActorID, "method", e.Method, "correlation_id", cid, "err", err)
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, SendResult{MessageID: acc.ID, Seq: acc.Seq, AcceptedAt: acc.AcceptedAt, Duplicate: acc.Duplicate, Applied: acc.Applied})
}

// DeadLetterJSON is a dead letter as the routes show it. Payload is the
// argument as JSON when it is JSON, else PayloadBase64 holds it.
type DeadLetterJSON struct {
	ID            string            `json:"id"`
	Actor         string            `json:"actor"`
	Method        string            `json:"method"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payloadBase64,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	CorrelationID string            `json:"correlationId,omitempty"`
	Ordered       bool              `json:"ordered"`
	Attempts      uint32            `json:"attempts"`
	LastError     string            `json:"lastError"`
	AcceptedAt    time.Time         `json:"acceptedAt"`
	DeadAt        time.Time         `json:"deadAt"`
}

// DeadLetterView converts a dead letter for display.
func DeadLetterView(d queue.DeadLetter) DeadLetterJSON {
	v := DeadLetterJSON{
		ID: d.ID, Actor: d.Actor, Method: d.Method, Headers: d.Headers, CorrelationID: d.CorrelationID,
		Ordered: d.Ordered, Attempts: d.Attempts, LastError: d.LastError, AcceptedAt: d.AcceptedAt, DeadAt: d.DeadAt,
	}
	if json.Valid(d.Payload) {
		v.Payload = d.Payload
	} else {
		v.PayloadBase64 = d.Payload
	}
	return v
}

// filter reads a dead-letter filter from the query: type, actor ("type/id"),
// id (repeatable), olderThan (a Go duration), limit.
func filter(r *http.Request) (queue.Filter, error) {
	q := r.URL.Query()
	f := queue.Filter{Type: q.Get("type"), Actor: q.Get("actor"), IDs: q["id"]}
	if v := q.Get("olderThan"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return f, fmt.Errorf("olderThan: %q is not a duration >= 0", v)
		}
		f.Before = time.Now().Add(-d)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit: %q is not a count >= 0", v)
		}
		f.Limit = n
	}
	return f, nil
}

// selects reports whether f selects something narrower than everything.
func selects(f queue.Filter) bool {
	return f.Type != "" || f.Actor != "" || len(f.IDs) > 0 || !f.Before.IsZero()
}

func (h *Handler) listDead(w http.ResponseWriter, r *http.Request) {
	m, ok := h.messages(w)
	if !ok {
		return
	}
	f, err := filter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_filter", err.Error())
		return
	}
	dead, err := m.DeadLetters(r.Context(), f)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]DeadLetterJSON, 0, len(dead))
	for _, d := range dead {
		out = append(out, DeadLetterView(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadLetters": out})
}

func (h *Handler) getDead(w http.ResponseWriter, r *http.Request) {
	m, ok := h.messages(w)
	if !ok {
		return
	}
	id := r.PathValue("msg")
	dead, err := m.DeadLetters(r.Context(), queue.Filter{IDs: []string{id}})
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(dead) == 0 {
		writeError(w, http.StatusNotFound, "no_such_message", fmt.Sprintf("no dead letter with id %q", id))
		return
	}
	writeJSON(w, http.StatusOK, DeadLetterView(dead[0]))
}

// bulk serves replay and purge: a filter, or all=true for every dead
// letter (so that an empty query never touches them all by mistake).
func (h *Handler) bulk(w http.ResponseWriter, r *http.Request, what string, op func(context.Context, queue.Filter) (int, error)) {
	f, err := filter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_filter", err.Error())
		return
	}
	if !selects(f) && r.URL.Query().Get("all") != "true" {
		writeError(w, http.StatusBadRequest, "bad_filter", "give type, actor, id or olderThan, or all=true for every dead letter")
		return
	}
	n, err := op(r.Context(), f)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{what: n})
}

func (h *Handler) replayDead(w http.ResponseWriter, r *http.Request) {
	if m, ok := h.messages(w); ok {
		h.bulk(w, r, "replayed", m.Replay)
	}
}

func (h *Handler) purgeDead(w http.ResponseWriter, r *http.Request) {
	if m, ok := h.messages(w); ok {
		h.bulk(w, r, "purged", m.Purge)
	}
}

// ReminderJSON is a reminder as the routes show it.
type ReminderJSON struct {
	Name    string          `json:"name"`
	Method  string          `json:"method"`
	Payload json.RawMessage `json:"payload,omitempty"`
	DueAt   time.Time       `json:"dueAt"`
	Period  string          `json:"period"`
}

func (h *Handler) listReminders(w http.ResponseWriter, r *http.Request) {
	m, ok := h.messages(w)
	if !ok {
		return
	}
	rs, err := m.Reminders(r.Context(), r.PathValue("type"), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]ReminderJSON, 0, len(rs))
	for _, x := range rs {
		v := ReminderJSON{Name: x.Name, Method: x.Method, DueAt: x.DueAt, Period: x.Period.String()}
		if json.Valid(x.Payload) {
			v.Payload = x.Payload
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"reminders": out})
}

func (h *Handler) deleteReminder(w http.ResponseWriter, r *http.Request) {
	m, ok := h.messages(w)
	if !ok {
		return
	}
	if err := m.DeleteReminder(r.Context(), r.PathValue("type"), r.PathValue("id"), r.PathValue("name")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
