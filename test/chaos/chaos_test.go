package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/internal/rabbitmqtest"
	"github.com/loom-mesh/loom/internal/redistest"
)

var (
	seedFlag    = flag.Int64("chaos.seed", 0, "seed of every random choice (0: drawn from the clock and printed)")
	longFlag    = flag.Bool("chaos.long", false, "also run the soak (or set LOOM_CHAOS_LONG=1, or to a duration such as 45m)")
	longDur     = flag.Duration("chaos.duration", 30*time.Minute, "how long the soak injects faults, split between its 3- and 5-node runs")
	outFlag     = flag.String("chaos.out", "", "keep every run's artifacts under this directory (default: a temporary one, kept only when the run fails)")
	raceFlag    = flag.Bool("chaos.race", false, "build loom-node with the race detector")
	plainFlag   = flag.Bool("chaos.plain", false, "run every scenario in plaintext, TestChaos's too (it runs with TLS, gossip encryption and tokens by default)")
	secureFlag  = flag.Bool("chaos.secure", false, "run every scenario with TLS, gossip encryption and tokens, not only TestChaos's")
	raftLogFlag = flag.String("chaos.raftlog", "", "every scenario's Raft log store, boltdb or wal (default: boltdb for TestChaosNodeFaults, wal for the others)")
	groupsFlag  = flag.Int("chaos.groups", 0, "every scenario's Raft groups, cluster.raftGroups (default: 3 for TestChaos, 1 for the others)")
	membersFlag = flag.String("chaos.members", "", "every scenario's cluster.groupMembers, all or voters (default: all)")
)

var binPath string

// TestMain builds loom-node once for every scenario of the run.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || flag.Lookup("test.list").Value.String() != "" { // -list runs no test: no binary needed
		os.Exit(m.Run())
	}
	if bin := os.Getenv(envBin); bin != "" {
		// The run inside a network namespace (TestChaosKernelPartitions):
		// the outer run built the binary.
		binPath = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "loom-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binPath, err = Build(ctx, dir, *raceFlag)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func seed() int64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	return time.Now().UnixNano() % 1_000_000_000_000
}

// outDir picks where a scenario's artifacts go: under -chaos.out when set
// (kept), in the test's artifact dir when go test runs with -artifacts
// (kept), else in a temporary dir that is removed when the run passes.
// The nodes' data dirs live under it in data/, removed on a pass.
func outDir(t *testing.T, name string, seed int64) string {
	t.Helper()
	var dir string
	keep := true
	switch {
	case *outFlag != "":
		dir = filepath.Join(*outFlag, fmt.Sprintf("%s-%d", name, seed))
	case flag.Lookup("test.artifacts") != nil && flag.Lookup("test.artifacts").Value.String() == "true":
		dir = t.ArtifactDir()
	default:
		d, err := os.MkdirTemp("", "loom-chaos-"+name+"-")
		if err != nil {
			t.Fatal(err)
		}
		dir, keep = d, false
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos: artifacts (node logs, timeline.json, history.jsonl, report.json, data dirs) kept in %s", dir)
			return
		}
		_ = os.RemoveAll(filepath.Join(dir, "data"))
		if !keep {
			_ = os.RemoveAll(dir)
		}
	})
	return dir
}

// runScenario runs s and fails t on any violation.
func runScenario(t *testing.T, s Scenario, budget time.Duration) *Report {
	t.Helper()
	rep := run(t, s, budget)
	for _, v := range rep.Violations {
		t.Errorf("chaos: %s", v)
	}
	return rep
}

// withSecurity applies -chaos.plain and -chaos.secure to s; a secure
// scenario's name ends in -secure.
func withSecurity(t *testing.T, s Scenario) Scenario {
	t.Helper()
	switch {
	case *plainFlag && *secureFlag:
		t.Fatal("chaos: -chaos.plain and -chaos.secure exclude each other")
	case *plainFlag:
		s.Secure = false
	case *secureFlag:
		s.Secure = true
	}
	if s.Secure {
		s = s.Secured()
	}
	return s
}

