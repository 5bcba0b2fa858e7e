package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	// cluster flags (run only)
	grpcPort, raftPort, gossipPort, bootstrapExpect int
	join, advertise, gossip                         string
	// tls flags (the tls section's files)
	tlsCA, tlsCert, tlsKey string
	tlsVerify              bool
	gossipKeyFile          string
	tokensFile             string
	tracing                bool
	// test-only flags (run only, chaos.go)
	test testFlags
}

func newNodeFlags(name string, stderr io.Writer) *nodeFlags {
	f := &nodeFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.config, "config", "", "config file (default: $LOOM_CONFIG_PATH, else built-in defaults)")
	f.fs.StringVar(&f.dataDir, "data-dir", "", "data directory (node.dataDir, default ./loom-data)")
	f.fs.IntVar(&f.httpPort, "http-port", 0, "HTTP port (node.httpPort, default 7420; 0 picks a free port)")
	f.fs.StringVar(&f.nodeID, "node-id", "", "node id (node.id, default node-1)")
	f.fs.StringVar(&f.bind, "bind", "", "address to listen on (node.bind, default 127.0.0.1)")
	f.fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate file (tls.ca)")
	f.fs.StringVar(&f.tlsCert, "tls-cert", "", "this node's certificate file (tls.cert); with --tls-key, turns TLS on")
	f.fs.StringVar(&f.tlsKey, "tls-key", "", "this node's key file (tls.key)")
	f.fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "a file holding the gossip encryption key, base64 (cluster.gossipKey; loom-node keygen makes one)")
	f.fs.BoolVar(&f.tracing, "tracing", false, "keep traces of calls, queryable with loom-node traces (tracing.enabled; dev and cluster default to true)")
	f.fs.StringVar(&f.tokensFile, "tokens-file", "", "a YAML file of bearer tokens the APIs require (auth.tokensFile; loom-node token create makes secrets)")
	f.fs.BoolVar(&f.tlsVerify, "tls-verify", false, "verify peers both ways against --tls-ca (tls.verifyIncoming and tls.verifyOutgoing)")
	return f
}

// addClusterFlags adds the flags of a cluster member.
func (f *nodeFlags) addClusterFlags() {
	f.fs.IntVar(&f.grpcPort, "grpc-port", 0, "gRPC port (node.grpcPort, default 7421; 0 picks a free port)")
	f.fs.IntVar(&f.raftPort, "raft-port", 0, "Raft port (node.raftPort, default 7422; 0 picks a free port)")
	f.fs.IntVar(&f.gossipPort, "gossip-port", 0, "gossip port (node.gossipPort, default 7946; 0 picks a free port)")
	f.fs.StringVar(&f.join, "join", "", "comma-separated gossip addresses of cluster members (cluster.join)")
	f.fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "members to wait for before forming the Raft cluster (cluster.bootstrapExpect, default 1)")
	f.fs.StringVar(&f.advertise, "advertise", "", "IP other nodes use to reach this one (node.advertise, default: --bind)")
	f.fs.StringVar(&f.gossip, "gossip", "", "timing preset: lan or local (cluster.gossip, default lan)")
}

// load reads the config file and applies the flags that were set.
// base is what the file's keys override (config.Default or config.Dev).
func (f *nodeFlags) load(base config.Config) (config.Config, error) {
	return f.loadWith(base, nil)
}

// loadWith is load with a hook that adjusts the file's config before the
// flags apply.
func (f *nodeFlags) loadWith(base config.Config, adjust func(*config.Config)) (config.Config, error) {
	cfg, err := config.LoadFrom(config.Path(f.config), base)
	if err != nil {
		return cfg, err
	}
	if adjust != nil {
		adjust(&cfg)
	}
	var flagErr error
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "gossip-key-file":
			b, err := os.ReadFile(f.gossipKeyFile)
			if err != nil {
				flagErr = fmt.Errorf("--gossip-key-file: %w", err)
			}
			cfg.Cluster.GossipKey = strings.TrimSpace(string(b))
		case "data-dir":
			cfg.Node.DataDir = f.dataDir
		case "http-port":
			cfg.Node.HTTPPort = f.httpPort
		case "node-id":
			cfg.Node.ID = f.nodeID
		case "bind":
			cfg.Node.Bind = f.bind
		case "grpc-port":
			cfg.Node.GRPCPort = f.grpcPort
		case "raft-port":
			cfg.Node.RaftPort = f.raftPort
		case "gossip-port":
			cfg.Node.GossipPort = f.gossipPort
		case "join":
			cfg.Cluster.Join = f.join
		case "bootstrap-expect":
			cfg.Cluster.BootstrapExpect = f.bootstrapExpect
		case "advertise":
			cfg.Node.Advertise = f.advertise
		case "gossip":
			cfg.Cluster.Gossip = f.gossip
		case "tls-ca":
			cfg.TLS.CA = f.tlsCA
		case "tls-cert":
			cfg.TLS.Cert = f.tlsCert
		case "tls-key":
			cfg.TLS.Key = f.tlsKey
		case "tls-verify":
			cfg.TLS.VerifyIncoming, cfg.TLS.VerifyOutgoing = f.tlsVerify, f.tlsVerify
		case "tokens-file":
			cfg.Auth.TokensFile = f.tokensFile
		case "tracing":
			cfg.Tracing.Enabled = f.tracing
		}
	})
	if flagErr != nil {
		return cfg, flagErr
	}
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
	cfg, err := f.load(config.Dev())
	if err != nil {
		fmt.Fprintf(stderr, "loom-node dev: invalid configuration:\n%v\n", err)
		return 1
	}
	return serve(cfg, stdout, stderr)
}

