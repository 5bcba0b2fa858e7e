package raftlock

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// NewHCLogger adapts l into the hclog.Logger that hashicorp/raft takes.
// Levels map one to one (hclog's Trace is slog.LevelDebug-4); the logger's
// name (raft, raft-net, ...) becomes a "logger" attribute; key/value
// arguments pass through as slog attributes. Which levels are logged is
// decided by l's handler alone: SetLevel is ignored. A nil l discards
// everything.
func NewHCLogger(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hcLogger{l: l}
}

// LevelTrace is the slog level hclog's Trace is logged at.
const LevelTrace = slog.LevelDebug - 4

type hcLogger struct {
	l       *slog.Logger // with the implied args, not the name
	name    string
	implied []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel, Off, DefaultLevel
		return slog.LevelInfo
	}
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	h.log(slogLevel(level), msg, args)
}

func (h *hcLogger) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !h.l.Enabled(ctx, level) {
		return
	}
	if h.name != "" {
		args = append([]any{"logger", h.name}, args...)
	}
	h.l.Log(ctx, level, msg, formatValues(args)...)
}

// formatValues renders hclog.Format values (hclog.Fmt("%+v", x), which
// Raft uses) as the string hclog would print; slog would print the format
// itself.
func formatValues(args []any) []any {
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args = slices.Clone(args)
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	return args
}

func (h *hcLogger) Trace(msg string, args ...any) { h.log(LevelTrace, msg, args) }
func (h *hcLogger) Debug(msg string, args ...any) { h.log(slog.LevelDebug, msg, args) }
func (h *hcLogger) Info(msg string, args ...any)  { h.log(slog.LevelInfo, msg, args) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.log(slog.LevelWarn, msg, args) }
func (h *hcLogger) Error(msg string, args ...any) { h.log(slog.LevelError, msg, args) }

func (h *hcLogger) enabled(level slog.Level) bool { return h.l.Enabled(context.Background(), level) }

func (h *hcLogger) IsTrace() bool { return h.enabled(LevelTrace) }
func (h *hcLogger) IsDebug() bool { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool  { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool  { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool { return h.enabled(slog.LevelError) }

func (h *hcLogger) ImpliedArgs() []any { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	return &hcLogger{l: h.l.With(args...), name: h.name, implied: append(h.implied[:len(h.implied):len(h.implied)], args...)}
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	return &hcLogger{l: h.l, name: name, implied: h.implied}
}

// SetLevel is ignored: the slog handler decides what is logged.
func (h *hcLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the handler logs.
func (h *hcLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(slogLevel(lv)) {
			return lv
		}
	}
	return hclog.Off
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that logs each line written to it, at
// opts.ForceLevel if set, else at the level its "[LEVEL]" prefix names if
// opts.InferLevels, else at Info.
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{h: h, opts: *opts}
}

type stdWriter struct {
	h    *hcLogger
	opts hclog.StandardLoggerOptions
}

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[TRACE]", LevelTrace}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError},
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		msg := strings.TrimRight(string(line), "\r\n")
		level := slog.LevelInfo
		switch {
		case w.opts.ForceLevel != hclog.NoLevel:
			level = slogLevel(w.opts.ForceLevel)
		case w.opts.InferLevels || w.opts.InferLevelsWithTimestamp:
			for _, lp := range levelPrefixes {
				if i := strings.Index(msg, lp.prefix); i >= 0 {
					level, msg = lp.level, strings.TrimSpace(msg[i+len(lp.prefix):])
					break
				}
			}
		}
		w.h.log(level, msg, nil)
	}
	return len(p), nil
}
