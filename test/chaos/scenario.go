package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Scenario is one run: a cluster, a workload, a fault schedule, checks.
type Scenario struct {
	Name  string
	Nodes int
	Seed  int64
	// Faults run in this order (shuffled by the seed when Shuffle is set).
	Faults  []FaultKind
	Shuffle bool
	// RandomFor, when > 0, goes on drawing faults from AllFaults after
	// Faults until this long has passed since the first fault.
	RandomFor time.Duration
	// Warmup is the load before the first fault; Settle the range of the
	// pause after each fault's heal, before the next one.
	Warmup time.Duration
	Settle [2]time.Duration

	Workload WorkloadOptions
	// Messages is the messaging workload, beside Workload (messages.go).
	Messages MessageOptions
	Nemesis  NemesisOptions

	SessionTTL, RenewInterval time.Duration
	// MinQPS: successful ops per second before the first fault below which
	// the run fails.
	MinQPS float64
	// RecoveryBound: longest unavailability of a hot actor allowed per
	// fault (plus the fault's designed outage); 0 means Bounds.Recovery,
	// derived from the nodes' configuration.
	RecoveryBound time.Duration
	// ConvergeTimeout bounds the convergence phase's steps.
	ConvergeTimeout time.Duration
	// CheckTimeout bounds porcupine per actor.
	CheckTimeout time.Duration

	// SnapshotEvery is the nodes' journal.snapshotEvery: 0 (no snapshot)
	// lets the journal audit find every acknowledged write.
	SnapshotEvery int
	// DeadVoterTimeout is the nodes' cluster.deadVoterTimeout.
	DeadVoterTimeout time.Duration
	// Unsafe runs every node in a --debug-unsafe mode (TestChaosCheckersBite).
	Unsafe string
	// Kernel cuts the partitions with tc in the network namespace the run
	// is in, instead of with the chaos hook's rules (kernel.go): the run
	// must be inside the namespace that LOOM_CHAOS_NETNS names.
	Kernel bool
	// Pool is what RandomFor draws from; nil means AllFaults.
	Pool []FaultKind
	// Redis puts the nodes' coordination, journals and queues on the
	// redis-server Env.Redis (redis.go) instead of their Raft store.
	Redis bool
	// Postgres puts the nodes' journals and queues on the PostgreSQL
	// server Env.Postgres (postgres.go); coordination stays in their Raft
	// group.
	Postgres bool
	// RabbitMQ puts the durable messages sent from outside actors in the
	// broker Env.RabbitMQ (rabbitmq.go).
	RabbitMQ bool
	// Secure runs the nodes with every security feature on: mutual TLS
	// verified both ways, gossip encryption and bearer tokens
	// (ClusterOptions.Secure, security.go). TestChaos sets it; the
	// test flags -chaos.plain and -chaos.secure override it.
	Secure bool
	// RaftLogStore is the nodes' cluster.raftLogStore ("": the default,
	// auto, raft-wal in their new data dirs). TestChaosNodeFaults runs on
	// boltdb; -chaos.raftlog overrides it.
	RaftLogStore string
	// RaftGroups is the nodes' cluster.raftGroups (0: the default, one
	// group). TestChaos runs on three, so that killing the leader of
	// group 0 loses one group's leader while the others serve;
	// -chaos.groups overrides it.
	RaftGroups int
	// GroupMembers is the nodes' cluster.groupMembers ("": the default,
	// every node in every group); -chaos.members sets it.
	GroupMembers string
	// PoolMaxSize is each node's actorPools.default.maxSize (0: the
	// default, 10,000). Below the workload's actors per type, the pools
	// evict all the time: activations under kept locks, forwarding to
	// their holders and their release on rebalance meet every fault. The
	// convergence check then wants at most one activation per actor.
	PoolMaxSize int
}

