package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/task"
)

// Task routes:
//
//	POST /v1/tasks/{name}            body: the JSON input (empty = zero value)
//	POST /v1/tasks/{name}?async=true fire and forget
//	GET  /v1/tasks                   the registered task names
//
// A run answers with its Outcome as JSON —
// {"success":…,"value":…,"error":{"code","message"},"durationMs":…,"attempts":…,"start":…,"failedStep":…}
// — and a status that says how it went: 200 success; 422 the task failed
// (code "failed"); 500 it panicked ("panic"); 504 its Timeout or the
// request's deadline passed ("timeout", "deadline_exceeded"); 499 the
// client went away ("canceled"). A run that did not happen answers the
// usual error body: 404 unknown_task, 400 bad_payload (the body is not
// valid JSON for the task's input), 413, 503 shutting_down. An async
// request answers 202 {"accepted":true,"task":…,"correlationId":…} once the
// name and input are checked; the outcome goes to the node's task metrics,
// spans and log.
//
// X-Correlation-ID and X-Loom-Timeout work as for actor calls. A W3C trace
// context in the request headers (traceparent) is extracted with
// Options.Propagator, else the global propagator (a no-op unless the
// application installs one), so the task's span joins the caller's trace;
// with Options.TracerProvider the request also gets a server span, and the
// task's span (a child) goes to the same pipeline.
func (h *Handler) taskRoutes() {
	h.mux.HandleFunc("POST /v1/tasks/{name}", h.runTask)
	h.mux.HandleFunc("GET /v1/tasks", h.taskNames)
}

// Accepted is the JSON answer to an async task request.
type Accepted struct {
	Accepted      bool   `json:"accepted"`
	Task          string `json:"task"`
	CorrelationID string `json:"correlationId"`
}

func (h *Handler) runTask(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cid := correlationID(w, r)
	if h.opts.Tasks == nil {
		writeError(w, http.StatusNotFound, "unknown_task", fmt.Sprintf("%v: %q (this server runs no tasks)", task.ErrUnknownTask, name))
		return
	}
	timeout, ok := h.timeout(w, r)
	if !ok {
		return
	}
	async := false
	if v := r.URL.Query().Get("async"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("async: %q is not a boolean", v))
			return
		}
		async = b
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	prop := h.opts.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx = runtime.WithCorrelationID(ctx, cid)
	if h.tracer != nil {
		var span trace.Span
		ctx, span = h.tracer.Start(ctx, "POST /v1/tasks/{name}", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("loom.task", name), attribute.Bool("loom.task.async", async)))
		defer span.End()
	}

	if async {
		// The run keeps the request's values, not its cancellation.
		if err := h.opts.Tasks.StartTask(ctx, name, body); err != nil {
			h.taskFailed(w, name, cid, err)
			return
		}
		writeJSON(w, http.StatusAccepted, Accepted{Accepted: true, Task: name, CorrelationID: cid})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o, err := h.opts.Tasks.RunTask(ctx, name, body)
	if err != nil {
		h.taskFailed(w, name, cid, err)
		return
	}
	status := TaskStatus(o)
	if status != http.StatusOK {
		h.opts.Logger.Info("task failed", "task", name, "correlation_id", cid, "status", status, "code", o.Error.Code, "err", o.Error.Message)
	}
	writeJSON(w, status, o)
}

// taskFailed answers a run that did not happen.
func (h *Handler) taskFailed(w http.ResponseWriter, name, cid string, err error) {
	status, code := Classify(err)
	h.opts.Logger.Info("task not run", "task", name, "correlation_id", cid, "status", status, "err", err)
	writeError(w, status, code, err.Error())
}

// TaskStatus is the HTTP status of a task run's outcome.
func TaskStatus(o task.Outcome) int {
	if o.Success {
		return http.StatusOK
	}
	code := task.CodeFailed
	if o.Error != nil {
		code = o.Error.Code
	}
	switch code {
	case task.CodePanic:
		return http.StatusInternalServerError
	case task.CodeTimeout, task.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case task.CodeCanceled:
		return 499
	default:
		return http.StatusUnprocessableEntity
	}
}

func (h *Handler) taskNames(w http.ResponseWriter, _ *http.Request) {
	names := []string{}
	if h.opts.TaskNames != nil {
		names = h.opts.TaskNames()
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": names})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
