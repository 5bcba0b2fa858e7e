package raftlock

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// Config configures a Store. Start from DefaultConfig (LAN timings) or
// FastConfig (tests and a one-machine dev cluster), then set NodeID,
// DataDir and BindAddr (or Transport), and Forwarder for a cluster of more
// than one node. Open calls Validate and never fills in anything itself.
//
// One setting changes what the state machine computes,
// MessageIDRetention: every node of a cluster must have the same (the
// dedup window and retention and the format are constants of the
// package). The others need not agree across nodes; timings should, as in
// any Raft cluster.
type Config struct {
	// NodeID is this server's Raft id: unique in the cluster and stable
	// across restarts (the data dir belongs to it). Required.
	NodeID raft.ServerID

	// PerDirServerID, when set, makes NodeID the node's name rather than
	// its Raft id: the server id is made when the data dir gets its Raft
	// state, NodeID + "@" + 16 random hex digits, and kept in
	// DataDir/raft/server-id (NodeOf maps it back). A node restarted with
	// its data dir keeps its id; one restarted with an empty (wiped,
	// replaced) data dir is a new server that must be added to the cluster
	// and that never votes as the server it replaces, whose votes and log
	// it lost. A data dir that has Raft state but no id file (written
	// before per-dir ids) keeps NodeID. LocalID reports the id in use.
	PerDirServerID bool

	// VoteGate, if not nil, decides whether this server may vote while it
	// is not in its own latest Raft configuration: a server with an empty
	// log that has not been added to a cluster yet. Return true only while
	// a new cluster is being bootstrapped with this server in it; a server
	// joining an existing cluster, or replacing one whose data dir was
	// lost, must not vote before a leader has added it (hashicorp/raft
	// counts a vote for the server it asked, by address, so a wiped server
	// would vote as its predecessor with none of its log). nil leaves
	// hashicorp/raft's behaviour: such a server votes. The transport must
	// support pre-vote and Close (raft's TCP and in-memory transports do).
	// Called from the transport's goroutine; must not block.
	VoteGate func() bool

	// Group is the group this Store is a member of, among a node's
	// Groups (0 for a Store opened alone). Group g > 0 keeps its state
	// under DataDir/raft/g<g> instead of DataDir/raft, and names itself
	// "raftlock/g<g>" in its logs and errors.
	Group int

	// DataDir is where the node keeps its Raft state, under
	// DataDir/raft: wal/ (log and stable store; raft.db with
	// LogStoreBolt), snapshots/ and fsm.db (the state machine, rebuilt on
	// every start). Required.
	DataDir string

	// LogStore is the Raft log and stable store: LogStoreBolt
	// (raft-boltdb/v2: a B+tree transaction per batch) or LogStoreWAL
	// (hashicorp/raft-wal: append-only segments, one write and fsync per
	// batch). LogStoreAuto ("", the default) opens what the data dir
	// holds, and raft-wal in a new one. A data dir keeps the store it was
	// made with; opening it with the other fails.
	LogStore string

	// WALSegmentSize is, with LogStoreWAL, the size at which a new
	// segment file starts; entries before a snapshot are deleted a whole
	// segment at a time. 0: raft-wal's default, 64 MiB.
	WALSegmentSize int

	// BindAddr is the TCP address Raft listens on, host:port. Port 0 picks
	// a free port (see Store.Addr); a restarted node must come back on the
	// address its peers know it by. Required unless Transport is set.
	BindAddr string

	// AdvertiseAddr is the address peers dial, if it differs from the
	// listener's (NAT, 0.0.0.0 binds). Empty means the listener's address,
	// which must then not be unspecified. Ignored when Transport is set.
	AdvertiseAddr string

	// Transport, if not nil, replaces the TCP transport (tests, or a node
	// that multiplexes Raft on a shared listener). The caller owns it: Close
	// does not close it.
	Transport raft.Transport

	// Forwarder carries commands from this node to the leader when it is
	// not the leader itself. nil is fine for a one-node cluster; on a
	// follower without one, commands fail (with no effect) instead of
	// being forwarded.
	Forwarder Forwarder

	// LeaderHint, if not nil, names the group's leader when this node's
	// Raft knows none: a node outside the group (Partial) hears from no
	// leader, and forwards its commands where the hint says.
	LeaderHint func() (raft.ServerID, raft.ServerAddress)

	// Partial says the group runs on some of the nodes only, and this node
	// may be outside it. While it does not replicate the group, reads fail
	// with ErrNotReplica, and writes return the leader's answer without
	// waiting for this node's replica (which will not apply them).
	Partial bool

	// Now is the clock the leader stamps into every batch of commands;
	// every expiry decision in the state machine uses that stamp, so all
	// replicas agree. Followers read it only to judge expiry in Holder.
	// DefaultConfig sets time.Now; tests pass a fake clock. Required.
	//
	// Only a leader's first stamp reads Now's wall time: from taking
	// office on, its stamps advance by Monotonic, so a step of the wall
	// clock (NTP, an operator) while it leads moves no stamp. (A stamp
	// that jumped ahead would end every session early, while their
	// owners, timing their leases on monotonic clocks, still serve.)
	Now func() time.Time
	// Monotonic reads a clock that never steps, as a duration from any
	// fixed origin. nil means Now's own elapsed time: Now().Sub of an
	// earlier reading, which for time.Now is Go's monotonic clock and for
	// a fake clock is the fake clock.
	Monotonic func() time.Duration

	// Logger receives the Store's and Raft's logs (Raft's hclog output is
	// adapted, see NewHCLogger). nil discards them.
	Logger *slog.Logger

	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and
	// CommitTimeout are Raft's (see raft.Config). A follower starts an
	// election after HeartbeatTimeout (randomised up to 2x) without a
	// leader; a leader steps down after LeaderLeaseTimeout without a
	// quorum. CommitTimeout bounds how long an idle follower takes to learn
	// that an entry committed (the Store also nudges followers after a
	// forwarded batch, see the package documentation).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// MaxAppendEntries is how many log entries Raft sends in one
	// AppendEntries RPC (and applies to the FSM at once). 1..1024.
	MaxAppendEntries int

	// SnapshotInterval, SnapshotThreshold and TrailingLogs control
	// snapshots: every SnapshotInterval (staggered), if SnapshotThreshold
	// entries were added since the last one, the FSM is snapshotted and the
	// log truncated, keeping TrailingLogs entries for slow followers.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// SnapshotRetain is how many snapshots are kept on disk. At least 1.
	SnapshotRetain int

	// MaxBatch is the most commands one Raft entry carries (group
	// commit), and MaxBatchBytes the most bytes of commands; a single
	// larger command still goes alone.
	MaxBatch      int
	MaxBatchBytes int

	// MaxInFlight is how many batches the committer may have in flight
	// (sent and not yet answered) at once. With 1 it takes the next batch
	// the moment the previous send returns, with no timer: under load,
	// the callers then split into two groups that alternate, each batch
	// holding about half of them. More slots suit links whose latency
	// dwarfs fsync; on one machine (loopback, a shared disk) 2 gave smaller
	// batches, more fsyncs per write, and about 25% fewer writes/s.
	// At least 1. It bounds the batches this node commits to Raft as the
	// leader; MaxForwardsInFlight bounds the batches a follower forwards.
	MaxInFlight int
	// MaxForwardsInFlight is how many batches a follower may have
	// forwarded to the leader and not yet had answered. The leader queues
	// forwarded commands with its own and commits them together, so a
	// follower that sends its next batch while the previous one waits
	// there adds commands to the leader's next entry rather than entries:
	// its callers wait for one leader round, not for the round of the
	// batch ahead of them too. At least 1.
	MaxForwardsInFlight int

	// ReapInterval is how often the leader looks for sessions past their
	// deadline and, if it finds any, commits a reap command. Sessions are
	// also expired lazily by every command that touches them, so this only
	// bounds how long an untouched dead session's locks look held to
	// Holder on a node whose clock is behind the leader's.
	ReapInterval time.Duration

	// TransportMaxPool and TransportTimeout configure the TCP transport:
	// pooled connections per peer, and the I/O deadline of one RPC.
	// TransportTimeout also bounds how long Close waits for a forward
	// request in flight (with any Transport).
	TransportMaxPool int
	TransportTimeout time.Duration
	// acceptTimeout bounds the silence of a connection Open's TCP
	// transport accepted (0: replica.AcceptTimeout); tests shorten it.
	acceptTimeout time.Duration

	// ForwardTimeout bounds one forward request to the leader. A forward
	// also ends as soon as this node sees the leader change (or lose
	// contact), so this is the backstop for a leader that still looks
	// alive and does not answer; the commands of a forward that ended
	// are retried (their outcome was unknown; dedup applies them once)
	// until their callers' contexts end. It should be well above the time
	// a leader takes to commit a batch, and it is a few election timeouts.
	ForwardTimeout time.Duration

	// MessageIDRetention is how long the message queues (Store.Queues)
	// remember the id of a message that was acknowledged or purged: an
	// Enqueue of that id within the retention is a duplicate, one after
	// it a new message (queue.Store). The retention is counted on the
	// leader's stamped clock. It is part of the state machine's
	// definition: replicas with different values would forget different
	// ids, and then accept a resend differently, so every node of a
	// cluster must have the same. Positive.
	MessageIDRetention time.Duration

	// BeforeSync, if not nil, is called before every write to the Raft
	// log store (each ends in an fsync); an error fails that write as a
	// full disk would, and a delay slows it. It is a failpoint for the
	// chaos suite (faultnet.Hook.BeforeSync): nil costs nothing. The
	// stable store (term and vote) is not hooked: Raft cannot survive its
	// failure.
	BeforeSync func() error
}

