package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"
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
	// JournalBBolt is the embedded single-file journal (go.etcd.io/bbolt):
	// durable, but on this node only.
	JournalBBolt = "bbolt"
	// JournalMemory keeps the journal in memory; it is lost on exit.
	JournalMemory = "memory"
	// JournalRaft replicates journals through the cluster's Raft group, the
	// one CoordinationRaft runs, so that an actor's state follows it to its
	// next owner and every append is fenced against the lock table in the
	// same state machine. It requires coordination.backend raft.
	JournalRaft = "raft"
	// JournalRedis keeps journals in Redis (journal.redis, or the
	// stateAdapter section's host, port and password).
	JournalRedis = "redis"
	// JournalPostgres keeps journals in PostgreSQL (journal.postgres, or
	// the stateAdapter section's host, port, user and password when its
	// type is postgres).
	JournalPostgres = "postgres"
	// JournalCosmos keeps journals in Azure Cosmos DB (journal.cosmos, or
	// the stateAdapter section's endpoint and key when its type is
	// cosmos). It keeps no message queues: durable messaging is off on a
	// node whose journal is on Cosmos DB.
	JournalCosmos = "cosmos"
)

// MessagingBullMQ is accepted for messaging.backend (the seed's
// messageAdapter type) as another name of redis: Redis queues with the
// semantics BullMQ gives Node users (attempts, backoff, stalled-message
// recovery, a failed set), not BullMQ's key format.
const MessagingBullMQ = "bullmq"

// MessagingRabbitMQ keeps messages in RabbitMQ (messaging.rabbitmq):
// quorum queues, publisher confirms, a dead-letter queue. A message is
// accepted once the broker confirms it; its turn's journal append records
// its id, and the broker's copy is acknowledged after that append, so
// effects stay exactly once while the journal remembers the id
// (messaging.idRetention). Works with every journal backend.
const MessagingRabbitMQ = "rabbitmq"

// Allowed values of CoordinationConfig.Backend.
const (
	// CoordinationMemory is the in-process coordinator: one node only, as
	// nothing outside the process can see its locks.
	CoordinationMemory = "memory"
	// CoordinationRaft is the embedded Raft coordinator the nodes of a
	// cluster share (sessions, locks and fencing tokens replicated through
	// Raft); it is the coordinator for a cluster. It also runs a one-node
	// cluster (cluster.bootstrapExpect 1) on the same code.
	CoordinationRaft = "raft"
	// CoordinationRedis takes sessions, locks and fencing tokens from Redis
	// (coordination.redis, or else the journal's Redis).
	CoordinationRedis = "redis"
	// CoordinationPostgres takes sessions, locks and fencing tokens from
	// PostgreSQL (coordination.postgres, or else the journal's server).
	CoordinationPostgres = "postgres"
	// CoordinationCosmos takes sessions, locks and fencing tokens from
	// Azure Cosmos DB (coordination.cosmos, or else the journal's
	// account).
	CoordinationCosmos = "cosmos"
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

// Allowed values of ClusterConfig.Gossip, the failure-detection timing
// preset.
const (
	// GossipLAN uses memberlist's LAN timings (a failed node is detected
	// in a few seconds) and Raft's default timings: safe on a real network,
	// where packets are sometimes late.
	GossipLAN = "lan"
	// GossipLocal uses fast timings for a cluster on one machine (tests,
	// loom-node cluster): failures detected and leaders elected in well
	// under a second, which would cause false alarms on a real network.
	GossipLocal = "local"
)

// Allowed values of ClusterConfig.RaftLogStore.
const (
	// RaftLogAuto keeps the Raft log where the data dir has it: in
	// raft-boltdb/v2 if it holds raft/raft.db, else in hashicorp/raft-wal.
	RaftLogAuto = "auto"
	// RaftLogBolt keeps the Raft log in raft-boltdb/v2.
	RaftLogBolt = "boltdb"
	// RaftLogWAL keeps the Raft log in hashicorp/raft-wal.
	RaftLogWAL = "wal"
)

// Allowed values of ClusterConfig.GroupMembers.
const (
	// GroupMembersAll: every node replicates every Raft group.
	GroupMembersAll = "all"
	// GroupMembersVoters: each Raft group runs on Voters of the nodes.
	GroupMembersVoters = "voters"
)

// MaxPayloadLimit is the largest allowed NodeConfig.MaxPayloadBytes (256 MiB).
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
	Messaging    MessagingConfig    `yaml:"messaging"`
	Coordination CoordinationConfig `yaml:"coordination"`
	Cluster      ClusterConfig      `yaml:"cluster"`
	Tracing      TracingConfig      `yaml:"tracing"`
	Logging      LoggingConfig      `yaml:"logging"`
	TLS          TLSConfig          `yaml:"tls"`
	Auth         AuthConfig         `yaml:"auth"`

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

	// GRPCPort serves calls between nodes (actor calls, forwarded Raft
	// commands) and from cluster clients. 0 picks a free port; must be
	// 0..65535 and differ from the other non-zero ports. Default 7421, next
	// to HTTPPort, so that a node's ports are easy to find and to open in a
	// firewall together.
	GRPCPort int `yaml:"grpcPort"`

	// GossipPort is the memberlist port (UDP and TCP): the address other
	// nodes put in cluster.join. 0 picks a free port; must be 0..65535 and
	// differ from the other non-zero ports. Default 7946, memberlist's (and
	// Serf's) usual port, which firewall rules for gossip often already
	// allow.
	GossipPort int `yaml:"gossipPort"`

	// RaftPort is the Raft transport port. 0 picks a free port, which is
	// fine for a throwaway node but not for one that restarts: the Raft
	// configuration remembers each server's address, so a restarted node
	// must come back on the same port. Must be 0..65535 and differ from the
	// other non-zero ports. Default 7422, next to GRPCPort.
	RaftPort int `yaml:"raftPort"`

	// Advertise is the IP address other nodes use to reach this one (in
	// gossip metadata and the Raft configuration), when it differs from
	// Bind. When set it must be an IP address, and not 0.0.0.0 or ::
	// (nobody can reach those). Default "", meaning Bind: right whenever
	// Bind is a specific address. With a Bind of 0.0.0.0 or :: it must be
	// set in a cluster (a non-empty cluster.join or a
	// cluster.bootstrapExpect > 1), as the other nodes need an address
	// they can reach.
	Advertise string `yaml:"advertise"`

	// MaxPayloadBytes caps the size of one call's arguments or result.
	// Must be > 0 and <= 256 MiB. Default 4 MiB, gRPC's default message
	// limit: a larger payload is usually a design problem, not a need.
	MaxPayloadBytes int `yaml:"maxPayloadBytes"`

	// Pprof serves the Go runtime's profiles (CPU, heap, goroutines,
	// mutex and block contention, execution traces) under /debug/pprof/
	// on the HTTP port, for go tool pprof; with bearer tokens on they need
	// the admin scope. Default false: a profile being taken costs CPU, and
	// the profiles show the process's internals.
	Pprof bool `yaml:"pprof"`
}