// serve runs a node until SIGINT or SIGTERM.
func serve(cfg config.Config, stdout, stderr io.Writer) int {
	return serveWith(node.Options{Config: cfg, Builtins: true}, stdout, stderr)
}

// serveWith is serve with more options.
func serveWith(opts node.Options, stdout, stderr io.Writer) int {
	tuneGC()
	cfg := opts.Config
	n, err := node.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	// Start can wait a long time (for a Raft leader, for bootstrapExpect
	// members): a signal shuts the node down, which ends the wait and
	// closes what Start opened.
	started := goErr(func() error { return n.Start(context.Background()) })
	err, sig := awaitOrSignal(started, sigs)
	if sig != nil {
		fmt.Fprintf(stderr, "loom-node: %v while starting: stopping\n", sig)
		if code := shutdown(n, cfg, sigs, stderr); code != 0 {
			return code
		}
		if err := <-started; err != nil {
			return 1 // stopped before it served
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loom-node: %v\n", err)
		return 1
	}
	// SIGHUP reads the TLS files (also polled) and the tokens file again.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = n.Reload() // logs the outcome
		}
	}()
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	switch cfg.Coordination.Backend {
	case config.CoordinationRaft:
		fmt.Fprintf(stdout, "loom-node %s serving %s://%s grpc %s gossip %s raft %s (journal %s, data dir %s)\n",
			cfg.Node.ID, scheme, n.HTTPAddr(), n.GRPCAddr(), n.GossipAddr(), n.RaftAddr(), cfg.Journal.Backend, cfg.Node.DataDir)
	case config.CoordinationRedis, config.CoordinationPostgres, config.CoordinationCosmos:
		fmt.Fprintf(stdout, "loom-node %s serving %s://%s grpc %s gossip %s (coordination and journal on %s, data dir %s)\n",
			cfg.Node.ID, scheme, n.HTTPAddr(), n.GRPCAddr(), n.GossipAddr(), cfg.Coordination.Backend, cfg.Node.DataDir)
	default:
		fmt.Fprintf(stdout, "loom-node %s serving %s://%s (journal %s, data dir %s)\n",
			cfg.Node.ID, scheme, n.HTTPAddr(), cfg.Journal.Backend, cfg.Node.DataDir)
	}

	sig = <-sigs
	fmt.Fprintf(stderr, "loom-node: %v: shutting down (again to exit now)\n", sig)
	return shutdown(n, cfg, sigs, stderr)
}

// shutdown stops n gracefully within the configured shutdown timeout, or
// at once on another signal.
func shutdown(n *node.Node, cfg config.Config, sigs <-chan os.Signal, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Node.ShutdownTimeout)
	defer cancel()
	err, sig := awaitOrSignal(goErr(func() error { return n.Shutdown(ctx) }), sigs)
	switch {
	case sig != nil:
		fmt.Fprintf(stderr, "loom-node: %v: exiting now\n", sig)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "loom-node: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// goErr runs f on a goroutine of its own; its error comes on the channel.
func goErr(f func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return done
}

// awaitOrSignal waits for done's error, or for a signal (sig non-nil).
func awaitOrSignal(done <-chan error, sigs <-chan os.Signal) (err error, sig os.Signal) {
	select {
	case err = <-done:
		return err, nil
	case sig = <-sigs:
		return nil, sig
	}
}

// cmdRun runs a cluster member: gossip membership, gRPC between nodes, and
// the Raft coordinator and journal, or those the file puts on Redis or
// PostgreSQL (coordination.backend redis or postgres; Raft coordination
// with journal.backend redis or postgres works too).
func cmdRun(args []string, stdout, stderr io.Writer) int {
	f := newNodeFlags("loom-node run", stderr)
	f.addClusterFlags()
	f.addTestFlags()
	if err := f.fs.Parse(args); err != nil {
		return 2
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loom-node run: unexpected argument %q\n", f.fs.Arg(0))
		return 2
	}
	cfg, err := f.loadWith(config.Default(), func(c *config.Config) {
		// run is always a cluster member: on the embedded Raft store
		// unless the file puts coordination on Redis, PostgreSQL or
		// Cosmos DB.
		if c.Coordination.Backend != config.CoordinationRedis && c.Coordination.Backend != config.CoordinationPostgres && c.Coordination.Backend != config.CoordinationCosmos {
			c.Coordination.Backend = config.CoordinationRaft
			if c.Journal.Backend != config.JournalRedis && c.Journal.Backend != config.JournalPostgres && c.Journal.Backend != config.JournalCosmos {
				c.Journal.Backend = config.JournalRaft
			}
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "loom-node run: invalid configuration:\n%v\n", err)
		return 1
	}
	opts := node.Options{Config: cfg, Builtins: true}
	closeTest, err := f.testOptions(cfg, &opts)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node run: %v\n", err)
		return 2
	}
	defer closeTest()
	return serveWith(opts, stdout, stderr)
}
