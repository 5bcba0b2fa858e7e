package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/loom-mesh/loom/adapters/inmem"
	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/runtime"
)

// Options configure a Node.
type Options struct {
	// Config is the node's validated configuration (config.Default() for
	// embedded defaults).
	Config config.Config
	// Types are the application's actor types.
	Types []runtime.Definition
	// Builtins also registers the built-in counter, register and kv types.
	Builtins bool
	// Logger receives the node's logs; nil builds one from Config.Logging
	// writing to stderr. The node adds its id to every line.
	Logger *slog.Logger
}

// Node is one Loom node.
type Node struct {
	opts Options
	cfg  config.Config
	log  *slog.Logger

	mu      sync.Mutex
	started bool
	stopped bool

	journal journal.Journal
	coord   lock.Coordinator
	keeper  *lock.Keeper
	rt      *runtime.Runtime
	ln      net.Listener
	srv     *http.Server
	served  chan error

	stopWatch context.CancelFunc
	wg        sync.WaitGroup
}

// New checks the configuration and builds a Node. It starts nothing.
func New(opts Options) (*Node, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if err := keeperConfig(opts.Config).Validate(); err != nil {
		return nil, fmt.Errorf("node: coordination.sessionTTL and coordination.renewInterval: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = NewLogger(opts.Config.Logging, os.Stderr)
	}
	log = log.With("node", opts.Config.Node.ID)
	return &Node{opts: opts, cfg: opts.Config, log: log}, nil
}

// keeperConfig derives the session keeper's settings from the config.
func keeperConfig(c config.Config) lock.KeeperConfig {
	kc := lock.KeeperConfigForTTL(c.Coordination.SessionTTL)
	kc.RenewInterval = c.Coordination.RenewInterval
	kc.RequestTimeout = c.Coordination.RenewInterval
	kc.RetryMax = c.Coordination.RenewInterval
	return kc
}

// NewLogger builds the slog logger the logging config describes.
func NewLogger(c config.LoggingConfig, w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	ho := &slog.HandlerOptions{Level: level}
	if c.Format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// Start opens the journal, opens the node's coordinator session, starts the
// runtime and serves HTTP. On error everything opened so far is closed.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("node: already started")
	}
	n.started = true
	defer func() {
		if err != nil {
			n.closeParts(context.Background())
		}
	}()
	c := n.cfg

	var epoch uint64
	switch c.Journal.Backend {
	case config.JournalBBolt:
		if err := os.MkdirAll(c.Node.DataDir, 0o755); err != nil {
			return fmt.Errorf("node: data dir: %w", err)
		}
		jo := journal.DefaultFileOptions()
		jo.Logger = n.log
		j, err := journal.OpenFile(c.JournalPath(), jo)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.journal = j
		if epoch, err = nextEpoch(c.Node.DataDir); err != nil {
			return err
		}
	case config.JournalMemory:
		n.journal = inmem.NewJournal()
	default:
		return fmt.Errorf("node: journal backend %q not supported", c.Journal.Backend)
	}

	switch c.Coordination.Backend {
	case config.CoordinationMemory:
		n.coord = epochCoordinator{Coordinator: inmem.NewCoordinator(inmem.CoordinatorOptions{}), base: epoch << 32}
	default:
		return fmt.Errorf("node: coordination backend %q not supported", c.Coordination.Backend)
	}
	n.keeper = lock.NewKeeper(n.coord, c.Node.ID, keeperConfig(c), n.log)
	if err := n.keeper.Start(ctx); err != nil {
		return fmt.Errorf("node: coordinator session: %w", err)
	}

	rt, err := runtime.New(runtime.Options{
		NodeID:          c.Node.ID,
		Journal:         n.journal,
		Coordinator:     n.coord,
		Session:         n.keeper,
		Pool:            func(t string) runtime.PoolConfig { return runtime.PoolConfig(c.ActorPools.For(t)) },
		SnapshotEvery:   c.Journal.SnapshotEvery,
		MaxPayloadBytes: c.Node.MaxPayloadBytes,
		Logger:          n.log,
	})
	if err != nil {
		return err
	}
	n.rt = rt
	watchCtx, stopWatch := context.WithCancel(context.Background())
	n.stopWatch = stopWatch
	n.wg.Add(1)
	go n.watchLapses(watchCtx)
	types := append([]runtime.Definition(nil), n.opts.Types...)
	if n.opts.Builtins {
		types = append(types, builtin.Types()...)
	}
	if err := rt.Register(types...); err != nil {
		return err
	}

	addr := net.JoinHostPort(c.Node.Bind, strconv.Itoa(c.Node.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: http listen on %s: %w", addr, err)
	}
	n.ln = ln
	n.srv = &http.Server{
		Handler:           n.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	n.served = make(chan error, 1)
	go func() { n.served <- n.srv.Serve(ln) }()
	n.log.Info("node started", "http", n.HTTPAddr(), "journal", c.Journal.Backend, "data_dir", c.Node.DataDir)
	return nil
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", gateway.New(gateway.Options{
		Invoker:      n.rt,
		MaxBodyBytes: int64(n.cfg.Node.MaxPayloadBytes),
		Types:        n.rt.Types,
		Logger:       n.log,
	}))
	mux.HandleFunc("GET /health", n.health)
	return mux
}

