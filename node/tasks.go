package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loom-mesh/loom/task"
	"github.com/loom-mesh/loom/transport"
)

// Tasks on a node: the tasks given in Options.Tasks are held in a
// task.Registry built by New (two tasks of one name are refused there).
// They run by name through the HTTP gateway (POST /v1/tasks/{name}),
// through gRPC (Tasks.Run, for the cluster client) and through the Node
// itself, which implements task.Invoker. Any node can run any of its
// tasks: they have no owner and write no journal, so nothing is routed or
// forwarded. Fire-and-forget runs are tracked by the registry; Shutdown
// gives them half of its remaining time to finish, then cancels them,
// before the runtime stops.

var (
	_ task.Invoker          = (*Node)(nil)
	_ transport.TaskHandler = actorHandler{}
)

func newTaskRegistry(defs []task.Definition, log *slog.Logger) (*task.Registry, error) {
	return task.NewRegistry(task.RegistryOptions{Tasks: defs, Logger: log.With("component", "tasks")})
}

// RunTask implements task.Invoker: it runs one of the node's tasks here.
func (n *Node) RunTask(ctx context.Context, name string, input []byte) (task.Outcome, error) {
	return n.tasks.RunTask(ctx, name, input)
}

// StartTask implements task.Invoker: it starts one of the node's tasks
// here and returns at once.
func (n *Node) StartTask(ctx context.Context, name string, input []byte) error {
	return n.tasks.StartTask(ctx, name, input)
}

// TaskNames lists the node's tasks, sorted.
func (n *Node) TaskNames() []string { return n.tasks.Names() }

// TaskMetrics is the prometheus.Collector of the node's tasks (runs,
// failures, retries and a duration histogram per task name, including the
// steps of composed tasks). Nothing registers it: the node's /metrics (or
// the application) does.
func (n *Node) TaskMetrics() prometheus.Collector { return n.tasks.Collector() }

// closeTasks refuses new task runs and waits for fire-and-forget runs,
// for at most half of the time ctx leaves, then cancels what still runs.
func (n *Node) closeTasks(ctx context.Context) {
	if n.tasks == nil {
		return
	}
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
		defer cancel()
	}
	if err := n.tasks.Close(ctx); err != nil {
		n.log.Warn("shutdown: background tasks canceled", "err", err)
	}
}

// HandleTask implements transport.TaskHandler: tasks that clients and
// other nodes send over gRPC run here.
func (h actorHandler) HandleTask(ctx context.Context, name string, input []byte, async bool) (task.Outcome, error) {
	if async {
		return task.Outcome{}, h.n.StartTask(ctx, name, input)
	}
	return h.n.RunTask(ctx, name, input)
}
