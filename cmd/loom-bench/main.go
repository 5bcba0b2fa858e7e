// Command loom-bench is Loom's load generator. Against a running cluster
// (for instance `loom-node cluster -n 3`) it measures, with the same number
// of concurrent callers:
//
//	remote-get   counter.get through the cluster client: a remote call that changes no state
//	durable-add  counter.add through the client: one durable State.Set through Raft per call
//	send         counter.add sent as a durable message through the client:
//	             answered once the message is committed (messages.go)
//	cold-add     counter.add over --cold-actors (100,000) actors, each call's
//	             picked at random (every one written once before the
//	             rounds): with more actors than the nodes' pools hold, most
//	             calls activate theirs (a replay) after evicting another
//	cold-get     counter.get the same way
//	remote-get-tls, durable-add-tls, send-tls
//	             only with --tls-addrs: the same against a second cluster,
//	             over mutual TLS (see below)
//	grpc-unary   baseline: a bare gRPC unary echo (generated code only, one
//	             connection) to a second process on loopback
//	grpc-stream  baseline: a bare gRPC bidirectional-stream echo, a stream per
//	             caller, one message per call
//	raft-apply   baseline: raw hashicorp/raft, three nodes in this process on
//	             loopback with raft-boltdb stores, one Apply per call
//	redis-xadd   baseline, only with --redis: raw go-redis XADDs of a
//	             100-byte record to the Redis server at --redis, a stream
//	             per caller, one command per call (redis.go)
//	pg-insert    baseline, only with --postgres: raw pgx conditional
//	             INSERTs of a 100-byte record into a table of the
//	             PostgreSQL server at --postgres, a stream per caller, one
//	             autocommitted statement per call (postgres.go)
//	cosmos-replace baseline, only with --cosmos: raw azcosmos replaces,
//	             If-Match on the last etag, of a 100-byte record in a
//	             document per caller on the Cosmos DB account at --cosmos,
//	             one request per call (cosmos.go)
//	rabbitmq-publish baseline, only with --rabbitmq: raw amqp091
//	             publishes of a 100-byte persistent message to a quorum
//	             queue of the broker at --rabbitmq, each waiting for its
//	             publisher confirm (rabbitmq.go); compare send with it on a
//	             cluster whose messaging.backend is rabbitmq
//
// and prints calls/s, p50, p99 and p999 for each, plus each figure's ratio to
// the baselines, so the numbers say what the machine can do. The cpu/call
// column is the CPU time a call cost, summed over every process it ran on:
// this one (the callers, and the baselines that run in it), the echo
// server, and the nodes at --http-addrs (their process_cpu_seconds_total,
// read before and after each measurement); a -tls twin's nodes are not
// read, so its column is empty. The gRPC
// baselines' echo server is this binary, re-executed as a child process.
// redis-xadd's server is one the user runs (give it appendonly yes and
// appendfsync always to compare durable writes with durable writes); its
// password is --redis-password, or else $REDIS_PASSWORD. Its streams, under
// loom-bench:xadd:<run>:, are deleted after every measurement.
// pg-insert's server is one the user runs too (with fsync and
// synchronous_commit on, the defaults); --postgres-user,
// --postgres-password and --postgres-database fall back to $PGUSER,
// $PGPASSWORD and $PGDATABASE, as with libpq. Its table is emptied after
// every measurement and dropped at the end. Each optional baseline's
// column of ratios is printed only when it ran. cosmos-replace's account
// is one the user runs (a real one, or the test server with
// --cosmos-insecure); its key is --cosmos-key, or else $COSMOS_KEY; its
// documents live in a database of the run's own, deleted at the end. With --callers 1 every scenario,
// baselines included, is measured serially.
//
// With --rounds N it measures every scenario N times, rotating the order
// from round to round (the writing scenarios, durable-add and send, come
// last, taking turns among themselves), and reports each
// scenario's median rate and the medians of the rounds' ratios: on a
// shared machine, whose load drifts over a run, a ratio of two
// measurements taken side by side is steadier than a ratio of two taken
// minutes apart.
//
// With --ca (and --cert and --key) the client connects to the nodes with
// TLS, as against `loom-node cluster --secure`; the baselines stay
// plaintext.
//
// With --tls-addrs, the gRPC addresses of a second cluster that serves
// TLS, what TLS costs is measured in the same run: --addrs is then dialed
// in plaintext, --ca, --cert and --key are the second cluster's, and each
// of remote-get, durable-add and send that runs also runs against the
// second cluster as its twin remote-get-tls, durable-add-tls or send-tls,
// in the same rounds (a twin takes its turn beside its plaintext
// scenario, readers among the readers and writers among the writers).
// The "x plain" column gives each twin's calls/s over its plaintext
// scenario's, the median of the rounds' ratios like every ratio: 0.90
// means TLS costs 10%. Start the clusters side by side, on other ports
// and data dirs:
//
//	loom-node cluster -n 3 --base-port 7420 --data-dir /tmp/loom-plain
//	loom-node cluster -n 3 --base-port 8420 --data-dir /tmp/loom-secure --secure
//	loom-bench --addrs 127.0.0.1:7520,127.0.0.1:7521,127.0.0.1:7522 \
//	    --tls-addrs 127.0.0.1:8520,127.0.0.1:8521,127.0.0.1:8522 \
//	    --ca /tmp/loom-secure/tls/loom-ca.pem --cert /tmp/loom-secure/tls/client-cli.pem \
//	    --key /tmp/loom-secure/tls/client-cli-key.pem --only remote-get,durable-add --rounds 3
//
// Usage:
//
//	loom-bench [--addrs 127.0.0.1:7520,...] [--tls-addrs 127.0.0.1:8520,...] [--ca FILE --cert FILE --key FILE] [--callers 64] [--duration 10s] [--rounds 1] [--actors 10000] [--cold-actors 100000] [--only a,b]
//	           [--deliver-duration 60s] [--http-addrs 127.0.0.1:7420,...] [--redis host:port [--redis-password p]]
//	           [--postgres host:port [--postgres-user u] [--postgres-password p] [--postgres-database d]]
//	           [--cosmos https://host:port/ [--cosmos-key k] [--cosmos-insecure]]
//	loom-bench --overload [--busy-callers 16] [--hot-callers 2000] [--hot-pause 10ms] [--http-addrs 127.0.0.1:7420,...] [--callers 16] [--duration 10s]
//
// After them, send-deliver (--deliver-duration, default 60 s) sends for
// that long while sampling the nodes' /metrics (--http-addrs), then waits
// for the backlog to drain: accepted and applied messages/s, the backlog
// over time, and p50/p99 of accept and of accept-to-applied latency.
//
// --overload runs the overload scenario instead (overload.go): one hot
// actor flooded far past its mailbox bound while other callers call other
// actors; it reports their latency with and without the flood, the hot
// actor's answers, and each node's mailbox depth and memory.
//
// Both read /metrics from --http-addrs, whose entries are host:port
// (plain HTTP) or URLs: https://host:port reads a node that serves HTTPS
// (`loom-node cluster --secure`), checked against --ca and shown --cert
// and --key, as the gRPC client does (nodehttp.go).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/transport/loompb"
	"google.golang.org/grpc"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "echo-server" {
		echoServer()
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type result struct {
	name     string
	calls    int64
	errors   int64
	elapsed  time.Duration
	lat      []time.Duration
	firstErr error
	cpu      float64 // CPU seconds per call, summed over every process (cpuMeter); -1: not measured
	disk     float64 // bytes the nodes wrote to storage per call (cpuMeter); -1: not measured
}

func (r result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// load runs call from callers goroutines for d and collects latencies.
func load(name string, callers int, d time.Duration, call func(g int, i int64) error) result {
	var stop atomic.Bool
	var calls, errs atomic.Int64
	lats := make([][]time.Duration, callers)
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); !stop.Load(); i++ {
				t0 := time.Now()
				if err := call(g, i); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err)
					continue
				}
				lats[g] = append(lats[g], time.Since(t0))
				calls.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	r := result{name: name, calls: calls.Load(), errors: errs.Load(), elapsed: time.Since(start)}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	if e, ok := first.Load().(error); ok {
		r.firstErr = e
	}
	return r
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addrs", "127.0.0.1:7520,127.0.0.1:7521,127.0.0.1:7522", "gRPC addresses of cluster nodes (loom-node cluster's defaults)")
	callers := fs.Int("callers", 64, "concurrent callers")
	dur := fs.Duration("duration", 10*time.Second, "duration of each measurement (of each scenario in each round)")
	rounds := fs.Int("rounds", 1, "rounds: every scenario is measured once per round, in an order that rotates, and the ratios are the medians of the rounds' ratios")
	actors := fs.Int("actors", 10000, "number of distinct actors")
	coldActors := fs.Int("cold-actors", 100000, "cold-add and cold-get: the number of distinct actors their calls are spread over")
	only := fs.String("only", "", "comma-separated subset of remote-get,durable-add,send,cold-add,cold-get,send-deliver,grpc-unary,grpc-stream,raft-apply,redis-xadd,pg-insert,cosmos-replace,rabbitmq-publish (with --tls-addrs, remote-get, durable-add and send bring their -tls twins)")
	redisAddr := fs.String("redis", "", "host:port of a Redis server: runs the redis-xadd baseline against it")
	redisPassword := fs.String("redis-password", "", "--redis: the server's password (default $"+redisPasswordEnv+")")
	pgAddr := fs.String("postgres", "", "host:port of a PostgreSQL server: runs the pg-insert baseline against it")
	pgUser := fs.String("postgres-user", "", "--postgres: the role to log in as (default $PGUSER, else the OS user)")
	pgPassword := fs.String("postgres-password", "", "--postgres: its password (default $PGPASSWORD)")
	pgDatabase := fs.String("postgres-database", "", "--postgres: the database to make the table in (default $PGDATABASE, else the user's name)")
	rabbitURL := fs.String("rabbitmq", "", "AMQP URL (amqp://user:password@host:port/vhost) of a RabbitMQ broker: runs the rabbitmq-publish baseline against it")
	cosmosEndpoint := fs.String("cosmos", "", "endpoint (https://host:port/) of a Cosmos DB account: runs the cosmos-replace baseline against it")
	cosmosKey := fs.String("cosmos-key", "", "--cosmos: the account key (default $COSMOS_KEY)")
	cosmosInsecure := fs.Bool("cosmos-insecure", false, "--cosmos: accept any certificate (the test server's self-signed one)")
	tlsAddrs := fs.String("tls-addrs", "", "gRPC addresses of a second cluster, serving TLS (loom-node cluster --secure): remote-get, durable-add and send also run against it, as remote-get-tls, durable-add-tls and send-tls, in the same rounds; --ca, --cert and --key are then its, and --addrs is dialed in plaintext")
	var tlsOpts client.TLSOptions
	fs.StringVar(&tlsOpts.CA, "ca", "", "the cluster's CA file: connect to the nodes (of --tls-addrs when given) with TLS (loom-node cluster --secure writes <data-dir>/tls/loom-ca.pem)")
	fs.StringVar(&tlsOpts.Cert, "cert", "", "--ca: a client certificate file, for nodes that verify incoming connections")
	fs.StringVar(&tlsOpts.Key, "key", "", "--ca: the client certificate's key file")
	token := fs.String("token", "", "--ca: the bearer token of nodes that require one (loom-node cluster --secure writes <data-dir>/tls/token; default $LOOM_TOKEN)")
	deliverDur := fs.Duration("deliver-duration", 60*time.Second, "send-deliver: how long to send before draining")
	var of overloadFlags
	overloadMode := fs.Bool("overload", false, "run the overload scenario instead: one hot actor flooded while --callers call others (see overload.go)")
	fs.StringVar(&of.httpAddrs, "http-addrs", "127.0.0.1:7420,127.0.0.1:7421,127.0.0.1:7422", "send-deliver and --overload: the nodes' HTTP addresses, for /metrics: host:port, or https://host:port for nodes serving HTTPS (checked against --ca, shown --cert)")
	fs.IntVar(&of.hotCallers, "hot-callers", 2000, "--overload: goroutines calling the hot actor in the flood phase")
	fs.IntVar(&of.busyCallers, "busy-callers", 16, "--overload: goroutines calling the hot actor in the busy phase")
	fs.DurationVar(&of.hotPause, "hot-pause", 10*time.Millisecond, "--overload: a hot caller's pause after an overloaded answer")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file (go tool pprof): what the clients cost, beside the nodes' /debug/pprof")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "loom-bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *token == "" && (tlsOpts.CA != "" || tlsOpts.Cert != "") {
		*token = os.Getenv("LOOM_TOKEN")
	}
	if *rounds < 1 || *callers < 1 || *dur <= 0 {
		fmt.Fprintf(stderr, "loom-bench: --rounds and --callers must be at least 1 and --duration positive\n")
		return 2
	}
	want := func(name string) bool { return *only == "" || strings.Contains(","+*only+",", ","+name+",") }
	if *redisAddr == "" && *only != "" && want("redis-xadd") {
		fmt.Fprintf(stderr, "loom-bench: redis-xadd needs --redis host:port\n")
		return 2
	}
	if *pgAddr == "" && *only != "" && want("pg-insert") {
		fmt.Fprintf(stderr, "loom-bench: pg-insert needs --postgres host:port\n")
		return 2
	}
	if *rabbitURL == "" && *only != "" && want("rabbitmq-publish") {
		fmt.Fprintf(stderr, "loom-bench: rabbitmq-publish needs --rabbitmq amqp://...\n")
		return 2
	}
	if *cosmosEndpoint == "" && *only != "" && want("cosmos-replace") {
		fmt.Fprintf(stderr, "loom-bench: cosmos-replace needs --cosmos https://host:port/\n")
		return 2
	}
	clusterWanted := want("remote-get") || want("durable-add") || want("send") || want("cold-add") || want("cold-get")
	if *tlsAddrs != "" {
		switch {
		case tlsOpts.CA == "" && tlsOpts.Cert == "":
			fmt.Fprintf(stderr, "loom-bench: --tls-addrs needs --ca (and --cert and --key when the nodes verify clients; loom-node cluster --secure writes them to <data-dir>/tls)\n")
			return 2
		case *overloadMode:
			fmt.Fprintf(stderr, "loom-bench: --tls-addrs does not apply to --overload (give the secure cluster as --addrs)\n")
			return 2
		case !clusterWanted:
			fmt.Fprintf(stderr, "loom-bench: --tls-addrs: none of remote-get, durable-add and send is to run (--only)\n")
			return 2
		}
	}
	httpAddrs := strings.Split(of.httpAddrs, ",")
	if err := checkHTTPAddrs(httpAddrs); err != nil {
		fmt.Fprintf(stderr, "loom-bench: %v\n", err)
		return 2
	}
	ctx := context.Background()
	if *overloadMode {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := client.Dial(dctx, strings.Split(*addrs, ","), client.Options{TLS: tlsOpts, Token: *token})
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: %v (is a cluster running? try: loom-node cluster -n 3)\n", err)
			return 1
		}
		defer cl.Close()
		nh, err := newNodeHTTP(tlsOpts, *token)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: %v\n", err)
			return 1
		}
		if err := overload(ctx, stdout, cl, nh, of, *callers, min(*actors, 1000), *dur); err != nil {
			fmt.Fprintf(stderr, "loom-bench: overload: %v\n", err)
			return 1
		}
		return 0
	}
	var scenarios []scenario
	cpuNH, err := newNodeHTTP(tlsOpts, *token)
	if err != nil {
		fmt.Fprintf(stderr, "loom-bench: %v\n", err)
		return 1
	}
	meter := &cpuMeter{nh: cpuNH, nodes: httpAddrs}

	if want("grpc-unary") || want("grpc-stream") {
		addr, pid, stop, err := startEcho()
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: echo server: %v\n", err)
			return 1
		}
		defer stop()
		meter.pids = append(meter.pids, pid)
		if want("grpc-unary") {
			conn, err := dialRaw(addr)
			if err != nil {
				fmt.Fprintf(stderr, "loom-bench: unary echo: %v\n", err)
				return 1
			}
			defer conn.Close()
			ac := loompb.NewActorsClient(conn)
			req := &loompb.InvokeRequest{ActorType: "echo", ActorId: "1", Method: "echo", Payload: []byte(`{"delta":1}`)}
			scenarios = append(scenarios, scenario{"grpc-unary", func(d time.Duration) (result, error) {
				return load("grpc-unary", *callers, d, func(int, int64) error {
					_, err := ac.Invoke(ctx, req)
					return err
				}), nil
			}})
		}
		if want("grpc-stream") {
			scenarios = append(scenarios, scenario{"grpc-stream", func(d time.Duration) (result, error) {
				return streamEcho(ctx, addr, *callers, d)
			}})
		}
	}
	if want("raft-apply") {
		rr, err := startRawRaft(3, 30*time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: raft baseline: %v\n", err)
			return 1
		}
		defer rr.close()
		scenarios = append(scenarios, scenario{"raft-apply", func(d time.Duration) (result, error) {
			return load("raft-apply", *callers, d, func(int, int64) error { return rr.apply() }), nil
		}})
	}
	if *redisAddr != "" && want("redis-xadd") {
		password := *redisPassword
		if password == "" {
			password = os.Getenv(redisPasswordEnv)
		}
		x, err := startRedisXAdd(ctx, *redisAddr, password, *callers)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: redis baseline: %v\n", err)
			return 1
		}
		defer x.close(ctx)
		scenarios = append(scenarios, scenario{"redis-xadd", func(d time.Duration) (result, error) {
			return x.measure(ctx, d)
		}})
	}
	if *pgAddr != "" && want("pg-insert") {
		x, err := startPGInsert(ctx, *pgAddr, *pgUser, *pgPassword, *pgDatabase, *callers)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: postgres baseline: %v\n", err)
			return 1
		}
		defer x.close(ctx)
		scenarios = append(scenarios, scenario{"pg-insert", func(d time.Duration) (result, error) {
			return x.measure(ctx, d)
		}})
	}
	if *cosmosEndpoint != "" && want("cosmos-replace") {
		key := *cosmosKey
		if key == "" {
			key = os.Getenv("COSMOS_KEY")
		}
		x, err := startCosmosReplace(ctx, *cosmosEndpoint, key, *cosmosInsecure, *callers)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: cosmos baseline: %v\n", err)
			return 1
		}
		defer x.close(ctx)
		scenarios = append(scenarios, scenario{"cosmos-replace", func(d time.Duration) (result, error) {
			return x.measure(ctx, d)
		}})
	}
	if *rabbitURL != "" && want("rabbitmq-publish") {
		x, err := startRabbitPublish(*rabbitURL, *callers)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: rabbitmq baseline: %v\n", err)
			return 1
		}
		defer x.close()
		scenarios = append(scenarios, scenario{"rabbitmq-publish", func(d time.Duration) (result, error) {
			return x.measure(ctx, d)
		}})
	}
	var sendDeliverRun func() error
	if clusterWanted || want("send-deliver") {
		// The actors' ids, made once: formatting one per call would cost
		// the generator CPU that the system it measures (and not the
		// baselines) pays for, on the same cores.
		ids := make([]string, *actors)
		for a := range ids {
			ids[a] = "b" + strconv.Itoa(a)
		}
		id := func(g int, i int64) string { return ids[(int64(g)*7919+i)%int64(*actors)] }
		// --addrs, and with --tls-addrs the secure twin, which --ca,
		// --cert and --key are then for.
		targets := []target{{addrs: *addrs, opts: client.Options{TLS: tlsOpts, Token: *token},
			hint: "is a cluster running? try: loom-node cluster -n 3"}}
		if *tlsAddrs != "" {
			targets[0].opts.TLS, targets[0].opts.Token = client.TLSOptions{}, ""
			targets = append(targets, target{suffix: tlsSuffix, addrs: *tlsAddrs, opts: client.Options{TLS: tlsOpts, Token: *token},
				hint: "is a secure cluster running? try: loom-node cluster -n 3 --secure --base-port 8420 --data-dir /tmp/loom-secure"})
		}
		for i := range targets {
			t := &targets[i]
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			cl, err := client.Dial(dctx, strings.Split(t.addrs, ","), t.opts)
			cancel()
			if err != nil {
				fmt.Fprintf(stderr, "loom-bench: %v (%s)\n", err, t.hint)
				return 1
			}
			defer cl.Close()
			t.cl = cl
			// Warm up: activate every actor once, so that no measurement
			// counts activations (each takes a lock through Raft), with an
			// add, so that every counter holds a value (as counters in use
			// do; a get then decodes it), whatever ran against the cluster
			// before. 64 at a time whatever --callers says: this is not
			// measured.
			if err := warmUp(64, *actors, func(a int) error {
				_, err := builtin.CounterAdd.Call(ctx, cl, id(0, int64(a)), builtin.CounterDelta{Delta: 1})
				return err
			}); err != nil {
				fmt.Fprintf(stderr, "loom-bench: activating the actors of %s: %v\n", t.addrs, err)
				return 1
			}
		}
		scenarios = append(scenarios, clusterScenarios(ctx, targets, want, *callers, id)...)
		if want("cold-add") || want("cold-get") {
			cold := make([]string, *coldActors)
			for a := range cold {
				cold[a] = "cold" + strconv.Itoa(a)
			}
			// Each is written once first, as actors in use have been:
			// what is measured is the steady state of a working set
			// larger than the pools, not the first call of new actors.
			cl := targets[0].cl
			if err := warmUp(64, len(cold), func(a int) error {
				_, err := builtin.CounterAdd.Call(ctx, cl, cold[a], builtin.CounterDelta{Delta: 1})
				return err
			}); err != nil {
				fmt.Fprintf(stderr, "loom-bench: writing the cold actors once: %v\n", err)
				return 1
			}
			scenarios = append(scenarios, coldScenarios(ctx, cl, want, *callers, cold)...)
		}
		if want("send-deliver") && *deliverDur > 0 {
			nh, err := newNodeHTTP(tlsOpts, *token)
			if err != nil {
				fmt.Fprintf(stderr, "loom-bench: %v\n", err)
				return 1
			}
			cl := targets[0].cl
			sendDeliverRun = func() error {
				return sendDeliver(ctx, stdout, cl, nh, httpAddrs, *callers, id, *deliverDur)
			}
		}
	}

	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.name
	}
	measured := make([][]result, *rounds) // [round][scenario]
	for r := range measured {
		measured[r] = make([]result, len(scenarios))
	}
	var cpuErr error // why CPU per call is not reported, once
	for _, st := range order(names, *rounds) {
		r, i := st[0], st[1]
		c0, err0 := meter.read()
		res, err := scenarios[i].measure(*dur)
		if err != nil {
			fmt.Fprintf(stderr, "loom-bench: %s: %v\n", scenarios[i].name, err)
			return 1
		}
		c1, err1 := meter.read()
		res.cpu, res.disk = -1, -1
		if err := errors.Join(err0, err1); err != nil {
			cpuErr = cmp.Or(cpuErr, err)
		} else if res.calls > 0 && !strings.HasSuffix(res.name, tlsSuffix) {
			res.cpu = (c1.cpu - c0.cpu) / float64(res.calls)
			if c0.disk >= 0 && c1.disk >= 0 {
				res.disk = (c1.disk - c0.disk) / float64(res.calls)
			}
		}
		measured[r][i] = res
	}
	if cpuErr != nil {
		fmt.Fprintf(stderr, "loom-bench: CPU per call not measured: %v\n", cpuErr)
	}
	sums := summarize(names, measured)
	report(stdout, sums, *callers, *dur, *rounds, *actors)
	reportRatio(stdout, names, measured, "send", "durable-add", "accepted messages per durable add")
	reportRatio(stdout, names, measured, "cold-add", "durable-add", "durable adds to cold actors per add to warm ones")
	reportRatio(stdout, names, measured, "cold-get", "remote-get", "gets of cold actors per get of warm ones")
	if sendDeliverRun != nil {
		if err := sendDeliverRun(); err != nil {
			fmt.Fprintf(stderr, "loom-bench: send-deliver: %v\n", err)
			return 1
		}
	}
	return 0
}

