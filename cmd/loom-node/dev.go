package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node"
)

// nodeFlags are the flags that override the config file. Only flags given on
// the command line override it.
type nodeFlags struct {
	fs       *flag.FlagSet
	config   string
	dataDir  string
	httpPort int
	nodeID   string
	bind     string
}

func newNodeFlags(name string, stderr io.Writer) *nodeFlags {
	f := &nodeFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.config, "config", "", "config file (default: $LOOM_CONFIG_PATH, else built-in defaults)")
	f.fs.StringVar(&f.dataDir, "data-dir", "", "data directory (node.dataDir, default ./loom-data)")
	f.fs.IntVar(&f.httpPort, "http-port", 0, "HTTP port (node.httpPort, default 7420; 0 picks a free port)")
	f.fs.StringVar(&f.nodeID, "node-id", "", "node id (node.id, default node-1)")
	f.fs.StringVar(&f.bind, "bind", "", "address to listen on (node.bind, default 127.0.0.1)")
	return f
}

// load reads the config file and applies the flags that were set.
func (f *nodeFlags) load() (config.Config, error) {
	cfg, err := config.Load(config.Path(f.config))
	if err != nil {
		return cfg, err
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "data-dir":
			cfg.Node.DataDir = f.dataDir
		case "http-port":
			cfg.Node.HTTPPort = f.httpPort
		case "node-id":
			cfg.Node.ID = f.nodeID
		case "bind":
			cfg.Node.Bind = f.bind
		}
	})
	return cfg, cfg.Validate()
}

func cmdDev(args []string, stdout, stderr io.Writer) int {
	f := newNodeFlags("loom-node dev", stderr)
	if err := f.fs.Parse(args); err != nil {
		return 2
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loom-node dev: unexpected argument %q\n", f.fs.Arg(0))
		return 2
	}
	cfg, err := f.load()
	if err != nil {
		fmt.Fprintf(stderr, "loom-node dev: invalid configuration:\n%v\n", err)
		return 1
	}
	return serve(cfg, stdout, stderr)
}

// serve runs a node until SIGINT or SIGTERM.
func serve(cfg config.Config, stdout, stderr io.Writer) int {
	n, err := node.New(node.Options{Config: cfg, Builtins: true})
	if err != nil {
		fmt.Fprintf(stderr, "loom-node: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	if err := n.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "loom-node: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "loom-node %s serving http://%s (journal %s, data dir %s)\n",
		cfg.Node.ID, n.HTTPAddr(), cfg.Journal.Backend, cfg.Node.DataDir)

	sig := <-sigs
	fmt.Fprintf(stderr, "loom-node: %v: shutting down (again to exit now)\n", sig)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Node.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintf(stderr, "loom-node: shutdown: %v\n", err)
			return 1
		}
		return 0
	case sig := <-sigs:
		fmt.Fprintf(stderr, "loom-node: %v: exiting now\n", sig)
		return 1
	}
}