// DefaultScenario is the first run `go test ./test/chaos` makes
// (TestChaos): three nodes, a warm-up, then kill -9 of a hot actor's owner
// and of the Raft leader, a SIGSTOP of a hot actor's owner for about twice
// the session TTL, and the network partitions (a minority cut off, the
// leader cut off, a deaf node, a bridge, a partition longer than
// GossipToTheDeadTime), in an order drawn from the seed, each healed and
// converged and followed by a pause to settle; then convergence and the
// checks. Its workload sends every op of unknown outcome again under the
// same idempotency key (RetryUnknown), and the journal audit checks that
// each took effect exactly once. About two and a half minutes.
func DefaultScenario(seed int64) Scenario {
	ttl := 3 * time.Second
	return Scenario{
		Name: "kill-pause-partition-3", Nodes: 3, Seed: seed,
		Faults: []FaultKind{KillOwner, KillLeader, PauseOwner,
			PartitionMinority, PartitionLeader, PartitionOneWay, PartitionBridge, PartitionLong},
		Shuffle: true,
		Warmup:  10 * time.Second,
		Settle:  [2]time.Duration{3 * time.Second, 4 * time.Second},
		Workload: WorkloadOptions{
			Workers: 6, Rate: 120, OpTimeout: 2 * time.Second,
			HotRegisters: 3, ColdRegisters: 16, HotCounters: 2, ColdCounters: 8, KVs: 4,
			HotFraction: 0.8, FanoutEvery: 250 * time.Millisecond, Seed: seed,
			RetryUnknown: true,
		},
		// Durable counter increments under the same faults; every 25th
		// fails on purpose and must end dead-lettered.
		Messages: MessageOptions{Senders: 2, Rate: 20, Counters: 6, FailEvery: 25, SendTimeout: 3 * time.Second},
		Nemesis: NemesisOptions{
			KillDown:     [2]time.Duration{2 * time.Second, 5 * time.Second},
			PauseFactor:  [2]float64{1.5, 2.5},
			SessionTTL:   ttl,
			ReadyTimeout: 45 * time.Second,
			Hold:         [2]time.Duration{4 * time.Second, 6 * time.Second},
			LongHold:     [2]time.Duration{18 * time.Second, 22 * time.Second},
			BurstEvery:   20 * time.Millisecond,
			BurstLead:    time.Second,
		},
		SessionTTL: ttl, RenewInterval: time.Second,
		MinQPS:          20,
		ConvergeTimeout: 60 * time.Second,
		CheckTimeout:    60 * time.Second,
		// A voter dead or gone for 10 s is removed (and added back when
		// it returns): a node that left (churn) leaves the Raft
		// configuration within a short run, and the long partition
		// exercises the removal.
		DeadVoterTimeout: 10 * time.Second,
	}
}

// Secured is s with every security feature on (Secure), its name marked
// "-secure".
func (s Scenario) Secured() Scenario {
	s.Secure = true
	s.Name += "-secure"
	return s
}

// NodeFaultsScenario is the second run of `go test ./test/chaos`
// (TestChaosNodeFaults): three nodes under the faults of one node's clock,
// disk and membership: a lease clock running slow or fast while cut
// off, slow fsync on the leader, no space left on one node's Raft log, a
// restart with the data dir wiped, a node joining and leaving under load,
// and a rolling restart. About two and a half minutes.
func NodeFaultsScenario(seed int64) Scenario {
	s := DefaultScenario(seed)
	s.Name = "clock-disk-membership-3"
	s.Faults = []FaultKind{ClockSkew, DiskSlow, DiskFull, RestartWiped, Churn, RollingRestart}
	// Ops of unknown outcome stay unknown here, so the checkers also see
	// histories with pending ops.
	s.Workload.RetryUnknown = false
	// Pools of 4 per type and node, for 19 registers and 10 counters.
	s.PoolMaxSize = 4
	return s
}

