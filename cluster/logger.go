package cluster

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// NewMemberlistLogger adapts l into the *log.Logger memberlist takes. Each
// line memberlist writes is logged through l at the level its prefix names
// ("[DEBUG]", "[INFO]", "[WARN]", "[ERR]"/"[ERROR]"; anything else is Info),
// with the prefix and memberlist's "memberlist: " tag removed. A nil l
// discards everything.
//
// Cluster does this itself; the function is exported for callers that build
// a memberlist Transport (for example a fault-injecting wrapper around
// memberlist.NetTransport) and want its logs in the same place.
func NewMemberlistLogger(l *slog.Logger) *log.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return log.New(levelWriter{l}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

func (w levelWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\r\n")
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if rest, ok := strings.CutPrefix(msg, lp.prefix); ok {
			level, msg = lp.level, strings.TrimLeft(rest, " ")
			break
		}
	}
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return len(p), nil
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	w.l.Log(ctx, level, msg)
	return len(p), nil
}
