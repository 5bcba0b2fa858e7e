package config

import (
	"path/filepath"
	"strings"
	"time"
)

// EnvConfigPath is the environment variable that names the config file when
// no --config flag is given. See Path.
const EnvConfigPath = "LOOM_CONFIG_PATH"

// Allowed values of ActorPools eviction policies (PoolConfig.EvictionPolicy).
const (
	// EvictionLRU deactivates the least recently used idle actor to make
	// room for a new activation when the pool is full.
	EvictionLRU = "lru"
	// EvictionReject fails a new activation when the pool is full.
	EvictionReject = "reject"
)

// Allowed values of JournalConfig.Backend.
const (
	// JournalBBolt is the embedded single-file journal (go.etcd.io/bbolt).
	JournalBBolt = "bbolt"
	// JournalMemory keeps the journal in memory; it is lost on exit.
	JournalMemory = "memory"
	// JournalRaft replicates journals through the cluster's Raft group
	// (requires coordination.backend raft).
	JournalRaft = "raft"
)

// Allowed values of CoordinationConfig.Backend. Raft and Redis come later.
const (
	// CoordinationMemory is the in-process coordinator: single node only.
	CoordinationMemory = "memory"
	// CoordinationRaft is the embedded Raft coordinator shared by the
	// nodes of a cluster.
	CoordinationRaft = "raft"
)

// Allowed values of LoggingConfig.Level.
const (
	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"
)

// Allowed values of LoggingConfig.Format.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// MaxPayloadLimit is the largest allowed NodeConfig.MaxPayloadBytes (256 MiB).
// Gossip presets, for cluster.gossip.
const (
	// GossipLAN uses memberlist's LAN timings (failure detected in a few
	// seconds) and Raft's LAN timings.
	GossipLAN = "lan"
	// GossipLocal uses fast timings for a cluster on one machine (tests,
	// loom-node cluster).
	GossipLocal = "local"
)

const MaxPayloadLimit = 256 << 20

// Config is the whole of loom.config.yaml. Start from Default (Parse and
// Load do), change what you need, then call Validate.
//
// A Config returned by Parse or Load remembers, in an unexported field, the
// file and line each key was read from, so that Validate can point at the
// line of a bad value. That field makes reflect.DeepEqual between a parsed
// Config and a literal one false; compare the exported fields instead.
type Config struct {
	Node         NodeConfig         `yaml:"node"`
	ActorPools   ActorPoolsConfig   `yaml:"actorPools"`
	Journal      JournalConfig      `yaml:"journal"`
	Coordination CoordinationConfig `yaml:"coordination"`
	Cluster      ClusterConfig      `yaml:"cluster"`
	Tracing      TracingConfig      `yaml:"tracing"`
	Logging      LoggingConfig      `yaml:"logging"`

	// src records where each key came from (nil when not parsed from a file).
	src *source
}

// NodeConfig describes this process.
type NodeConfig struct {
	// ID names the node in the cluster, in logs and in traces. It must match
	// ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ (fits a DNS label and a file name).
	// Default "node-1": a single node needs no configuration at all; give
	// each node of a cluster its own ID.
	ID string `yaml:"id"`

	// DataDir holds everything the node persists (the journal, by default).
	// A relative path is relative to the process's working directory, not
	// to the config file. Default "./loom-data": next to where you run it,
	// easy to find and to delete while trying Loom out.
	DataDir string `yaml:"dataDir"`

	// Bind is the IP address the node's listeners bind to. Default
	// "127.0.0.1": nothing is reachable from other hosts until you say so
	// (use "0.0.0.0" or a specific address for a cluster).
	Bind string `yaml:"bind"`

	// HTTPPort serves /health, /metrics, /traces and the JSON gateway.
	// 0 picks a free port (useful in tests). Default 7420, an unassigned
	// port, so that a node answers at a predictable address.
	HTTPPort int `yaml:"httpPort"`

	// ShutdownTimeout bounds a graceful shutdown (draining mailboxes,
	// deactivating actors, closing the journal) before the node gives up
	// and exits. Must be > 0. Default 30s: long enough to drain a busy
	// node, short enough for orchestrators that kill after ~30s anyway.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`

	// GRPCPort serves calls between nodes and from cluster clients. 0
	// picks a free port. Default 7421, next to the HTTP port.
	GRPCPort int `yaml:"grpcPort"`

	// GossipPort is the memberlist port (UDP and TCP). 0 picks a free
	// port. Default 7946, memberlist's usual port.
	GossipPort int `yaml:"gossipPort"`

	// RaftPort is the Raft transport port. 0 picks a free port (fine for a
	// first start; a restarted node must come back on the same address).
	// Default 7422.
	RaftPort int `yaml:"raftPort"`

	// Advertise is the IP address other nodes use to reach this one, when
	// it differs from Bind (a 0.0.0.0 bind, NAT). Default "": Bind.
	Advertise string `yaml:"advertise"`

	// MaxPayloadBytes caps the size of one call's arguments or result.
	// Must be > 0 and <= 256 MiB. Default 4 MiB, gRPC's default message
	// limit: a larger payload is usually a design problem, not a need.
	MaxPayloadBytes int `yaml:"maxPayloadBytes"`
}