// reportRatio prints scenario a's calls/s over b's, the median of the
// rounds' ratios, when both ran.
func reportRatio(w io.Writer, names []string, measured [][]result, a, b, what string) {
	ai, bi := slices.Index(names, a), slices.Index(names, b)
	if ai < 0 || bi < 0 {
		return
	}
	var ratios []float64
	for _, round := range measured {
		if d := round[bi].rate(); d > 0 {
			ratios = append(ratios, round[ai].rate()/d)
		}
	}
	sort.Float64s(ratios)
	fmt.Fprintf(w, "%s / %s: %.2f (%s, median of %d rounds)\n", a, b, median(ratios), what, len(ratios))
}

// coldScenarios are cold-add and cold-get, those that want selects: calls
// to actors picked at random among ids.
func coldScenarios(ctx context.Context, cl *client.Client, want func(string) bool, callers int, ids []string) []scenario {
	pick := func(g int, i int64) string { return ids[coldPick(g, i, len(ids))] }
	var out []scenario
	if want("cold-add") {
		out = append(out, scenario{"cold-add", func(d time.Duration) (result, error) {
			return load("cold-add", callers, d, func(g int, i int64) error {
				_, err := builtin.CounterAdd.Call(ctx, cl, pick(g, i), builtin.CounterDelta{Delta: 1})
				return err
			}), nil
		}})
	}
	if want("cold-get") {
		out = append(out, scenario{"cold-get", func(d time.Duration) (result, error) {
			return load("cold-get", callers, d, func(g int, i int64) error {
				_, err := builtin.CounterGet.Call(ctx, cl, pick(g, i))
				return err
			}), nil
		}})
	}
	return out
}