// run runs s and logs its report.
func run(t *testing.T, s Scenario, budget time.Duration) *Report {
	t.Helper()
	s = withSecurity(t, s)
	if *raftLogFlag != "" {
		s.RaftLogStore = *raftLogFlag
	}
	if *groupsFlag != 0 {
		s.RaftGroups = *groupsFlag
	}
	if *membersFlag != "" {
		s.GroupMembers = *membersFlag
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}
	out := outDir(t, s.Name, s.Seed)
	t.Logf("chaos: seed %d (replay with -chaos.seed %d)", s.Seed, s.Seed)
	env := Env{Bin: binPath, WorkDir: filepath.Join(out, "data"), OutDir: out, Logf: t.Logf}
	if s.Redis {
		// A throwaway durable server (appendfsync always) of the test's
		// own; the test fails if it cannot start.
		srv := redistest.Start(t, redistest.Options{})
		env.Redis, env.RedisAddr = srv, srv.Addr
		t.Logf("chaos: redis-server on %s (data dir %s)", srv.Addr, srv.Dir)
	}
	if s.Postgres {
		// A throwaway durable server of the test's own; the test fails
		// if it cannot start.
		srv := pgtest.Start(t, pgtest.Options{})
		env.Postgres, env.PostgresConn = srv, srv.ConnString("postgres")
		t.Logf("chaos: PostgreSQL on %s (data dir %s)", srv.Addr(), srv.Dir)
	}
	if s.RabbitMQ {
		// A throwaway broker of the test's own; the test fails if it
		// cannot start.
		srv := rabbitmqtest.Start(t)
		env.RabbitMQ, env.RabbitMQURL = srv, srv.URL()
		t.Logf("chaos: RabbitMQ on %s", srv.Addr())
	}
	rep := Run(ctx, s, env)
	var tb bytes.Buffer
	WriteTable(&tb, rep)
	t.Logf("chaos: report (%s/report.json):\n%s", out, tb.String())
	byKind := map[FaultKind]string{}
	for k, d := range rep.UnavailabilityByKind {
		byKind[k] = time.Duration(d).String()
	}
	t.Logf("chaos: checks: linearizability %v over %d actors; %d counters checked; %.0f ok ops/s before the first fault (min %.0f); phases %v; converged after %v; longest unavailability by fault %v",
		rep.Linearizability, len(rep.LinearDetails), len(rep.Counters), rep.Load.QPS, s.MinQPS, rep.Phases,
		time.Duration(rep.ConvergedAfter), byKind)
	a, j := rep.Activation, rep.Journal
	t.Logf("chaos: journal audit: %d actors, %d entries, %d of %d acknowledged writes found (%d behind a snapshot), %d locks held at the end; activation logs: %d events, %d activations, %d writes, %d fenced; double activation (M1): %d windows, %v in all, longest %v (%s)",
		j.Actors, j.Entries, j.Found, j.Acked, j.Unverifiable, j.Locks, a.Events, a.Activations, a.Writes, a.Fenced,
		a.Overlaps, time.Duration(a.OverlapTotal), time.Duration(a.OverlapLongest), a.LongestActor)
	return rep
}

// TestChaos is the default scenario: three nodes under load, kill -9 of a
// hot actor's owner and of the Raft leader, SIGSTOP of an owner past the
// session TTL, network partitions of every shape, then convergence and
// every checker. The nodes split the actors over three Raft groups, whose
// leaders spread over them, so the kill of the (group 0) Raft leader
// loses one group's leader while the others keep serving. It runs with
// every security feature on (mutual TLS verified both ways, gossip
// encryption, bearer tokens; -chaos.plain turns them off), the other
// scenarios in plaintext (-chaos.secure turns them on): each path is
// covered without a second run of this one.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes and runs for about two and a half minutes")
	}
	s := DefaultScenario(seed())
	s.Secure = true
	s.RaftGroups = 3
	runScenario(t, s, 5*time.Minute)
}