// ActorPoolsConfig bounds how many actors are active in memory.
type ActorPoolsConfig struct {
	// Default applies to every actor type without its own entry in Types.
	// Default: MaxSize 10000, IdleTimeout 5m, EvictionPolicy "lru".
	Default PoolConfig `yaml:"default"`

	// Types overrides Default per actor type. Fields left nil inherit from
	// Default. Default: none.
	Types map[string]PoolOverride `yaml:"types"`
}

// PoolConfig is the effective pool setting for an actor type. See
// ActorPoolsConfig.For.
type PoolConfig struct {
	// MaxSize is the most activations of the type held in memory at once.
	// Must be > 0. Default 10000: bounds memory while keeping a working set
	// of hot actors resident.
	MaxSize int `yaml:"maxSize"`

	// IdleTimeout deactivates an actor that has not been called for this
	// long. Must be >= 0; 0 means never idle out. Default 5m: frees memory
	// from actors nobody calls without thrashing ones called now and then.
	IdleTimeout time.Duration `yaml:"idleTimeout"`

	// EvictionPolicy says what happens when a new activation finds the pool
	// full: EvictionLRU deactivates the least recently used actor,
	// EvictionReject fails the new activation. Default EvictionLRU: callers
	// keep working under load, at the cost of reloading evicted actors.
	EvictionPolicy string `yaml:"evictionPolicy"`
}

// PoolOverride is one actor type's entry in ActorPoolsConfig.Types. A nil
// field is unset and inherits from ActorPoolsConfig.Default; a non-nil one
// (even pointing at zero) overrides it. In Go 1.26, new(1000) makes an *int.
type PoolOverride struct {
	MaxSize        *int           `yaml:"maxSize"`
	IdleTimeout    *time.Duration `yaml:"idleTimeout"`
	EvictionPolicy *string        `yaml:"evictionPolicy"`
}

// For returns the effective pool settings for actorType: its override in
// Types, field by field, on top of Default.
func (c ActorPoolsConfig) For(actorType string) PoolConfig {
	p := c.Default
	o, ok := c.Types[actorType]
	if !ok {
		return p
	}
	if o.MaxSize != nil {
		p.MaxSize = *o.MaxSize
	}
	if o.IdleTimeout != nil {
		p.IdleTimeout = *o.IdleTimeout
	}
	if o.EvictionPolicy != nil {
		p.EvictionPolicy = *o.EvictionPolicy
	}
	return p
}

// JournalConfig chooses where actor journals are stored.
type JournalConfig struct {
	// Backend is JournalBBolt, JournalMemory or JournalRaft (replicated
	// through the cluster's Raft group). Default JournalBBolt: a
	// single node keeps its actors' state across restarts out of the box.
	Backend string `yaml:"backend"`

	// Path is the bbolt file. Default "" meaning <Node.DataDir>/journal.db,
	// so that moving DataDir moves the journal with it. Use
	// Config.JournalPath for the effective value.
	Path string `yaml:"path"`

	// SnapshotEvery takes a snapshot of an actor every N journal entries,
	// bounding replay time on activation; 0 never snapshots. Must be >= 0.
	// Default 1000: replaying 1000 small entries takes milliseconds.
	SnapshotEvery int `yaml:"snapshotEvery"`
}

// CoordinationConfig chooses the coordinator that grants actor locks.
type CoordinationConfig struct {
	// Backend is CoordinationMemory (one node, in-process) or
	// CoordinationRaft (the embedded Raft coordinator of a cluster).
	// Default CoordinationMemory.
	Backend string `yaml:"backend"`

	// SessionTTL: if the node does not renew its session within this long,
	// all its locks are freed and its actors move elsewhere. Must be > 0.
	// Default 10s: the recovery target in the design is under 10s plus
	// failure detection; lower means faster failover but more false ones.
	SessionTTL time.Duration `yaml:"sessionTTL"`

	// RenewInterval is how often the session is renewed. Must be > 0 and
	// < SessionTTL/2, so that one lost renewal does not lose the session.
	// Default 3s: three tries within the default TTL.
	RenewInterval time.Duration `yaml:"renewInterval"`
}