// DefaultConfig returns the settings for a cluster on a LAN. NodeID,
// DataDir and BindAddr (and Forwarder, for more than one node) are left
// for the caller.
func DefaultConfig() Config {
	return Config{
		Now: time.Now,
		// Raft's own defaults, which Consul and Nomad run on LANs: a dead
		// leader is replaced in 1-2 s.
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		// An idle follower learns of a commit within 50-100 ms, a few
		// idle RPCs per second.
		CommitTimeout:    50 * time.Millisecond,
		MaxAppendEntries: 64,
		// Raft's defaults: snapshot every 2-4 min if 8192 entries were
		// added, keep 10240 entries after it for followers that lag.
		SnapshotInterval:  120 * time.Second,
		SnapshotThreshold: 8192,
		TrailingLogs:      10240,
		// Two snapshots: the newest, and one to fall back on.
		SnapshotRetain: 2,
		// 512 commands or 4 MiB per entry: large enough that 64 and more
		// concurrent writers share one entry, small enough that one entry
		// replicates in well under a heartbeat.
		MaxBatch:      512,
		MaxBatchBytes: 4 << 20,
		// One batch in flight: throughput comes from batch size (see
		// MaxInFlight).
		MaxInFlight:         1,
		MaxForwardsInFlight: 4,
		// Dead sessions are usually expired by the next command that
		// touches them; the reaper sweeps the rest every second.
		ReapInterval: time.Second,
		// Three pooled connections per peer, as Consul; 10 s per RPC
		// (snapshots are streamed, so this is per chunk of I/O).
		TransportMaxPool: 3,
		TransportTimeout: 10 * time.Second,
		// A leader commits a batch in milliseconds; one that answers
		// nothing for 3 s is stuck or gone.
		ForwardTimeout: 3 * time.Second,
		// An hour (queue.DefaultRetention), as the other queue backends:
		// a sender retrying for longer than that sends a new message.
		MessageIDRetention: queue.DefaultRetention,
	}
}