// ActorPoolsConfig bounds how many actors are active in memory.
type ActorPoolsConfig struct {
	// Default applies to every actor type without its own entry in Types.
	// Default: MaxSize 10000, IdleTimeout 5m, EvictionPolicy "lru",
	// IdempotencyKeys 1000, IdempotencyRetention 10m, MaxQueue 1000, no
	// MaxActivating bound, no RateLimit.
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
	// of hot actors resident. At it, the LRU policy evicts the least
	// recently used 1 in 32 at once, and the node keeps their locks (up to
	// 10 per slot of MaxSize) so that they come back without a new grant.
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

	// IdempotencyKeys is how many idempotency keys each actor remembers
	// (the newest), with the outcome of the call that carried each. Must be
	// > 0. Default 1000.
	IdempotencyKeys int `yaml:"idempotencyKeys"`

	// IdempotencyRetention is how long each key is remembered at least,
	// unless the count evicts it first; a retry older than that is
	// refused, not run again. Must be > 0. Default 10m: far longer than
	// any retry of a failed call, short enough to keep the records small.
	IdempotencyRetention time.Duration `yaml:"idempotencyRetention"`

	// MaxQueue is how many calls may wait for one actor's turn; a call
	// beyond it fails at once with runtime.ErrOverloaded (HTTP 429), not
	// applied. Must be > 0. Default 1000: a queue that long already waits
	// for a thousand turns.
	MaxQueue int `yaml:"maxQueue"`

	// MaxActivating bounds the activations of the type in progress at
	// once on a node (lock, replay, OnActivate); a call that would start
	// one more waits for a slot. Must be >= 0; 0 = no bound. Default 0.
	MaxActivating int `yaml:"maxActivating"`

	// RateLimit bounds the calls a node serves to the type's actors per
	// second; one more fails at once with 429 overloaded. Must be >= 0;
	// 0 = no limit. Default 0.
	RateLimit float64 `yaml:"rateLimit"`

	// RateBurst is the rate limit's bucket size: calls allowed at once
	// after a quiet spell. Must be >= 0; 0 = RateLimit rounded up.
	RateBurst int `yaml:"rateBurst"`

	// Reentrant lets a call from a running turn's own call chain (A → B →
	// A) interleave with that turn instead of failing as a call cycle;
	// each such call is a commit point of the turn (see package runtime).
	// Only under actorPools.types, for a registered type. Default false.
	Reentrant bool `yaml:"reentrant"`
}

