package observability

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/runtime"
)

// NewLogger builds the slog logger the logging config describes (text or
// JSON, at the configured level) writing to w, with a ContextHandler, so
// that a line logged with a call's context carries its correlation id.
// The node adds its id to every line (Logger.With("node", id)).
func NewLogger(c config.LoggingConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	ho := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.Format == config.LogFormatJSON {
		h = slog.NewJSONHandler(w, ho)
	} else {
		h = slog.NewTextHandler(w, ho)
	}
	return slog.New(NewContextHandler(h))
}

// ContextHandler adds, to every record logged with a context (InfoContext
// and the like), the call's correlation_id and, when a span is recording,
// its trace_id. Records logged without a context are unchanged.
type ContextHandler struct{ h slog.Handler }

// NewContextHandler wraps h. Wrapping a ContextHandler again returns it.
func NewContextHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(ContextHandler); ok {
		return h
	}
	return ContextHandler{h}
}

// Enabled implements slog.Handler.
func (c ContextHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (c ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if cid := runtime.CorrelationID(ctx); cid != "" {
			r.AddAttrs(slog.String("correlation_id", cid))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsSampled() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
		}
	}
	return c.h.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (c ContextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ContextHandler{c.h.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (c ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{c.h.WithGroup(name)}
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}