// coldPick is the actor, of n, that caller g's call i goes to: spread
// evenly, and no two callers in step.
func coldPick(g int, i int64, n int) int {
	return int(mix(uint64(g)<<40^uint64(i)) % uint64(n))
}

// mix is splitmix64's finalizer: consecutive inputs, spread evenly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// tlsSuffix ends the names of the scenarios run against --tls-addrs: the
// twins of the plaintext ones, compared with them in the "x plain"
// column.
const tlsSuffix = "-tls"

// target is a cluster the cluster scenarios run against.
type target struct {
	suffix string // of its scenarios' names: "" or tlsSuffix
	addrs  string
	opts   client.Options
	hint   string // what to try when it cannot be dialed
	cl     *client.Client
}

// clusterScenarios are remote-get, durable-add and send, those that want
// selects, against every target: a scenario's twins side by side.
func clusterScenarios(ctx context.Context, targets []target, want func(string) bool, callers int, id func(g int, i int64) string) []scenario {
	kinds := []struct {
		name string
		call func(cl *client.Client, g int, i int64) error
	}{
		{"remote-get", func(cl *client.Client, g int, i int64) error {
			_, err := builtin.CounterGet.Call(ctx, cl, id(g, i))
			return err
		}},
		{"durable-add", func(cl *client.Client, g int, i int64) error {
			_, err := builtin.CounterAdd.Call(ctx, cl, id(g, i), builtin.CounterDelta{Delta: 1})
			return err
		}},
		{"send", func(cl *client.Client, g int, i int64) error { return sendOne(ctx, cl, id(g, i)) }},
	}
	var out []scenario
	for _, k := range kinds {
		if !want(k.name) {
			continue
		}
		for _, t := range targets {
			name, call, cl := k.name+t.suffix, k.call, t.cl
			out = append(out, scenario{name, func(d time.Duration) (result, error) {
				return load(name, callers, d, func(g int, i int64) error { return call(cl, g, i) }), nil
			}})
		}
	}
	return out
}