// PoolOverride is one actor type's entry in ActorPoolsConfig.Types. A nil
// field is unset and inherits from ActorPoolsConfig.Default; a non-nil one
// (even pointing at zero) overrides it. In Go 1.26, new(1000) makes an *int.
type PoolOverride struct {
	MaxSize              *int           `yaml:"maxSize"`
	IdleTimeout          *time.Duration `yaml:"idleTimeout"`
	EvictionPolicy       *string        `yaml:"evictionPolicy"`
	IdempotencyKeys      *int           `yaml:"idempotencyKeys"`
	IdempotencyRetention *time.Duration `yaml:"idempotencyRetention"`
	MaxQueue             *int           `yaml:"maxQueue"`
	MaxActivating        *int           `yaml:"maxActivating"`
	RateLimit            *float64       `yaml:"rateLimit"`
	RateBurst            *int           `yaml:"rateBurst"`
	Reentrant            *bool          `yaml:"reentrant"`
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
	if o.IdempotencyKeys != nil {
		p.IdempotencyKeys = *o.IdempotencyKeys
	}
	if o.IdempotencyRetention != nil {
		p.IdempotencyRetention = *o.IdempotencyRetention
	}
	if o.MaxQueue != nil {
		p.MaxQueue = *o.MaxQueue
	}
	if o.MaxActivating != nil {
		p.MaxActivating = *o.MaxActivating
	}
	if o.RateLimit != nil {
		p.RateLimit = *o.RateLimit
	}
	if o.RateBurst != nil {
		p.RateBurst = *o.RateBurst
	}
	if o.Reentrant != nil {
		p.Reentrant = *o.Reentrant
	}
	return p
}

// JournalConfig chooses where actor journals are stored.
type JournalConfig struct {
	// Backend is JournalBBolt, JournalMemory, JournalRaft (replicated
	// through the cluster's Raft group; requires coordination.backend
	// raft), JournalRedis (journal.redis), JournalPostgres
	// (journal.postgres) or JournalCosmos (journal.cosmos; no message
	// queues). Default JournalBBolt: a single node keeps its
	// actors' state across restarts out of the box. A cluster needs
	// JournalRaft, JournalRedis, JournalPostgres or JournalCosmos, so that an actor's
	// journal is readable on whichever node owns it next.
	Backend string `yaml:"backend"`

	// Path is the bbolt file; the memory and raft backends ignore it (the
	// raft journal lives in the Raft store under Node.DataDir). Default ""
	// meaning <Node.DataDir>/journal.db, so that moving DataDir moves the
	// journal with it. Use Config.JournalPath for the effective value.
	Path string `yaml:"path"`

	// SnapshotEvery takes a snapshot of an actor every N journal entries,
	// bounding replay time on activation; 0 never snapshots. Must be >= 0.
	// Default 1000: replaying 1000 small entries takes milliseconds.
	SnapshotEvery int `yaml:"snapshotEvery"`

	// Redis is the server of the redis backend. Default: none.
	Redis RedisConfig `yaml:"redis"`

	// Postgres is the server of the postgres backend. Default: none.
	Postgres PostgresConfig `yaml:"postgres"`

	// Cosmos is the account of the cosmos backend. Default: none.
	Cosmos CosmosConfig `yaml:"cosmos"`
}

// RedisConfig says how to reach a Redis server: host and port (the seed's
// keys), or addr ("host:port"), or url ("redis://" or "rediss://").
type RedisConfig struct {
	Host string `yaml:"host"`
	// Port is the server's port; 0 means 6379.
	Port int    `yaml:"port"`
	Addr string `yaml:"addr"`
	// URL gives everything at once; it may hold a password, so it is
	// secret.
	URL      string `yaml:"url" loom:"secret"`
	Username string `yaml:"username"`
	Password string `yaml:"password" loom:"secret"`
	// Database is the Redis database number. Default 0.
	Database int `yaml:"database"`
	// KeyPrefix starts every key Loom writes. Default "" meaning "loom:".
	KeyPrefix string `yaml:"keyPrefix"`
	// TLS connects with TLS, checking the server's certificate against
	// TLSCA (a PEM file) when set, else the system's roots, for
	// TLSServerName when set, else the host.
	TLS           bool   `yaml:"tls"`
	TLSCA         string `yaml:"tlsCA"`
	TLSServerName string `yaml:"tlsServerName"`
	// Timeouts of a connection attempt and of one command's read and
	// write; 0 takes the client's defaults (5s, 3s, 3s).
	DialTimeout  time.Duration `yaml:"dialTimeout"`
	ReadTimeout  time.Duration `yaml:"readTimeout"`
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// PoolSize is the most connections kept; 0 takes the client's default.
	PoolSize int `yaml:"poolSize"`
}

// Set reports whether r names a server.
func (r RedisConfig) Set() bool { return r.Host != "" || r.Addr != "" || r.URL != "" }

// CoordinationRedis is the coordinator's Redis: coordination.redis when it
// names a server, else the journal's.
func (c Config) CoordinationRedis() RedisConfig {
	if c.Coordination.Redis.Set() {
		return c.Coordination.Redis
	}
	return c.Journal.Redis
}

