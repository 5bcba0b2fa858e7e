// Package gateway serves actors over HTTP/JSON:
//
//	POST /v1/actors/{type}/{id}/{method}   body: the JSON argument
//
// answers 200 with the JSON result, or an error body
// {"error":{"code":"...","message":"..."}} whose status says what happened
// (package errclass's table decides): 400 bad payload, argument or
// idempotency key, 404 unknown type or method, 409 conflict, fenced or a
// call cycle, 410 an idempotency key too old to be checked, 413 payload too
// large, 422 the method returned an error (or the key was used for another
// method), 429 the actor's queue is full (with Retry-After), 500 an actor
// panic or an internal failure, 502 outcome unknown, 503 unavailable or
// shutting down, 504 deadline exceeded. Only 200, 410 (an earlier call
// with the key may have run), 499, 500, 502 and 504 may have applied the
// call; every other status means nothing was applied.
//
// X-Correlation-ID is taken from the request (a new one is generated when
// absent) and echoed on the response. Idempotency-Key (at most 256 bytes)
// makes the call run at most once on its actor: a request with a key the
// actor already ran is answered with the recorded outcome, the same body
// and status, without running again, across restarts and failovers (see
// package runtime for the window a key is remembered in). The key's age
// counts from each request's arrival, so a retry of a key that the actor's
// count window already evicted looks new and runs again. (Go's net/http client resends a POST
// that carries an Idempotency-Key header, and has GetBody, when a reused
// connection breaks after the request was written; the resend is answered
// from the record if it reaches a node, but if it fails too the client
// reports only its error, such as "connection refused", which then does
// not mean that the first copy was not applied: send it again with the
// key.)
//
// It also runs stateless tasks: POST /v1/tasks/{name} (see tasks.go).
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// Options configure the gateway handler.
type Options struct {
	// Invoker runs the calls (a node, or a cluster client).
	Invoker runtime.Invoker
	// MaxBodyBytes rejects larger request bodies with 413. Default 4 MiB.
	MaxBodyBytes int64
	// Timeout bounds each call when the request sets none. Default 30 s.
	Timeout time.Duration
	// Types, when set, lists the actor types for GET /v1/actors.
	Types func() map[string][]string
	// Logger receives one line per failed call; nil discards.
	Logger *slog.Logger
	// Tasks, when set, runs POST /v1/tasks/{name} (see tasks.go); nil
	// answers 404 unknown_task. TaskNames lists them for GET /v1/tasks.
	Tasks     task.Invoker
	TaskNames func() []string
	// TracerProvider, when set, gives every actor call a server span
	// (joining the caller's trace when the request carries a W3C
	// traceparent, read with Propagator). nil: no spans.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Messages, when set, serves durable messaging: POST /v1/messages,
	// the dead letters and reminders (messages.go); nil answers 501
	// messaging_disabled.
	Messages Messages
}

// Handler serves the gateway's routes.
type Handler struct {
	opts   Options
	mux    *http.ServeMux
	tracer trace.Tracer // nil without a TracerProvider
}

// New builds the handler. It starts nothing.
func New(opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	if opts.TracerProvider != nil {
		h.tracer = opts.TracerProvider.Tracer("github.com/loom-mesh/loom/gateway")
	}
	h.mux.HandleFunc("POST /v1/actors/{type}/{id}/{method}", h.call)
	h.mux.HandleFunc("GET /v1/actors", h.types)
	h.taskRoutes()
	h.messageRoutes()
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Header names the gateway reads and writes.
const (
	HeaderCorrelationID  = "X-Correlation-ID"
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderTimeout bounds the call, as a Go duration ("250ms", "5s").
	HeaderTimeout = "X-Loom-Timeout"
)

func (h *Handler) call(w http.ResponseWriter, r *http.Request) {
	cid := correlationID(w, r)

	timeout, ok := h.timeout(w, r)
	if !ok {
		return
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	ctx = runtime.WithCorrelationID(ctx, cid)
	if k := r.Header.Get(HeaderIdempotencyKey); k != "" {
		ctx = runtime.WithIdempotencyKey(ctx, k)
	}
	typ, id, method := r.PathValue("type"), r.PathValue("id"), r.PathValue("method")
	var span trace.Span
	if h.tracer != nil {
		if h.opts.Propagator != nil {
			ctx = h.opts.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		ctx, span = h.tracer.Start(ctx, "POST /v1/actors/{type}/{id}/{method}", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("loom.actor", typ+"/"+id), attribute.String("loom.method", method)))
		defer span.End()
	}
	res, err := h.opts.Invoker.Invoke(ctx, typ, id, method, body)
	if err != nil {
		status, code := Classify(err)
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		h.opts.Logger.Info("call failed", "actor", typ+"/"+id, "method", method, "correlation_id", cid, "status", status, "err", err)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res)
	_, _ = w.Write([]byte("\n")) // like the error bodies; friendlier to curl
}

func (h *Handler) types(w http.ResponseWriter, _ *http.Request) {
	out := map[string][]string{}
	if h.opts.Types != nil {
		out = h.opts.Types()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"types": out})
}

// Classify maps an error from an Invoker to an HTTP status and a stable
// error code: errclass's table, the one the transport and the metrics
// read too.
func Classify(err error) (status int, code string) {
	c := errclass.Of(err)
	return c.HTTP, c.Code
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers err as the gateway answers a failed call: the
// status and code of its class (Classify), its message, as an ErrorBody.
func WriteError(w http.ResponseWriter, err error) {
	status, code := Classify(err)
	writeError(w, status, code, err.Error())
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

// correlationID returns the request's X-Correlation-ID, or a new one, and
// echoes it on the response.
func correlationID(w http.ResponseWriter, r *http.Request) string {
	cid := r.Header.Get(HeaderCorrelationID)
	if cid == "" {
		cid = runtime.NewCorrelationID()
	}
	w.Header().Set(HeaderCorrelationID, cid)
	return cid
}

// timeout is the request's X-Loom-Timeout, or the default; on a bad value
// it answers 400 and returns false.
func (h *Handler) timeout(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.Header.Get(HeaderTimeout)
	if v == "" {
		return h.opts.Timeout, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		writeError(w, http.StatusBadRequest, "bad_timeout", fmt.Sprintf("%s: %q is not a positive duration", HeaderTimeout, v))
		return 0, false
	}
	return d, true
}

// readBody reads the body up to MaxBodyBytes; on failure it answers 413
// or 400 and returns false.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err == nil {
		return body, true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body exceeds %d bytes", h.opts.MaxBodyBytes))
	} else {
		writeError(w, http.StatusBadRequest, "bad_payload", "reading body: "+err.Error())
	}
	return nil, false
}