// CombinedScenario is one run of TestChaosCombined: three nodes, a short
// warm-up, then one combined fault (WipeLeaderLoss or PauseLeaderBurst),
// convergence and every check. About 35 s.
func CombinedScenario(seed int64, kind FaultKind) Scenario {
	s := DefaultScenario(seed)
	s.Name = string(kind) + "-3"
	s.Faults = []FaultKind{kind}
	s.Shuffle = false
	s.Warmup = 8 * time.Second
	s.Settle = [2]time.Duration{2 * time.Second, 3 * time.Second}
	s.Nemesis.KillDown = [2]time.Duration{3 * time.Second, 4 * time.Second}
	return s
}

// RedisScenario is TestChaosRedis: three nodes with coordination
// (sessions, locks, fencing tokens), journals and message queues all on one
// redis-server (appendonly yes, appendfsync always), under the default
// workload and every checker. The faults, in an order drawn from the seed:
// kill -9 of a hot actor's owner, SIGSTOP of a hot actor's owner past the
// session TTL, kill -9 of the redis-server and its restart on its
// append-only file, the redis-server slow to write (RedisSlow), and a
// minority cut off (gossip and gRPC: the nodes still reach Redis, so the
// cut-off node keeps its session and its locks, and the majority cannot
// take its actors). No Raft fault applies. About a minute and a half.
func RedisScenario(seed int64) Scenario {
	s := DefaultScenario(seed)
	s.Name = "redis-kill-pause-slow-3"
	s.Redis = true
	s.Faults = []FaultKind{KillOwner, PauseOwner, RedisKill, RedisSlow, PartitionMinority}
	s.Warmup = 8 * time.Second
	s.Settle = [2]time.Duration{2 * time.Second, 3 * time.Second}
	s.Nemesis.KillDown = [2]time.Duration{2 * time.Second, 4 * time.Second}
	s.Nemesis.Hold = [2]time.Duration{3 * time.Second, 5 * time.Second}
	s.Pool = RedisFaults
	return s
}

// MixedScenario runs the nodes on a mix of backends: locks and fencing
// tokens in their Raft group, journals in a PostgreSQL server, durable
// messages in a RabbitMQ broker; kill -9 of a hot actor's owner and of the
// Raft leader, a SIGSTOP of an owner past the session TTL, kill -9 and
// restart of the PostgreSQL server and of the broker, a minority cut off;
// then convergence and every checker. About a minute and a half.
func MixedScenario(seed int64) Scenario {
	s := DefaultScenario(seed)
	s.Name = "mixed-raft-postgres-rabbitmq-3"
	s.Postgres, s.RabbitMQ = true, true
	s.Faults = []FaultKind{KillOwner, KillLeader, PauseOwner, PostgresKill, RabbitMQKill, PartitionMinority}
	s.Warmup = 8 * time.Second
	s.Settle = [2]time.Duration{2 * time.Second, 3 * time.Second}
	s.Nemesis.KillDown = [2]time.Duration{2 * time.Second, 4 * time.Second}
	s.Nemesis.Hold = [2]time.Duration{3 * time.Second, 5 * time.Second}
	return s
}