// TestChaosRedis runs the cluster on Redis: coordination, journals and
// queues on one redis-server; kill -9 and SIGSTOP of hot actors' owners,
// kill -9 and restart of the redis-server, the server slow to write, a
// minority cut off; then convergence and every checker, the journal audit
// reading the journals from the server itself as well as from every node.
func TestChaosRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-server and a cluster of real processes; about a minute and a half")
	}
	runScenario(t, RedisScenario(seed()), 4*time.Minute)
}

// TestChaosMixed runs the cluster on a mix of backends: Raft locks,
// PostgreSQL journals, RabbitMQ messages; kill -9 and SIGSTOP of nodes,
// kill -9 of the Raft leader, kill -9 and restart of the PostgreSQL server
// and of the broker, a minority cut off; then convergence and every
// checker.
func TestChaosMixed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server, a RabbitMQ broker and a cluster of real processes; about two minutes")
	}
	runScenario(t, MixedScenario(seed()), 4*time.Minute)
}

// TestChaosNodeFaults: a node's clock, disk and membership faults, with
// the Raft logs in raft-boltdb (the others run on the default, raft-wal).
func TestChaosNodeFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes and runs for about two and a half minutes")
	}
	s := NodeFaultsScenario(seed())
	s.RaftLogStore = config.RaftLogBolt
	runScenario(t, s, 5*time.Minute)
}

// TestChaosCombined runs the combined faults, each on a cluster of its
// own: a wipe of one voter followed by the loss of the leader while a
// follower lags (WipeLeaderLoss: no acknowledged write may be lost, no
// token go back), and a leader SIGSTOP during a burst of forwarded writes
// (PauseLeaderBurst: every follower commits again within election timeout
// + 1 s). About 35 s each.
func TestChaosCombined(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters of real processes; about 35 s each")
	}
	for _, kind := range []FaultKind{WipeLeaderLoss, PauseLeaderBurst} {
		t.Run(string(kind), func(t *testing.T) {
			runScenario(t, CombinedScenario(seed(), kind), 3*time.Minute)
		})
	}
}

// TestChaosCheckersBite is the proof that the checkers can fail: nodes in
// an unsafe debug mode, under the faults that expose it, must be caught,
// each by the checkers meant for its kind of violation. The test passes
// only when they report the violation.
func TestChaosCheckersBite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters of real processes in unsafe modes")
	}
	for _, c := range []struct {
		mode string
		// every one of these checkers must report a violation
		want []string
	}{
		// Acknowledged, then lost: not in the journal, and the history
		// reads values go back (register or counter).
		{"ack-before-durable", []string{"journal", "linearizability|counter"}},
		// Two nodes serve one actor under one token.
		{"ignore-lock", []string{"single-activation"}},
		// A message acknowledged, then its effect lost in a crash: a
		// counter short of its accepted increments.
		{"message-ack-first", []string{"messages"}},
		// On Redis: the append script takes a zombie owner's append
		// under its old token after the new owner's (and puts it at the
		// log's end): tokens go back in the journal and in the nodes'
		// logs of accepted writes.
		{"redis-skip-fence", []string{"journal", "single-activation"}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			rep := run(t, UnsafeScenario(seed(), c.mode), 3*time.Minute)
			caught := map[string]int{}
			for _, v := range rep.Violations {
				caught[v.Checker]++
			}
			t.Logf("chaos: unsafe mode %s: violations by checker %v", c.mode, caught)
			for _, w := range c.want {
				n := 0
				for alt := range strings.SplitSeq(w, "|") {
					n += caught[alt]
				}
				if n == 0 {
					t.Errorf("unsafe mode %s went unnoticed by %s (violations: %v)", c.mode, w, rep.Violations)
				}
			}
			if caught["harness"] > 0 {
				t.Errorf("the harness failed, so the run proves nothing: %v", rep.Violations)
			}
		})
	}
}