// order is the order of the measurements, as (round, index in names)
// pairs. The scenarios take turns, in an order that rotates from round
// to round (raft-apply writes too, but in this process, whose Raft is
// idle once its round ends; redis-xadd's Redis is idle too once its
// round's streams are deleted). The writing scenarios, durable-add and
// send and their -tls twins, come after all of theirs: their writes leave
// the nodes work to do (state machine flushes, Raft snapshots) that would
// slow whatever ran next. They take turns among themselves too, in an
// order that rotates from round to round: every write leaves the nodes'
// stores larger, so a scenario whose rounds all came after the other's
// would always run on the larger stores, which biases their ratio (and a
// twin's writes, on the other cluster, leave that work on the same
// cores).
func order(names []string, rounds int) [][2]int {
	var rotating, after []int
	for i, name := range names {
		switch strings.TrimSuffix(name, tlsSuffix) {
		case "durable-add", "send", "cold-add", "cold-get": // a cold call's activation writes too
			after = append(after, i)
		default:
			rotating = append(rotating, i)
		}
	}
	var out [][2]int
	for _, group := range [][]int{rotating, after} {
		for r := range rounds {
			for k := range group {
				out = append(out, [2]int{r, group[(k+r)%len(group)]})
			}
		}
	}
	return out
}