// UnsafeScenario runs nodes in an --debug-unsafe mode under the faults
// that expose it (TestChaosCheckersBite): the checkers must catch it.
func UnsafeScenario(seed int64, mode string) Scenario {
	s := DefaultScenario(seed)
	s.Name = "unsafe-" + mode + "-3"
	s.Unsafe = mode
	s.Warmup = 8 * time.Second
	// The modes leave queues that never drain and actors that cannot
	// activate: the convergence steps would wait out their whole bound.
	// Safe runs converge in a few seconds; 15 s each is plenty here, and
	// a step that gives up only adds violations, never hides one.
	s.ConvergeTimeout = 15 * time.Second
	switch mode {
	case "ignore-lock":
		// Two rings, one node's and the others', both serve an actor:
		// long enough for gossip to declare the node dead (3-5 s) and
		// the rings to disagree for a while.
		s.Faults = []FaultKind{PartitionGossip}
		s.Nemesis.Hold = [2]time.Duration{10 * time.Second, 12 * time.Second}
	case "redis-skip-fence":
		// Owners stopped past the session TTL while their turns'
		// appends are on their way to Redis (the mode holds each one
		// for a while): the appends land after the new owners' under
		// the old token. Long enough for the new owner to write: gossip
		// declares the stopped node dead after about 4 s, its lock
		// lapses after the TTL (3 s). Four pauses, so that one owner
		// at least has an append in flight (with three, one run in
		// five or so had none).
		s.Redis = true
		s.Faults = []FaultKind{PauseOwner, PauseOwner, PauseOwner, PauseOwner}
		s.Nemesis.PauseFactor = [2]float64{2.5, 3}
		s.Settle = [2]time.Duration{2 * time.Second, 3 * time.Second}
	case "message-ack-first":
		// Nodes killed -9 while their message counters are between an
		// acknowledgement and its effect: at 10 messages a second per
		// counter, one almost always is.
		s.Messages.Rate = 60
		s.Faults = []FaultKind{KillRandom, KillLeader}
	default:
		// Acknowledged on a node cut off from the quorum, paused or
		// killed, and never written.
		s.Faults = []FaultKind{PartitionMinority, PauseOwner, KillOwner}
	}
	s.Shuffle = false
	return s
}

// KernelPartitions are the partitions a kernel run cuts with tc: every
// partition of the hook but the gossip-only one (tc tells nodes apart by
// address, not by protocol).
var KernelPartitions = []FaultKind{PartitionMinority, PartitionLeader, PartitionSplit,
	PartitionOneWay, PartitionBridge, PartitionLong}

// KernelScenario is TestChaosKernelPartitions: the partitions, cut by the
// kernel in a network namespace of the run's own (kernel.go). The default
// run is short (about a minute): the leader cut off, a deaf node, a bridge
// and a minority cut off, shorter holds. The long one (-chaos.long) runs
// every kernel partition once, the long partition past
// GossipToTheDeadTime included, then random ones for d on five nodes.
func KernelScenario(seed int64, long bool, d time.Duration) Scenario {
	s := DefaultScenario(seed)
	s.Name = "partitions-kernel-3"
	s.Kernel = true
	if long {
		s.Name = "partitions-kernel-5"
		s.Nodes = 5
		s.Faults = slices.Clone(KernelPartitions)
		s.RandomFor, s.Pool = d, KernelPartitions
		s.Workload.Workers = 10
		return s
	}
	s.Faults = []FaultKind{PartitionLeader, PartitionOneWay, PartitionBridge, PartitionMinority}
	s.Warmup = 8 * time.Second
	s.Settle = [2]time.Duration{2 * time.Second, 3 * time.Second}
	s.Nemesis.Hold = [2]time.Duration{3 * time.Second, 4 * time.Second}
	return s
}

// LongScenario is the soak: random faults from every kind for d on n nodes.
func LongScenario(seed int64, n int, d time.Duration) Scenario {
	s := DefaultScenario(seed)
	s.Name = fmt.Sprintf("soak-%d", n)
	s.Nodes = n
	s.Faults = nil
	s.RandomFor = d
	s.Workload.Workers = 2 * n
	s.Workload.HotRegisters, s.Workload.ColdRegisters = 4, 48
	s.Workload.HotCounters, s.Workload.ColdCounters = 2, 16
	s.Workload.KVs = 8
	s.CheckTimeout = 2 * time.Minute
	// Snapshots and truncation under faults too (the journal audit then
	// counts the acknowledged writes a snapshot hides as unverifiable).
	s.SnapshotEvery = 500
	return s
}