// PostgresConfig says how to reach a PostgreSQL server and where Loom's
// tables live there: host, port, user, password and database (the seed's
// keys), or url (a postgres:// URL or a keyword/value connection string).
type PostgresConfig struct {
	// URL gives everything at once, instead of host, port, user, password
	// and database; TLS is then what its sslmode says, unless tls is set.
	// It may hold a password, so it is secret.
	URL  string `yaml:"url" loom:"secret"`
	Host string `yaml:"host"`
	// Port is the server's port; 0 means 5432.
	Port int `yaml:"port"`
	// User is required with host.
	User     string `yaml:"user"`
	Password string `yaml:"password" loom:"secret"`
	// Database defaults to the user's name, as PostgreSQL's does.
	Database string `yaml:"database"`
	// Schema holds every table Loom makes, so that several clusters share
	// a database without meeting: a lower-case SQL identifier of at most
	// 63 bytes. Default "" meaning "loom".
	Schema string `yaml:"schema"`
	// TLS connects with TLS, checking the server's certificate against
	// TLSCA (a PEM file) when set, else the system's roots, for
	// TLSServerName when set, else the host. Without it (and no url)
	// connections are in plain text.
	TLS           bool   `yaml:"tls"`
	TLSCA         string `yaml:"tlsCA"`
	TLSServerName string `yaml:"tlsServerName"`
	// PoolSize is the most connections kept; 0 takes the client's default
	// (4, or the number of CPUs if more). The journal's must be 0 or at
	// least 3: two committers send its batches, and reads need one more.
	PoolSize int `yaml:"poolSize"`
	// ConnectTimeout bounds a connection attempt, QueryTimeout one round
	// trip; 0 takes the adapters' defaults (5s, 10s).
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	QueryTimeout   time.Duration `yaml:"queryTimeout"`
}

// Set reports whether p names a server.
func (p PostgresConfig) Set() bool { return p.Host != "" || p.URL != "" }

// CoordinationPostgres is the coordinator's PostgreSQL server:
// coordination.postgres when it names a server, else the journal's.
func (c Config) CoordinationPostgres() PostgresConfig {
	if c.Coordination.Postgres.Set() {
		return c.Coordination.Postgres
	}
	return c.Journal.Postgres
}

// CosmosConfig says how to reach an Azure Cosmos DB account and where
// Loom's documents live there.
type CosmosConfig struct {
	// Endpoint is the account's URI, https://<account>.documents.azure.com:443/.
	Endpoint string `yaml:"endpoint"`
	// Key is the account's primary or secondary key; it is secret.
	Key string `yaml:"key" loom:"secret"`
	// Database holds Loom's containers, created when missing. Default ""
	// meaning "loom".
	Database string `yaml:"database"`
	// LeaseContainer and JournalContainer are the containers of the
	// coordinator and of the journals, created when missing; they must
	// differ. Defaults "" meaning "leases" and "journal".
	LeaseContainer   string `yaml:"leaseContainer"`
	JournalContainer string `yaml:"journalContainer"`
	// CAFile is a PEM file of the authorities the endpoint's certificate
	// must chain to, instead of the system's (the emulator's certificate).
	CAFile string `yaml:"caFile"`
	// InsecureSkipVerify accepts any certificate: for a test server's
	// self-signed one only.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
	// Consistency is asked for on every read: Strong or BoundedStaleness,
	// or "" for the account's default, which must then be one of them.
	Consistency string `yaml:"consistency"`
	// ConnectTimeout bounds a connection attempt, RequestTimeout one
	// operation; 0 takes the adapters' defaults (5s, 10s).
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	RequestTimeout time.Duration `yaml:"requestTimeout"`
}

// Set reports whether c names an account.
func (c CosmosConfig) Set() bool { return c.Endpoint != "" }

// CoordinationCosmos is the coordinator's Cosmos DB account:
// coordination.cosmos when it names one, else the journal's.
func (c Config) CoordinationCosmos() CosmosConfig {
	if c.Coordination.Cosmos.Set() {
		return c.Coordination.Cosmos
	}
	return c.Journal.Cosmos
}

// Queue modes of MessagePolicyConfig.QueueMode.
const (
	QueueModeFIFO     = "fifo"
	QueueModeStandard = "standard"
)

// MessagingConfig configures durable messaging: one-way messages to actors,
// delivered at least once and applied once, with retries and a dead-letter
// queue.
type MessagingConfig struct {
	// Backend is where the queues live: "" means the journal's backend,
	// the only choice, since a message is acknowledged in the journal
	// append of the turn that processed it. Any other value must equal
	// journal.backend. Default "".
	Backend string `yaml:"backend"`

	// Default applies to every actor type without its own entry in
	// Types. Default: queueMode fifo, maxRetries 3, initialBackoff
	// 100ms, maxBackoff 30s, jitter 0.2.
	Default MessagePolicyConfig `yaml:"default"`

	// Types overrides Default per actor type; fields left out inherit.
	// Default: none.
	Types map[string]MessagePolicyOverride `yaml:"types"`

	// MaxDelay is the furthest ahead a message's delivery time (or a
	// reminder's first firing) may be; later is refused. Must be > 0.
	// Default 720h (30 days).
	MaxDelay time.Duration `yaml:"maxDelay"`

	// IDRetention is how long the id of a delivered or purged message is
	// remembered, so that a resend of that id is accepted once. Must be
	// > 0. Default 1h: far longer than any sender's retries.
	IDRetention time.Duration `yaml:"idRetention"`

	// DegradedAge: /health reports messageQueues degraded when a type's
	// oldest pending message is older than this. Must be > 0. Default 1m.
	DegradedAge time.Duration `yaml:"degradedAge"`

	// Workers is how many actors a node delivers to at once. Must be > 0.
	// Default 32.
	Workers int `yaml:"workers"`

	// ApplyOnAccept lets a node that hosts (or owns) a message's actor
	// apply the message when it accepts it: the message runs as a turn at
	// once, and that turn's journal append accepts it, one write instead of
	// an enqueue and a later delivery. The sender then hears "accepted"
	// once the message is applied, so a send waits as long as a call. When
	// the actor has an earlier ordered message pending, the message is
	// delayed, or its handler fails, it is enqueued as usual. Default true.
	ApplyOnAccept bool `yaml:"applyOnAccept"`

	// Redis, when set, must name the journal's Redis (the queues live
	// with the journals); left empty, the journal's is used.
	Redis RedisConfig `yaml:"redis"`

	// Postgres, when set, must name the journal's PostgreSQL server (the
	// queues are tables beside the journals'); left empty, the journal's
	// is used.
	Postgres PostgresConfig `yaml:"postgres"`

	// RabbitMQ is the broker of backend rabbitmq. Default: none.
	RabbitMQ RabbitMQConfig `yaml:"rabbitmq"`
}