// warmUp calls call once for each of actors, from callers goroutines, and
// returns the first error.
func warmUp(callers, actors int, call func(a int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for a := int(next.Add(1)) - 1; a < actors; a = int(next.Add(1)) - 1 {
				if err := call(a); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// scenario is one measurement loom-bench can repeat.
type scenario struct {
	name    string
	measure func(d time.Duration) (result, error)
}

// summary is one scenario over every round: the median rate, the
// latencies of all rounds together, and its ratios to the baselines (the
// medians of the rounds' ratios, so that drift in the machine's load
// between rounds weighs on both sides of a ratio alike).
type summary struct {
	name     string
	rates    []float64 // one per round, sorted
	lat      []time.Duration
	errors   int64
	firstErr error
	ratio    map[string][]float64 // baseline name (or twinKey) -> the rounds' ratios, sorted
	cpu      []float64            // the rounds' CPU seconds per call, sorted (result.cpu)
	disk     []float64            // the rounds' bytes written per call, sorted (result.disk)
}

// twinKey is the key in summary.ratio of a -tls scenario's ratios to its
// plaintext twin, and the "x plain" column's.
const twinKey = "plaintext twin"

func (s summary) rate() float64 { return median(s.rates) }

func (s summary) q(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	return s.lat[min(len(s.lat)-1, int(float64(len(s.lat))*p))]
}

// baselines are the scenarios every other is compared with, each with the
// label of its ratio's column. An optional one's column is printed only
// when it ran.
var baselines = []baseline{
	{"grpc-unary", "unary", false},
	{"grpc-stream", "stream", false},
	{"raft-apply", "raft", false},
	{"redis-xadd", "redis", true},
	{"pg-insert", "postgres", true},
	{"cosmos-replace", "cosmos", true},
	{"rabbitmq-publish", "rabbitmq", true},
}

type baseline struct {
	name, label string
	optional    bool // runs only when asked for (redis-xadd: with --redis; pg-insert: with --postgres; cosmos-replace: with --cosmos; rabbitmq-publish: with --rabbitmq)
}

func isBaseline(name string) bool {
	return slices.ContainsFunc(baselines, func(b baseline) bool { return b.name == name })
}

// summarize folds measured[round][scenario] into one summary per scenario.
func summarize(names []string, measured [][]result) []summary {
	out := make([]summary, len(names))
	for i, name := range names {
		s := summary{name: name, ratio: map[string][]float64{}}
		for _, round := range measured {
			r := round[i]
			s.rates = append(s.rates, r.rate())
			s.lat = append(s.lat, r.lat...)
			s.errors += r.errors
			if r.cpu >= 0 {
				s.cpu = append(s.cpu, r.cpu)
			}
			if r.disk >= 0 {
				s.disk = append(s.disk, r.disk)
			}
			if s.firstErr == nil {
				s.firstErr = r.firstErr
			}
			for j, base := range names {
				if isBaseline(base) {
					if b := round[j].rate(); b > 0 {
						s.ratio[base] = append(s.ratio[base], r.rate()/b)
					}
				}
				if twin, ok := strings.CutSuffix(name, tlsSuffix); ok && base == twin {
					if b := round[j].rate(); b > 0 {
						s.ratio[twinKey] = append(s.ratio[twinKey], r.rate()/b)
					}
				}
			}
		}
		sort.Float64s(s.rates)
		sort.Float64s(s.cpu)
		sort.Float64s(s.disk)
		slices.Sort(s.lat)
		for _, v := range s.ratio {
			sort.Float64s(v)
		}
		out[i] = s
	}
	return out
}

// median of sorted values (the mean of the middle two for an even count).
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func report(w io.Writer, sums []summary, callers int, dur time.Duration, rounds, actors int) {
	if rounds == 1 {
		fmt.Fprintf(w, "loom-bench: %d callers, %v per measurement, %d actors\n", callers, dur, actors)
	} else {
		fmt.Fprintf(w, "loom-bench: %d callers, %d rounds of %v per scenario (order rotating), %d actors; calls/s and ratios are medians of the rounds\n", callers, rounds, dur, actors)
	}
	// The columns: every baseline's but an optional one that did not run,
	// and the -tls scenarios' ratios to their twins when they ran.
	var cols []baseline
	for _, b := range baselines {
		if !b.optional || slices.ContainsFunc(sums, func(s summary) bool { return s.name == b.name }) {
			cols = append(cols, b)
		}
	}
	if slices.ContainsFunc(sums, func(s summary) bool { return len(s.ratio[twinKey]) > 0 }) {
		cols = append(cols, baseline{name: twinKey, label: "plain"})
	}
	nw := 12 // the names' column
	for _, s := range sums {
		nw = max(nw, len(s.name))
	}
	withCPU := slices.ContainsFunc(sums, func(s summary) bool { return len(s.cpu) > 0 })
	withDisk := slices.ContainsFunc(sums, func(s summary) bool { return len(s.disk) > 0 })
	fmt.Fprintf(w, "%-*s %12s %10s %10s %10s %8s", nw, "scenario", "calls/s", "p50", "p99", "p999", "errors")
	if withCPU {
		fmt.Fprintf(w, " %10s", "cpu/call")
	}
	if withDisk {
		fmt.Fprintf(w, " %10s", "disk/call")
	}
	for _, b := range cols {
		fmt.Fprintf(w, " %10s", "x "+b.label)
	}
	fmt.Fprintln(w)
	for _, s := range sums {
		fmt.Fprintf(w, "%-*s %12.0f %10v %10v %10v %8d", nw, s.name, s.rate(),
			s.q(0.50).Round(time.Microsecond), s.q(0.99).Round(time.Microsecond), s.q(0.999).Round(time.Microsecond), s.errors)
		if withCPU {
			c := "-"
			if len(s.cpu) > 0 {
				c = fmt.Sprintf("%.0fµs", median(s.cpu)*1e6)
			}
			fmt.Fprintf(w, " %10s", c) // fmt pads to 10 runes
		}
		if withDisk {
			d := "-"
			if len(s.disk) > 0 {
				d = fmt.Sprintf("%.0fB", median(s.disk))
			}
			fmt.Fprintf(w, " %10s", d)
		}
		for _, b := range cols {
			ratio := "-"
			if v := s.ratio[b.name]; len(v) > 0 {
				ratio = fmt.Sprintf("%.2f", median(v))
			}
			fmt.Fprintf(w, " %10s", ratio)
		}
		fmt.Fprintln(w)
		if s.firstErr != nil {
			fmt.Fprintf(w, "  first error: %v\n", s.firstErr)
		}
	}
	if rounds == 1 {
		return
	}
	fmt.Fprintf(w, "ranges over the rounds:\n")
	for _, s := range sums {
		line := fmt.Sprintf("  %-*s calls/s %.0f-%.0f", nw, s.name, s.rates[0], s.rates[len(s.rates)-1])
		for _, b := range cols {
			if v := s.ratio[b.name]; len(v) > 0 && b.name != s.name {
				line += fmt.Sprintf(", x %s %.2f-%.2f", b.label, v[0], v[len(v)-1])
			}
		}
		fmt.Fprintln(w, line)
	}
}

// startEcho runs this binary as an echo server in a child process.
func startEcho() (addr string, pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(self, "echo-server")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	var line string
	if _, err := fmt.Fscanln(out, &line); err != nil {
		_ = cmd.Process.Kill()
		return "", 0, nil, fmt.Errorf("reading the echo server's address: %w", err)
	}
	return line, cmd.Process.Pid, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// bareEcho is the baselines' server: the generated gRPC code and nothing
// of Loom's (no batching, no error mapping, no tracing).
type bareEcho struct {
	loompb.UnimplementedActorsServer
}

func (bareEcho) Invoke(_ context.Context, req *loompb.InvokeRequest) (*loompb.InvokeResponse, error) {
	return &loompb.InvokeResponse{CallId: req.CallId, Payload: req.Payload}, nil
}

func (bareEcho) Stream(stream loompb.Actors_StreamServer) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return nil
		}
		out := &loompb.ResultBatch{Results: make([]*loompb.InvokeResponse, len(b.Calls))}
		for i, c := range b.Calls {
			out.Results[i] = &loompb.InvokeResponse{CallId: c.CallId, Payload: c.Payload}
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// echoServer serves the bare unary and stream echo on a free port, prints
// the address, and runs until killed.
func echoServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	srv := grpc.NewServer()
	loompb.RegisterActorsServer(srv, bareEcho{})
	_ = srv.Serve(ln)
}

// streamEcho: each caller has its own bidirectional stream and sends one
// message per call, waiting for the echo: the classic streaming baseline.
func streamEcho(ctx context.Context, addr string, callers int, d time.Duration) (result, error) {
	conn, err := dialRaw(addr)
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	streams := make([]loompb.Actors_StreamClient, callers)
	for g := range streams {
		s, err := loompb.NewActorsClient(conn).Stream(ctx)
		if err != nil {
			return result{}, err
		}
		streams[g] = s
	}
	req := &loompb.InvokeBatch{Calls: []*loompb.InvokeRequest{{ActorType: "echo", ActorId: "1", Method: "echo", Payload: []byte(`{"delta":1}`)}}}
	r := load("grpc-stream", callers, d, func(g int, i int64) error {
		if err := streams[g].Send(req); err != nil {
			return err
		}
		rb, err := streams[g].Recv()
		if err != nil {
			return err
		}
		if len(rb.Results) != 1 {
			return errors.New("bad echo")
		}
		return nil
	})
	for _, s := range streams {
		_ = s.CloseSend()
	}
	return r, nil
}