// TestChaosLong is the soak: random faults of every kind on three nodes,
// then on five, for -chaos.duration in all. Only with -chaos.long or
// LOOM_CHAOS_LONG.
func TestChaosLong(t *testing.T) {
	long, d := soak()
	if !long || testing.Short() {
		t.Skip("the soak runs only with -chaos.long or LOOM_CHAOS_LONG")
	}
	s := seed()
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			runScenario(t, LongScenario(s, n, d/2), d/2+15*time.Minute)
		})
	}
}

// soak reports whether this is a long run (-chaos.long, or LOOM_CHAOS_LONG
// set, to a duration or anything else) and its duration.
func soak() (bool, time.Duration) {
	d := *longDur
	if env := os.Getenv("LOOM_CHAOS_LONG"); env != "" {
		if pd, err := time.ParseDuration(env); err == nil {
			d = pd
		}
		return true, d
	}
	return *longFlag, d
}

// TestChaosKernelPartitions runs the partitions again, cut by the kernel:
// where the suite runs as root with iproute2 (ip and tc), it makes a
// network namespace of its own, runs this test binary inside it (the nodes
// and the workload's clients then share only that namespace's loopback),
// and there the nemesis drops packets between nodes with tc filters on lo
// instead of the chaos hook's rules (kernel.go). The namespace is deleted
// at the end, and namespaces that killed runs left behind are swept first.
// Short by default (about a minute); with -chaos.long, every partition on
// five nodes for a sixth of -chaos.duration. Skipped, saying why, without
// root, ip or tc, or where a namespace cannot be made.
func TestChaosKernelPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes in a network namespace")
	}
	long, d := soak()
	if ns := os.Getenv(envNetns); ns != "" {
		// The inner run, inside the namespace.
		budget := 3 * time.Minute
		if long {
			budget = d/6 + 10*time.Minute
		}
		runScenario(t, KernelScenario(seed(), long, d/6), budget)
		return
	}
	if why := kernelUnavailable(); why != "" {
		t.Skip(why)
	}
	sweepNetns(t.Logf)
	sd := seed()
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-15*time.Second))
		defer cancel()
	}
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ns, err := createNetns(nctx, sd)
	cancel()
	if err != nil {
		t.Skipf("kernel partitions need a network namespace with tc (clsact, u32, mirred, ifb): %v", err)
	}
	t.Cleanup(func() {
		if err := deleteNetns(ns); err != nil {
			t.Errorf("chaos: %v", err)
		}
	})
	args := []string{"netns", "exec", ns, os.Args[0],
		"-test.run", "^TestChaosKernelPartitions$", "-test.v", "-test.count", "1",
		"-chaos.seed", strconv.FormatInt(sd, 10)}
	if dl, ok := ctx.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(dl).Round(time.Second).String())
	}
	if *outFlag != "" {
		args = append(args, "-chaos.out", *outFlag)
	}
	if long {
		args = append(args, "-chaos.long", "-chaos.duration", d.String())
	}
	if *secureFlag {
		args = append(args, "-chaos.secure")
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), envNetns+"="+ns, envBin+"="+binPath)
	lw := &lineLogger{logf: t.Logf}
	cmd.Stdout, cmd.Stderr = lw, lw
	// The run inside dies with this one (its nodes die with it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Logf("chaos: running the scenario in network namespace %s: ip %s", ns, strings.Join(args, " "))
	err = cmd.Run()
	lw.flush()
	if err != nil {
		t.Fatalf("chaos: the kernel-partition run in %s failed: %v (its output is above)", ns, err)
	}
}

// lineLogger passes a process's output to a test's log, line by line.
type lineLogger struct {
	logf func(string, ...any)
	mu   sync.Mutex
	buf  []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.logf("netns| %s", l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.logf("netns| %s", l.buf)
		l.buf = nil
	}
}