// RabbitMQConfig names a RabbitMQ broker and how Loom lays out its queues
// there.
type RabbitMQConfig struct {
	// URL gives the broker at once: amqp://user:password@host:port/vhost
	// (amqps:// for TLS). It may hold a password, so it is secret.
	URL string `yaml:"url" loom:"secret"`
	// Host and Port, with Username, Password and VHost, are the same in
	// parts. Port 0 means 5672 (5671 with tls).
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Username string `yaml:"username"`
	Password string `yaml:"password" loom:"secret"`
	VHost    string `yaml:"vhost"`
	// TLS connects with TLS, checking the broker's certificate against
	// TLSCA (a PEM file) when set, else the system's roots.
	TLS   bool   `yaml:"tls"`
	TLSCA string `yaml:"tlsCA"`
	// Prefix starts the name of every exchange and queue Loom declares,
	// so that several clusters can share a vhost. Default "loom".
	Prefix string `yaml:"prefix"`
	// FIFOQueues is how many single-active-consumer queues fifo actors
	// are hashed onto; a failing message holds back the other actors of
	// its queue. Default 8.
	FIFOQueues int `yaml:"fifoQueues"`
	// Prefetch is how many unacknowledged deliveries a node takes from
	// the standard queue at once. Default 32.
	Prefetch int `yaml:"prefetch"`
	// DeliveryLimit is the quorum queues' delivery limit: a message
	// delivered this many times without an outcome (its consumers keep
	// crashing) is dead-lettered by the broker. Default 20.
	DeliveryLimit int `yaml:"deliveryLimit"`
}

// Set reports whether r names a broker.
func (r RabbitMQConfig) Set() bool { return r.URL != "" || r.Host != "" }

// AMQPURL is the broker's URL: URL, or one built from its parts.
func (r RabbitMQConfig) AMQPURL() string {
	if r.URL != "" {
		return r.URL
	}
	scheme, port := "amqp", r.Port
	if r.TLS {
		scheme = "amqps"
	}
	if port == 0 {
		port = 5672
		if r.TLS {
			port = 5671
		}
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(r.Host, strconv.Itoa(port)), Path: "/" + r.VHost, RawPath: "/" + url.PathEscape(r.VHost)}
	if r.Username != "" || r.Password != "" {
		u.User = url.UserPassword(r.Username, r.Password)
	}
	return u.String()
}

// MessagePolicyConfig is how one actor type's messages are ordered and
// retried. See MessagingConfig.For.
type MessagePolicyConfig struct {
	// QueueMode is QueueModeFIFO (one actor's messages applied one at a
	// time in acceptance order; a failing message blocks those behind it
	// until it succeeds or is dead-lettered) or QueueModeStandard (a
	// failing message is retried later without blocking the others; no
	// order is promised). Default fifo.
	QueueMode string `yaml:"queueMode"`

	// MaxRetries: a message whose handler always fails is delivered
	// 1+maxRetries times, then dead-lettered. Must be >= 0. Default 3.
	MaxRetries int `yaml:"maxRetries"`

	// InitialBackoff is the wait before the first retry; each retry
	// doubles it. Must be > 0. Default 100ms.
	InitialBackoff time.Duration `yaml:"initialBackoff"`

	// MaxBackoff caps the wait. Must be >= initialBackoff. Default 30s.
	MaxBackoff time.Duration `yaml:"maxBackoff"`

	// Jitter spreads each wait by ±jitter of itself, so retries of many
	// messages do not arrive together. 0 to 1. Default 0.2.
	Jitter float64 `yaml:"jitter"`
}

// MessagePolicyOverride is one actor type's entry in MessagingConfig.Types:
// a nil field inherits from MessagingConfig.Default.
type MessagePolicyOverride struct {
	QueueMode      *string        `yaml:"queueMode"`
	MaxRetries     *int           `yaml:"maxRetries"`
	InitialBackoff *time.Duration `yaml:"initialBackoff"`
	MaxBackoff     *time.Duration `yaml:"maxBackoff"`
	Jitter         *float64       `yaml:"jitter"`
}