func (n *Node) health(w http.ResponseWriter, _ *http.Request) {
	status, code := "healthy", http.StatusOK
	if !n.keeper.Valid() {
		status, code = "unhealthy", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status":    status,
		"node":      n.cfg.Node.ID,
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano),
	})
}

// watchLapses drops every activation the moment the node's session may
// have lapsed: another node may take its actors from then on.
func (n *Node) watchLapses(ctx context.Context) {
	defer n.wg.Done()
	for {
		e, err := n.keeper.Wait(ctx)
		if err != nil {
			return
		}
		select {
		case <-e.Lapsed():
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("coordinator session may have lapsed; dropping all actors", "session", e.Session())
			n.rt.DropAll("coordinator session may have lapsed")
		case <-ctx.Done():
			return
		}
	}
}

// HTTPAddr is the address the HTTP server listens on ("" before Start).
func (n *Node) HTTPAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.Node.ID }

// Runtime is the node's actor runtime (nil before Start).
func (n *Node) Runtime() *runtime.Runtime { return n.rt }

// Invoke implements runtime.Invoker.
func (n *Node) Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error) {
	if n.rt == nil {
		return nil, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	return n.rt.Invoke(ctx, actorType, id, method, payload)
}

// InvokeLocal implements runtime.LocalInvoker.
func (n *Node) InvokeLocal(ctx context.Context, actorType, id, method string, in any) (any, error) {
	if n.rt == nil {
		return nil, fmt.Errorf("%w: node not started", runtime.ErrUnavailable)
	}
	return n.rt.InvokeLocal(ctx, actorType, id, method, in)
}

// Shutdown stops accepting requests, waits for running requests and turns
// (until ctx ends), deactivates every actor, ends the coordinator session
// and closes the journal. It may be called more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || !n.started {
		return nil
	}
	n.stopped = true
	n.log.Info("node stopping")
	err := n.closeParts(ctx)
	n.log.Info("node stopped")
	return err
}

// closeParts closes whatever Start opened, in reverse order.
func (n *Node) closeParts(ctx context.Context) error {
	var errs []error
	if n.srv != nil {
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: http: %w", err))
			_ = n.srv.Close()
		}
		if err := <-n.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("node: http: %w", err))
		}
	} else if n.ln != nil {
		_ = n.ln.Close()
	}
	if n.rt != nil {
		if err := n.rt.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if n.stopWatch != nil {
		n.stopWatch()
		n.wg.Wait()
	}
	if n.keeper != nil {
		if err := n.keeper.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: session: %w", err))
		}
	}
	if n.coord != nil {
		_ = n.coord.Close()
	}
	if n.journal != nil {
		if err := n.journal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: journal: %w", err))
		}
	}
	return errors.Join(errs...)
}