// ClusterConfig says how a node finds and forms a cluster (used with
// coordination.backend raft).
type ClusterConfig struct {
	// Join is a comma-separated list of gossip addresses (host:port) of
	// nodes already in the cluster. Default "": start alone (the first
	// node, or a single-node cluster). See JoinAddrs.
	Join string `yaml:"join"`

	// BootstrapExpect is how many nodes must have joined before the Raft
	// cluster is formed; one deterministic node (the smallest id among
	// them) then bootstraps them all as voters, like Consul's
	// bootstrap_expect. Must be >= 1. Default 1: a one-node cluster.
	BootstrapExpect int `yaml:"bootstrapExpect"`

	// Voters is how many Raft voters the leader keeps; later members
	// join as non-voters. Must be odd, 1 to 7: an even count tolerates no
	// more failures than the odd count below it. Default 3.
	Voters int `yaml:"voters"`

	// DeadVoterTimeout: a Raft server whose node has been dead (or gone)
	// this long is removed from the Raft configuration. Must be > 0.
	// Default 2m: long enough for a restart, short enough to heal quorum.
	DeadVoterTimeout time.Duration `yaml:"deadVoterTimeout"`

	// JoinTimeout is how long a node retries the join addresses at start
	// before giving up with an error. Must be > 0. Default 30s.
	JoinTimeout time.Duration `yaml:"joinTimeout"`

	// RejoinInterval is how often a node rejoins through the join
	// addresses and last-known members, so a partition longer than
	// memberlist's dead-node reclaim time still heals. Must be > 0.
	// Default 10s.
	RejoinInterval time.Duration `yaml:"rejoinInterval"`

	// Gossip is the timing preset: GossipLAN (default) or GossipLocal
	// (one machine: fast failure detection and elections).
	Gossip string `yaml:"gossip"`
}

// JoinAddrs splits Join into its addresses.
func (c ClusterConfig) JoinAddrs() []string {
	var out []string
	for _, a := range strings.Split(c.Join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// TracingConfig controls the in-node trace store and OTLP export.
type TracingConfig struct {
	// Enabled turns tracing on. Default false: no overhead unless asked.
	Enabled bool `yaml:"enabled"`

	// MaxTraceAge drops stored traces older than this. Must be > 0.
	// Default 1h: enough to look into a recent problem.
	MaxTraceAge time.Duration `yaml:"maxTraceAge"`

	// MaxSpans caps the spans kept in memory (oldest dropped first). Must be
	// > 0. Default 10000: a few MiB of memory at most.
	MaxSpans int `yaml:"maxSpans"`

	// OTLPEndpoint is the host:port of an OTLP/gRPC collector. Default ""
	// meaning no export: traces stay in the node, queryable on /traces.
	OTLPEndpoint string `yaml:"otlpEndpoint"`

	// OTLPHeaders are sent with every export (typically an API key). They
	// are secret: Redacted and YAML hide their values, and no error message
	// repeats them. Default none.
	OTLPHeaders map[string]string `yaml:"otlpHeaders" loom:"secret"`
}

// LoggingConfig controls the node's slog logger.
type LoggingConfig struct {
	// Level is LogLevelDebug, LogLevelInfo, LogLevelWarn or LogLevelError.
	// Default LogLevelInfo: lifecycle events without per-call noise.
	Level string `yaml:"level"`

	// Format is LogFormatText or LogFormatJSON. Default LogFormatText, for
	// people reading a terminal; use json when a log pipeline reads it.
	Format string `yaml:"format"`
}

// Default returns a Config with every default set. Default().Validate()
// returns nil. Each default is explained on its field.
func Default() Config {
	return Config{
		Node: NodeConfig{
			ID:              "node-1",
			DataDir:         "./loom-data",
			Bind:            "127.0.0.1",
			HTTPPort:        7420,
			GRPCPort:        7421,
			GossipPort:      7946,
			RaftPort:        7422,
			ShutdownTimeout: 30 * time.Second,
			MaxPayloadBytes: 4 << 20,
		},
		ActorPools: ActorPoolsConfig{
			Default: PoolConfig{
				MaxSize:        10000,
				IdleTimeout:    5 * time.Minute,
				EvictionPolicy: EvictionLRU,
			},
		},
		Journal: JournalConfig{
			Backend:       JournalBBolt,
			Path:          "",
			SnapshotEvery: 1000,
		},
		Coordination: CoordinationConfig{
			Backend:       CoordinationMemory,
			SessionTTL:    10 * time.Second,
			RenewInterval: 3 * time.Second,
		},
		Cluster: ClusterConfig{
			BootstrapExpect:  1,
			Voters:           3,
			DeadVoterTimeout: 2 * time.Minute,
			JoinTimeout:      30 * time.Second,
			RejoinInterval:   10 * time.Second,
			Gossip:           GossipLAN,
		},
		Tracing: TracingConfig{
			Enabled:      false,
			MaxTraceAge:  time.Hour,
			MaxSpans:     10000,
			OTLPEndpoint: "",
		},
		Logging: LoggingConfig{
			Level:  LogLevelInfo,
			Format: LogFormatText,
		},
	}
}

// JournalPath returns the effective journal file: Journal.Path if set, else
// journal.db inside Node.DataDir.
func (c Config) JournalPath() string {
	if c.Journal.Path != "" {
		return c.Journal.Path
	}
	return filepath.Join(c.Node.DataDir, "journal.db")
}