// For returns the effective message policy for actorType: its override in
// Types, field by field, on top of Default.
func (c MessagingConfig) For(actorType string) MessagePolicyConfig {
	p := c.Default
	o, ok := c.Types[actorType]
	if !ok {
		return p
	}
	if o.QueueMode != nil {
		p.QueueMode = *o.QueueMode
	}
	if o.MaxRetries != nil {
		p.MaxRetries = *o.MaxRetries
	}
	if o.InitialBackoff != nil {
		p.InitialBackoff = *o.InitialBackoff
	}
	if o.MaxBackoff != nil {
		p.MaxBackoff = *o.MaxBackoff
	}
	if o.Jitter != nil {
		p.Jitter = *o.Jitter
	}
	return p
}

// CoordinationConfig chooses the coordinator that grants actor locks.
type CoordinationConfig struct {
	// Backend is CoordinationMemory (one node, in-process),
	// CoordinationRaft (the embedded Raft coordinator a cluster shares),
	// CoordinationRedis (coordination.redis, else journal.redis),
	// CoordinationPostgres (coordination.postgres, else journal.postgres)
	// or CoordinationCosmos (coordination.cosmos, else journal.cosmos).
	// Default CoordinationMemory: a single node needs no Raft store. A
	// memory coordinator cannot be shared between nodes, so with a
	// non-empty cluster.join or a cluster.bootstrapExpect > 1 it is a
	// problem; use CoordinationRaft.
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

	// Redis is the server of the redis backend; left empty, the journal's
	// Redis is used (the seed: a coordination section without its own
	// host uses the state section's).
	Redis RedisConfig `yaml:"redis"`

	// Postgres is the server of the postgres backend; left empty, the
	// journal's server is used, as with Redis.
	Postgres PostgresConfig `yaml:"postgres"`

	// Cosmos is the account of the cosmos backend; left empty, the
	// journal's account is used.
	Cosmos CosmosConfig `yaml:"cosmos"`
}

// ClusterConfig says how a node finds other nodes and forms a cluster with
// them: gossip membership (memberlist) and the Raft group of
// coordination.backend raft. A node is in a cluster when Join is non-empty
// or BootstrapExpect > 1; it then needs a coordinator the nodes share
// (raft, redis, postgres or cosmos) and a journal they share.
type ClusterConfig struct {
	// Join is a comma-separated list of gossip addresses (host:port, the
	// node.gossipPort of each) of nodes already in the cluster, such as
	// "10.0.0.5:7946,10.0.0.6:7946". Spaces around an address and empty
	// elements are ignored; each address must be host:port with a port in
	// 1..65535. One answering address is enough; listing several lets a
	// node join while some are down. Default "": start alone (the first
	// node, or a single-node cluster). See JoinAddrs.
	Join string `yaml:"join"`

	// BootstrapExpect is how many nodes must have joined (gossip members
	// alive) before the Raft cluster is bootstrapped; one deterministic
	// node (the smallest id among them) then bootstraps them all as
	// voters, like Consul's bootstrap_expect, so that no two nodes form
	// separate clusters. Give every node of a new cluster the same value.
	// Must be >= 1. Default 1: a one-node cluster, which needs nobody
	// else to start.
	BootstrapExpect int `yaml:"bootstrapExpect"`

	// Voters is how many Raft voters the leader keeps: members that join
	// later are added as non-voters (they replicate the log but do not
	// vote), and the leader promotes those that have caught up until there
	// are Voters voters, also after it removed a dead one. Must be odd,
	// 1 to 7. Odd, because Raft needs a majority of voters: n voters
	// tolerate (n-1)/2 failures, so an even count tolerates no more
	// failures than the odd count below it (4 tolerate 1, like 3) while
	// every commit waits for one more node and a network split can leave
	// no majority on either side. At most 7, because every voter slows
	// each commit and 7 already tolerate 3 failures. Default 3: survives
	// one failed node, with the fewest voters that can.
	Voters int `yaml:"voters"`

	// DeadVoterTimeout: a Raft server whose node has been dead (or has
	// left) for this long is removed from the Raft configuration, so that
	// a lost machine stops counting towards the quorum and its voter slot
	// goes to a live member. Must be > 0. Default 2m: long enough for a
	// node to restart or ride out a short network blip, short enough that
	// the cluster does not run for long one failure away from losing its
	// quorum.
	DeadVoterTimeout time.Duration `yaml:"deadVoterTimeout"`

	// RaftLogStore is the store of a node's Raft log, with coordination
	// backend raft: RaftLogWAL (hashicorp/raft-wal, as Consul uses:
	// append-only segment files, one write and one fsync per batch) or
	// RaftLogBolt (raft-boltdb/v2: one bbolt file, a B+tree transaction
	// per batch of entries), or RaftLogAuto: the one the data dir holds,
	// raft-wal for a new one. A data dir keeps the store it was made
	// with: a node started on it with the other one refuses to start.
	// Default RaftLogAuto: raft-wal costs about a fifth less CPU per
	// durable call, and data dirs made before it was the default keep
	// raft-boltdb.
	RaftLogStore string `yaml:"raftLogStore"`

	// RaftGroups is how many Raft groups the embedded store (journal
	// and coordination backends raft) splits the actors into: each actor
	// belongs to one, by a hash of its key, and each group has its own
	// log and leader over the same voters, all on the node's Raft port,
	// so that durable writes are spread over several leaders instead of
	// one. 1 to 64. A data dir keeps the number it was made with, and
	// every node of a cluster must have the same. Default 1.
	RaftGroups int `yaml:"raftGroups"`

	// GroupMembers says which nodes replicate each Raft group, with
	// several: "all" (GroupMembersAll), every node (Voters voters, the
	// others non-voters that follow the log), or "voters"
	// (GroupMembersVoters), Voters nodes per group, chosen for each group
	// by rendezvous hashing with bounded loads, so that a node writes the
	// logs of about RaftGroups*Voters/nodes groups instead of all of them
	// and durable throughput grows with the nodes. A node outside a group
	// forwards its writes to the group's leader (known from gossip) and
	// asks it for the reads that need the group's replica (dead letters,
	// journal dumps, reminders, queue figures). Every node of a cluster
	// must have the same. Default "all".
	GroupMembers string `yaml:"groupMembers"`

	// JoinTimeout is how long a node retries the join addresses at start
	// before it gives up with an error. Must be > 0. Default 30s: enough
	// for nodes started together (by an orchestrator, or loom-node
	// cluster) to come up in any order, short enough that a wrong address
	// is reported while someone is still watching.
	JoinTimeout time.Duration `yaml:"joinTimeout"`

	// RejoinInterval is how often a node rejoins through the join
	// addresses and the last-known members. memberlist alone forgets a
	// node dead for longer than its reclaim time, so two sides of a long
	// partition would stay apart; rejoining periodically heals any
	// partition once the network does. Must be > 0. Default 10s: a healed
	// partition merges within seconds, for a few packets per interval.
	RejoinInterval time.Duration `yaml:"rejoinInterval"`

	// GossipKey encrypts gossip (memberlist's keyring, AES-GCM): a key
	// of 16, 24 or 32 bytes in standard base64, the same on every node
	// (`loom-node keygen` makes one). A node without it cannot join or
	// be heard. Once a node has started with a key, its keyring lives in
	// its data dir (gossip.keyring) and `loom-node keyring` rotates it
	// there; this key seeds it. Secret. Default "": gossip in the clear.
	GossipKey string `yaml:"gossipKey" loom:"secret"`

	// Gossip is the failure-detection timing preset: GossipLAN or
	// GossipLocal (one machine: fast failure detection and elections).
	// Default GossipLAN: safe on a real network; GossipLocal would declare
	// healthy nodes dead there.
	Gossip string `yaml:"gossip"`
}