// FastConfig returns DefaultConfig with timings for tests and dev clusters
// on one machine: a dead leader is replaced in a few hundred milliseconds,
// and snapshots are taken often.
func FastConfig() Config {
	c := DefaultConfig()
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 10 * time.Millisecond
	c.SnapshotInterval = 5 * time.Second
	c.SnapshotThreshold = 1024
	c.TrailingLogs = 1024
	c.ReapInterval = 200 * time.Millisecond
	c.TransportTimeout = 2 * time.Second
	c.ForwardTimeout = time.Second
	return c
}

// Validate reports every problem with c, joined (errors.Join), or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("raftlock: config: "+format, args...))
	}
	if c.NodeID == "" {
		bad("NodeID is empty")
	}
	if c.DataDir == "" {
		bad("DataDir is empty")
	}
	if c.Group < 0 || c.Group >= MaxGroups {
		bad("Group %d is not in [0, %d)", c.Group, MaxGroups)
	}
	if c.Transport == nil {
		if c.BindAddr == "" {
			bad("BindAddr is empty (and no Transport is set)")
		} else if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			bad("BindAddr %q: %v", c.BindAddr, err)
		}
		if c.AdvertiseAddr != "" {
			if _, err := net.ResolveTCPAddr("tcp", c.AdvertiseAddr); err != nil {
				bad("AdvertiseAddr %q: %v", c.AdvertiseAddr, err)
			}
		}
	}
	if c.Now == nil {
		bad("Now is nil (use time.Now)")
	}
	if c.HeartbeatTimeout < 5*time.Millisecond {
		bad("HeartbeatTimeout %v is below 5ms", c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		bad("ElectionTimeout %v is below HeartbeatTimeout %v", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("LeaderLeaseTimeout %v must be between 5ms and HeartbeatTimeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout < time.Millisecond {
		bad("CommitTimeout %v is below 1ms", c.CommitTimeout)
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024 {
		bad("MaxAppendEntries %d must be between 1 and 1024", c.MaxAppendEntries)
	}
	if c.SnapshotInterval < 5*time.Millisecond {
		bad("SnapshotInterval %v is below 5ms", c.SnapshotInterval)
	}
	if c.SnapshotThreshold == 0 {
		bad("SnapshotThreshold is 0")
	}
	if c.LogStore != "" && c.LogStore != LogStoreAuto && c.LogStore != LogStoreBolt && c.LogStore != LogStoreWAL {
		bad("LogStore %q is none of %q, %q, %q", c.LogStore, LogStoreAuto, LogStoreBolt, LogStoreWAL)
	}
	if c.SnapshotRetain < 1 {
		bad("SnapshotRetain %d is below 1", c.SnapshotRetain)
	}
	if c.MaxBatch < 1 {
		bad("MaxBatch %d is below 1", c.MaxBatch)
	}
	if c.MaxBatchBytes < 1 {
		bad("MaxBatchBytes %d is below 1", c.MaxBatchBytes)
	}
	if c.MaxInFlight < 1 {
		bad("MaxInFlight %d is below 1", c.MaxInFlight)
	}
	if c.MaxForwardsInFlight < 1 {
		bad("MaxForwardsInFlight %d is below 1", c.MaxForwardsInFlight)
	}
	if c.ReapInterval <= 0 {
		bad("ReapInterval %v is not positive", c.ReapInterval)
	}
	if c.Transport == nil && c.TransportMaxPool < 1 {
		bad("TransportMaxPool %d is below 1", c.TransportMaxPool)
	}
	if c.ForwardTimeout < c.ElectionTimeout {
		bad("ForwardTimeout %v is below ElectionTimeout %v", c.ForwardTimeout, c.ElectionTimeout)
	}
	if c.TransportTimeout <= 0 {
		bad("TransportTimeout %v is not positive", c.TransportTimeout)
	}
	if c.MessageIDRetention <= 0 {
		bad("MessageIDRetention %v is not positive", c.MessageIDRetention)
	}
	return errors.Join(errs...)
}

// The Raft log stores (Config.LogStore).
const (
	LogStoreAuto = replica.LogStoreAuto
	LogStoreBolt = replica.LogStoreBolt
	LogStoreWAL  = replica.LogStoreWAL
)

// ErrLogStoreMismatch: Open found a Raft log of the other kind in the
// data dir, which keeps the log store it was made with.
var ErrLogStoreMismatch = replica.ErrLogStoreMismatch