// Env is where a run keeps things.
type Env struct {
	Bin     string // the loom-node binary
	WorkDir string // the nodes' data dirs (the caller removes it)
	OutDir  string // artifacts: logs, timeline, history, report
	Logf    func(format string, args ...any)
	// Redis and RedisAddr: the redis-server of a Redis scenario.
	Redis     RedisServer
	RedisAddr string
	// Postgres and PostgresConn (a connection string the nodes use): the
	// PostgreSQL server of a mixed scenario.
	Postgres     PostgresServer
	PostgresConn string
	// RabbitMQ and RabbitMQURL: the broker of a mixed scenario.
	RabbitMQ    RabbitMQServer
	RabbitMQURL string
}

// Run runs the scenario and checks it. The report lists every violation;
// a harness failure (a cluster that does not start) is one too. Artifacts
// are written to env.OutDir.
func Run(ctx context.Context, s Scenario, env Env) *Report {
	logf := env.Logf
	rep := &Report{Scenario: s.Name, Seed: s.Seed, Nodes: s.Nodes, Backend: "raft", Commit: gitCommit(), Started: time.Now(),
		Faults: map[FaultKind]int{}, OutDir: env.OutDir}
	rec := NewRecorder(rep.Started)
	violate := func(checker, actor, format string, args ...any) {
		v := Violation{Checker: checker, Actor: actor, Detail: fmt.Sprintf(format, args...)}
		rep.Violations = append(rep.Violations, v)
		logf("chaos: VIOLATION %s", v)
	}
	logf("chaos: scenario %s: seed %d, %d nodes, output %s", s.Name, s.Seed, s.Nodes, env.OutDir)
	if s.Kernel {
		rep.Network = "kernel (tc in network namespace " + os.Getenv(envNetns) + ")"
		if err := checkInNetns(os.Getenv(envNetns)); err != nil {
			violate("harness", "", "%v", err)
			rep.finish(rec, nil, env)
			return rep
		}
	}

	co := ClusterOptions{
		Bin: env.Bin, Nodes: s.Nodes, DataDir: env.WorkDir, LogDir: filepath.Join(env.OutDir, "logs"),
		SessionTTL: s.SessionTTL, RenewInterval: s.RenewInterval, Clock: rec.Since,
		DeadVoterTimeout: s.DeadVoterTimeout, SnapshotEvery: s.SnapshotEvery, Unsafe: s.Unsafe, Seed: s.Seed,
		Secure: s.Secure, RaftLogStore: s.RaftLogStore, RaftGroups: s.RaftGroups, PoolMaxSize: s.PoolMaxSize,
		GroupMembers: s.GroupMembers,
	}
	if s.Redis {
		if env.Redis == nil || env.RedisAddr == "" {
			violate("harness", "", "a Redis scenario needs a redis-server (Env.Redis)")
			rep.finish(rec, nil, env)
			return rep
		}
		co.Redis, co.RedisPrefix = env.RedisAddr, fmt.Sprintf("chaos-%d:", s.Seed)
		rep.Backend = "redis"
	}
	if s.Postgres {
		if env.Postgres == nil || env.PostgresConn == "" {
			violate("harness", "", "a mixed scenario needs a PostgreSQL server (Env.Postgres)")
			rep.finish(rec, nil, env)
			return rep
		}
		co.Postgres, co.PostgresSchema = env.PostgresConn, fmt.Sprintf("chaos_%d", s.Seed)
		rep.Backend = "raft locks, postgres journals and queues"
	}
	if s.RabbitMQ {
		if env.RabbitMQ == nil || env.RabbitMQURL == "" {
			violate("harness", "", "a scenario with RabbitMQ needs a broker (Env.RabbitMQ)")
			rep.finish(rec, nil, env)
			return rep
		}
		co.RabbitMQ, co.RabbitMQPrefix = env.RabbitMQURL, fmt.Sprintf("chaos-%d", s.Seed)
		rep.Backend += ", rabbitmq messages"
	}
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	cl, err := StartCluster(startCtx, co)
	cancel()
	if err != nil {
		violate("harness", "", "starting the cluster: %v", err)
		rep.finish(rec, nil, env)
		return rep
	}
	defer cl.Stop()
	rep.Security = cl.Security()
	logf("chaos: +%6.2fs cluster of %d up; security: %s", rec.Since().Seconds(), s.Nodes, rep.Security)
	cfg, err := cl.Config()
	if err != nil {
		violate("harness", "", "%v", err)
	}
	rep.Bounds = DeriveBounds(cfg, s.Nodes, s.Workload.OpTimeout)
	recoveryBound := time.Duration(rep.Bounds.Recovery)
	if s.RecoveryBound > 0 {
		recoveryBound = s.RecoveryBound
	}
	logf("chaos: bounds from the nodes' configuration: %s", rep.Bounds)
	if s.Nemesis.FollowerLag == 0 {
		s.Nemesis.FollowerLag = time.Duration(rep.Bounds.FollowerLag)
	}

	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	w, err := NewWorkload(dctx, cl, rec, s.Workload)
	cancel()
	if err != nil {
		violate("harness", "", "%v", err)
		rep.finish(rec, nil, env)
		return rep
	}
	defer w.Close()
	msgr := NewMessenger(cl, s.Messages, s.Seed)
	nem := NewNemesis(cl, w, rec, s.Seed, s.Nemesis, logf)
	if s.Kernel {
		nem.kernel = &kernelNet{cluster: cl}
	}
	nem.redis, nem.redisAddr = env.Redis, env.RedisAddr
	nem.postgres = env.Postgres
	nem.rabbitmq = env.RabbitMQ

	// The load runs from now until every fault has healed and settled.
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		var wg sync.WaitGroup
		wg.Go(func() { msgr.Run(loadCtx) })
		w.Run(loadCtx)
		wg.Wait()
	}()
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	wait(s.Warmup)
	faults := append([]FaultKind(nil), s.Faults...)
	if s.Shuffle {
		nem.Rand().Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	}
	var firstFault time.Time
	for i := 0; ctx.Err() == nil; i++ {
		var kind FaultKind
		switch {
		case i < len(faults):
			kind = faults[i]
		case s.RandomFor > 0 && (firstFault.IsZero() || time.Since(firstFault) < s.RandomFor):
			pool := s.Pool
			if len(pool) == 0 {
				pool = AllFaults
			}
			kind = pool[nem.Rand().IntN(len(pool))]
		}
		if kind == "" {
			break
		}
		if firstFault.IsZero() {
			firstFault = time.Now()
		}
		ev := nem.Inject(ctx, kind)
		rep.Faults[kind]++
		if ev.Err != "" {
			violate("harness", "", "fault %s on %s: %s", kind, ev.Node, ev.Err)
		}
		wait(between(nem.Rand(), s.Settle))
	}
	stopLoad()
	<-loadDone
	loadEnd := rec.Now()
	nem.HealAll()
	logf("chaos: +%6.2fs load stopped; converging", rec.Since().Seconds())

	// Convergence: every node up and agreeing, a final write to every
	// actor, a final read of every actor, one activation each.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
	for _, n := range cl.Nodes {
		if err := n.WaitHealthy(cctx, cl.hc); err != nil {
			violate("convergence", "", "%v", err)
		}
	}
	took, err := cl.AwaitConverged(cctx)
	rep.ConvergedAfter = Dur(took)
	if err != nil {
		violate("convergence", "", "%v", err)
	}
	cancel()
	final := func(kind string, a Actor) bool {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
		defer cancel()
		for attempt := 0; ; attempt++ {
			op := Op{Actor: a.Key(), Kind: kind, Final: true, Client: int(w.nextClient.Add(1)) - 1}
			switch kind {
			case OpWrite:
				op.Value = w.nextValue.Add(1)
			case OpAdd:
				op.Value = 1
			case OpKVPut:
				op.Field, op.Value = KVKeys[0], w.nextValue.Add(1)
			}
			var via caller = embeddedCaller{w.clients[attempt%len(w.clients)]}
			if attempt%2 == 1 {
				via = gatewayCaller{hc: w.hc, node: cl.Nodes[attempt%len(cl.Nodes)], timeout: s.Workload.OpTimeout}
			}
			op = w.exec(fctx, via, op, fmt.Sprintf("chaos-final-%s-%s-%d", kind, a.Key(), attempt))
			if op.Outcome == OK {
				return true
			}
			select {
			case <-fctx.Done():
				violate("convergence", a.Key(), "final %s did not succeed within %v: %s", kind, s.ConvergeTimeout, op.Err)
				return false
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	want := map[string]int{}
	for _, a := range w.Actors {
		want[a.Type]++
		switch a.Type {
		case TypeRegister:
			final(OpWrite, a)
		case TypeCounter:
			final(OpAdd, a)
		case TypeKV:
			final(OpKVPut, a)
		}
	}
	for _, a := range w.Actors {
		switch a.Type {
		case TypeRegister:
			final(OpRead, a)
		case TypeCounter:
			final(OpGet, a)
		case TypeKV:
			final(OpKVList, a)
		}
	}
	// The messaging workload: every send accepted (the ones whose answer
	// was lost sent again under their id), the queues drained, then the
	// counters, their journals and the dead letters read (which
	// activates each counter once more).
	if s.Messages.Senders > 0 {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
		var st MessageState
		if err := msgr.Settle(mctx); err != nil {
			violate("messages", "", "resending the sends of unknown outcome: %v", err)
		}
		figures, err := msgr.AwaitDrained(mctx)
		st.Drained, st.Figures = err == nil, figures
		cancel()
		mctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
		collected, err := msgr.Collect(mctx)
		cancel()
		if err != nil {
			violate("messages", "", "reading the counters, journals and dead letters: %v", err)
		}
		collected.Drained, collected.Figures = st.Drained, st.Figures
		mrep, v := CheckMessages(msgr.Sent(), collected)
		rep.Messages = &mrep
		for _, x := range v {
			violate(x.Checker, x.Actor, "%s", x.Detail)
		}
		logf("chaos: +%6.2fs messages: %d sent, %d accepted (%d resent), %d failing on purpose, %d dead letters; %s",
			rec.Since().Seconds(), mrep.Sent, mrep.Accepted, mrep.Resent, mrep.FailOnPurpose, mrep.DeadLetters, figures)
		for _, a := range msgr.Actors() {
			want[a.Type]++
		}
	}
	// Every actor was just called, so each must be active on exactly one
	// node: more means a duplicate activation, fewer one lost. With pools
	// smaller than that, calls evict: no more than that, and no pool over
	// its size.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(20*time.Second, s.ConvergeTimeout))
	for {
		total, perNode, err := cl.ActiveActors(actx)
		ok := err == nil
		for typ, k := range want {
			if s.PoolMaxSize > 0 {
				ok = ok && total[typ] <= k && total[typ] > 0
				for _, counts := range perNode {
					ok = ok && counts[typ] <= s.PoolMaxSize
				}
				continue
			}
			ok = ok && total[typ] == k
		}
		if ok {
			break
		}
		if actx.Err() != nil {
			violate("convergence", "", "active actors per type %v (per node %v), want %v: %v", total, perNode, want, err)
			break
		}
		select {
		case <-actx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	cancel()
	// Every actor's journal as every node's replica has it, for the audit.
	dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
	dumps, err := cl.DumpAll(dctx, w.Actors)
	cancel()
	if err != nil {
		violate("journal", "", "dumping the journals: %v", err)
	}
	if s.Redis {
		// And as the redis-server holds them, read by the test itself:
		// the audit's reference (first), which every node's dump must
		// match.
		dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.ConvergeTimeout)
		rd, err := DumpRedis(dctx, co.Redis, co.RedisPrefix, w.Actors)
		cancel()
		if err != nil {
			violate("journal", "", "reading the journals from redis-server: %v", err)
		}
		for k, d := range rd {
			dumps[k] = append([]journalDump{d}, dumps[k]...)
		}
	}
	logf("chaos: +%6.2fs converged after %v; stopping the cluster and checking", rec.Since().Seconds(), took.Round(time.Millisecond))
	cl.Stop()
	stopped := time.Now()

	// The checks.
	ops := rec.Ops()
	rep.Timeline = nem.Timeline
	var first int64 = loadEnd
	if len(nem.Timeline) > 0 {
		first = nem.Timeline[0].Start
	}
	var hot []string
	for _, a := range w.HotActors() {
		hot = append(hot, a.Key())
	}
	load, v := CheckLoad(ops, hot, first, s.MinQPS)
	rep.Load = load
	rep.Violations = append(rep.Violations, v...)
	rep.Unavailability = MeasureUnavailability(ops, nem.Timeline, hot, loadEnd)
	rep.Violations = append(rep.Violations, CheckRecovery(rep.Unavailability, nem.Timeline, recoveryBound)...)
	rep.Partitions = MeasurePartitions(ops, nem.Timeline)
	rep.LeaderPauses = MeasureLeaderPause(ops, nem.Timeline, time.Duration(rep.Bounds.LeaderPause))
	rep.Violations = append(rep.Violations, CheckLeaderPause(rep.LeaderPauses)...)
	rep.Counters, v = CheckCounters(ops)
	rep.Violations = append(rep.Violations, v...)
	rep.LinearDetails, v = CheckLinearizable(ops, nem.Timeline, s.CheckTimeout, env.OutDir)
	rep.Violations = append(rep.Violations, v...)
	rep.Journal, v = AuditJournals(ops, dumps)
	rep.Violations = append(rep.Violations, v...)
	var events []activationEvent
	deaths := map[string][]time.Time{}
	for _, n := range cl.All() {
		ev, err := ReadActivationLog(n.EventsPath)
		if err != nil {
			violate("single-activation", "", "reading %s: %v", n.EventsPath, err)
		}
		events = append(events, ev...)
		deaths[n.ID] = n.Deaths()
	}
	rep.Activation, v = CheckActivations(events, deaths, stopped)
	rep.Violations = append(rep.Violations, v...)
	rep.finish(rec, ops, env)
	return rep
}

func between(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

// finish fills the summaries and writes the artifacts.
func (r *Report) finish(rec *Recorder, ops []Op, env Env) {
	r.Duration = Dur(rec.Since())
	var first int64
	if len(r.Timeline) > 0 {
		first = r.Timeline[0].Start
	}
	r.countOps(ops, first)
	r.UnavailabilityByKind = map[FaultKind]Dur{}
	for _, u := range r.Unavailability {
		if Dur(u.Longest) > r.UnavailabilityByKind[u.Kind] {
			r.UnavailabilityByKind[u.Kind] = Dur(u.Longest)
		}
		r.LongestUnavailability = max(r.LongestUnavailability, Dur(u.Longest))
	}
	r.Linearizability = map[porcupine.CheckResult]int{}
	for _, l := range r.LinearDetails {
		r.Linearizability[l.Result]++
	}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	if env.OutDir == "" {
		return
	}
	if err := WriteJSONL(filepath.Join(env.OutDir, "history.jsonl"), ops); err != nil {
		env.Logf("chaos: writing the history: %v", err)
	}
	for name, v := range map[string]any{"timeline.json": r.Timeline, "report.json": r} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err == nil {
			err = writeFile(env.OutDir, name, append(b, '\n'))
		}
		if err != nil {
			env.Logf("chaos: writing %s: %v", name, err)
		}
	}
	var tb bytes.Buffer
	WriteTable(&tb, r)
	_ = writeFile(env.OutDir, "report.txt", tb.Bytes())
}