// JoinAddrs returns the addresses of Join: split at commas, spaces
// trimmed, empty elements dropped. It returns nil when Join has none.
func (c ClusterConfig) JoinAddrs() []string {
	var out []string
	for a := range strings.SplitSeq(c.Join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Clustered reports whether the node is meant to be part of a cluster of
// several nodes: Join has an address, or BootstrapExpect > 1. Such a node
// needs coordination.backend raft and journal.backend raft.
func (c ClusterConfig) Clustered() bool {
	return c.BootstrapExpect > 1 || len(c.JoinAddrs()) > 0
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

// Allowed values of TLSConfig.MinVersion.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// TLSConfig secures the node's listeners and the connections it opens:
// mutual TLS on gRPC (between nodes, and from cluster clients) and on the
// Raft transport, HTTPS on the HTTP port. It is on when Cert and Key are
// set; with it off (the default) everything is plaintext, as before.
//
// Certificates carry a role (package security/tlsconf): a node
// certificate (URI SAN spiffe://loom/node/<id>) or a client certificate
// (spiffe://loom/client/<name>). With VerifyIncoming, a peer must present
// a certificate from CA; Raft and the node-internal gRPC methods accept
// node certificates only. `loom-node tls` creates a CA and both kinds.
//
// The paths are not secret, and problems name them; the key's contents
// are never printed. The files are read again on SIGHUP and when they
// change (polled every few seconds): new connections use the new
// certificate, open ones are not cut.
type TLSConfig struct {
	// CA is a PEM file of the certificate authority (or authorities)
	// whose certificates peers must present. Required with VerifyIncoming
	// or VerifyOutgoing. Default "".
	CA string `yaml:"ca"`

	// Cert and Key are PEM files of this node's certificate (a node
	// certificate: `loom-node tls cert create --node ID`) and its private
	// key. Set both or neither. Default "": TLS off.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`

	// VerifyIncoming requires every peer that connects (another node, a
	// cluster client) to present a certificate signed by CA, and Raft
	// connections and node-internal gRPC methods a node certificate.
	// Requires CA. The HTTPS gateway checks a client certificate that is
	// given but asks for none (browsers, load balancers' health checks).
	// Default false; set it in production: without it, TLS encrypts but
	// anyone who reaches the ports may call and vote.
	VerifyIncoming bool `yaml:"verifyIncoming"`

	// VerifyOutgoing checks that the nodes this node (or a client) dials
	// present a node certificate signed by CA. Requires CA. Default
	// false (encryption without authentication of the server).
	VerifyOutgoing bool `yaml:"verifyOutgoing"`

	// ServerName, when set, must also be a DNS name in the certificate
	// of every node dialed (like Consul's server.<dc>.consul), on top of
	// the role check. Default "": the role and CA alone identify a node,
	// so nodes need no DNS names.
	ServerName string `yaml:"serverName"`

	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	// Default "1.3": both ends are Loom (Go), TLS 1.3 needs one round
	// trip per handshake instead of two, has no weak cipher suites to
	// configure away, and encrypts the certificates (and so the peers'
	// roles and names) on the wire. "1.2" is for a client stack or a
	// proxy in between that cannot speak 1.3.
	MinVersion string `yaml:"minVersion"`
}

// AuthConfig turns on bearer tokens on the node's APIs: the HTTP gateway
// and the gRPC services cluster clients call. It is on when a token is
// configured (here or in TokensFile); then every request needs
// "Authorization: Bearer <secret>" of a token with the scope the request
// needs (package security/auth), except GET /health/live and GET
// /health/ready, which stay open for probes. Default: off, no token
// needed.
//
// In a cluster, tokens need tls.verifyIncoming: nodes forward calls to
// one another over the same gRPC services, and tell one another from
// clients by their node certificates.
type AuthConfig struct {
	// Tokens are static tokens, by name (the name appears in logs and
	// errors; the secret never does). Default none.
	Tokens map[string]TokenConfig `yaml:"tokens"`

	// TokensFile is a YAML file of further tokens, in the same shape under
	// a top-level tokens key, so that secrets can live apart from the
	// config (a mounted secret, a file of mode 0600). It is read at start
	// and again on SIGHUP; a file that fails to load then leaves the
	// tokens as they were. A name must not be both here and in Tokens.
	// Default "".
	TokensFile string `yaml:"tokensFile"`
}

// TokenConfig is one bearer token.
type TokenConfig struct {
	// Secret is what callers present: at least 16 bytes (`loom-node
	// token create` makes one of 32 random bytes). Secret: Redacted and
	// YAML hide it, and no problem repeats it. Required.
	Secret string `yaml:"secret" loom:"secret"`

	// Scopes are what the token allows, at least one of: actors:call,
	// actors:call:<type>, tasks:run, admin, metrics. Required.
	Scopes []string `yaml:"scopes"`
}

// Enabled reports whether tokens are required: one is configured, or a
// tokens file is.
func (a AuthConfig) Enabled() bool { return len(a.Tokens) > 0 || a.TokensFile != "" }

// Enabled reports whether TLS is on: Cert and Key are set.
func (t TLSConfig) Enabled() bool { return t.Cert != "" && t.Key != "" }

// LoggingConfig controls the node's slog logger.
type LoggingConfig struct {
	// Level is LogLevelDebug, LogLevelInfo, LogLevelWarn or LogLevelError.
	// Default LogLevelInfo: lifecycle events without per-call noise.
	Level string `yaml:"level"`

	// Format is LogFormatText or LogFormatJSON. Default LogFormatText, for
	// people reading a terminal; use json when a log pipeline reads it.
	Format string `yaml:"format"`
}

// Dev returns the defaults of `loom-node dev`: Default() made a one-node
// cluster on the same code as a real one (the Raft coordinator and journal,
// bootstrapExpect 1, the local gossip preset), with the gRPC, Raft and
// gossip ports picked free so that it never clashes with another node,
// and tracing on: someone trying Loom expects `loom-node traces <id>` to
// show a call (it costs about a tenth of a cheap remote call's
// throughput; docs/performance.md, Tracing).
func Dev() Config {
	c := Default()
	c.Tracing.Enabled = true
	c.Coordination.Backend = CoordinationRaft
	c.Journal.Backend = JournalRaft
	c.Cluster.BootstrapExpect = 1
	c.Cluster.Gossip = GossipLocal
	c.Node.GRPCPort, c.Node.RaftPort, c.Node.GossipPort = 0, 0, 0
	return c
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
				MaxSize:              10000,
				IdleTimeout:          5 * time.Minute,
				EvictionPolicy:       EvictionLRU,
				IdempotencyKeys:      1000,
				IdempotencyRetention: 10 * time.Minute,
				MaxQueue:             1000,
			},
		},
		Journal: JournalConfig{
			Backend:       JournalBBolt,
			Path:          "",
			SnapshotEvery: 1000,
		},
		Messaging: MessagingConfig{
			Default: MessagePolicyConfig{
				QueueMode:      QueueModeFIFO,
				MaxRetries:     3,
				InitialBackoff: 100 * time.Millisecond,
				MaxBackoff:     30 * time.Second,
				Jitter:         0.2,
			},
			MaxDelay:    720 * time.Hour,
			IDRetention: time.Hour,
			DegradedAge: time.Minute,
			Workers:     32,

			ApplyOnAccept: true,
			RabbitMQ:      RabbitMQConfig{Prefix: "loom", FIFOQueues: 8, Prefetch: 32, DeliveryLimit: 20},
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
			RaftLogStore:     RaftLogAuto,
			RaftGroups:       1,
			GroupMembers:     GroupMembersAll,
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
		TLS: TLSConfig{MinVersion: TLSVersion13},
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
