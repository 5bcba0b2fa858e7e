package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exported drops the unexported source positions, so that a parsed Config
// can be compared with reflect.DeepEqual.
func exported(c Config) Config {
	c.src = nil
	return c
}

// problems returns err's problems, failing the test if err is not a
// *ValidationError.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want a *ValidationError", err, err)
	}
	return ve.Problems
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	// Validate must not fill anything in.
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Validate changed the config")
	}
}

func TestDefaultValues(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.id", c.Node.ID, "node-1"},
		{"node.dataDir", c.Node.DataDir, "./loom-data"},
		{"node.bind", c.Node.Bind, "127.0.0.1"},
		{"node.httpPort", c.Node.HTTPPort, 7420},
		{"node.grpcPort", c.Node.GRPCPort, 7421},
		{"node.gossipPort", c.Node.GossipPort, 7946},
		{"node.raftPort", c.Node.RaftPort, 7422},
		{"node.advertise", c.Node.Advertise, ""},
		{"node.shutdownTimeout", c.Node.ShutdownTimeout, 30 * time.Second},
		{"node.maxPayloadBytes", c.Node.MaxPayloadBytes, 4 << 20},
		{"actorPools.default", c.ActorPools.Default, PoolConfig{MaxSize: 10000, IdleTimeout: 5 * time.Minute, EvictionPolicy: EvictionLRU,
			IdempotencyKeys: 1000, IdempotencyRetention: 10 * time.Minute, MaxQueue: 1000}},
		{"actorPools.types", len(c.ActorPools.Types), 0},
		{"journal.backend", c.Journal.Backend, JournalBBolt},
		{"journal.path", c.Journal.Path, ""},
		{"journal.snapshotEvery", c.Journal.SnapshotEvery, 1000},
		{"coordination.backend", c.Coordination.Backend, CoordinationMemory},
		{"coordination.sessionTTL", c.Coordination.SessionTTL, 10 * time.Second},
		{"coordination.renewInterval", c.Coordination.RenewInterval, 3 * time.Second},
		{"cluster.join", c.Cluster.Join, ""},
		{"cluster.bootstrapExpect", c.Cluster.BootstrapExpect, 1},
		{"cluster.voters", c.Cluster.Voters, 3},
		{"cluster.deadVoterTimeout", c.Cluster.DeadVoterTimeout, 2 * time.Minute},
		{"cluster.joinTimeout", c.Cluster.JoinTimeout, 30 * time.Second},
		{"cluster.rejoinInterval", c.Cluster.RejoinInterval, 10 * time.Second},
		{"cluster.gossip", c.Cluster.Gossip, GossipLAN},
		{"JoinAddrs()", len(c.Cluster.JoinAddrs()), 0},
		{"Clustered()", c.Cluster.Clustered(), false},
		{"tracing.enabled", c.Tracing.Enabled, false},
		{"tracing.maxTraceAge", c.Tracing.MaxTraceAge, time.Hour},
		{"tracing.maxSpans", c.Tracing.MaxSpans, 10000},
		{"tracing.otlpEndpoint", c.Tracing.OTLPEndpoint, ""},
		{"tracing.otlpHeaders", len(c.Tracing.OTLPHeaders), 0},
		{"logging.level", c.Logging.Level, LogLevelInfo},
		{"logging.format", c.Logging.Format, LogFormatText},
		{"JournalPath()", c.JournalPath(), "loom-data/journal.db"},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string
		message string // substring of the problem's message
	}{
		{"bad id", func(c *Config) { c.Node.ID = "-x" }, "node.id", `(got "-x")`},
		{"long id", func(c *Config) { c.Node.ID = strings.Repeat("a", 64) }, "node.id", "1 to 63"},
		{"empty dataDir", func(c *Config) { c.Node.DataDir = "" }, "node.dataDir", "must not be empty"},
		{"bind hostname", func(c *Config) { c.Node.Bind = "localhost" }, "node.bind", "must be an IP address"},
		{"port high", func(c *Config) { c.Node.HTTPPort = 65536 }, "node.httpPort", "between 0 and 65535 (got 65536)"},
		{"port negative", func(c *Config) { c.Node.HTTPPort = -1 }, "node.httpPort", "(got -1)"},
		{"shutdown zero", func(c *Config) { c.Node.ShutdownTimeout = 0 }, "node.shutdownTimeout", "must be > 0 (got 0s)"},
		{"payload zero", func(c *Config) { c.Node.MaxPayloadBytes = 0 }, "node.maxPayloadBytes", "must be > 0"},
		{"payload huge", func(c *Config) { c.Node.MaxPayloadBytes = MaxPayloadLimit + 1 }, "node.maxPayloadBytes", "<= 268435456"},
		{"pool size", func(c *Config) { c.ActorPools.Default.MaxSize = 0 }, "actorPools.default.maxSize", "must be > 0 (got 0)"},
		{"pool idle", func(c *Config) { c.ActorPools.Default.IdleTimeout = -time.Second }, "actorPools.default.idleTimeout", "must be >= 0 (got -1s)"},
		{"pool policy", func(c *Config) { c.ActorPools.Default.EvictionPolicy = "fifo" }, "actorPools.default.evictionPolicy", `must be one of lru, reject (got "fifo")`},
		{"pool queue", func(c *Config) { c.ActorPools.Default.MaxQueue = -1 }, "actorPools.default.maxQueue", "must be > 0 (got -1)"},
		{"pool keys", func(c *Config) { c.ActorPools.Default.IdempotencyKeys = 0 }, "actorPools.default.idempotencyKeys", "must be > 0 (got 0)"},
		{"pool key retention", func(c *Config) { c.ActorPools.Default.IdempotencyRetention = 0 }, "actorPools.default.idempotencyRetention", "must be > 0 (got 0s)"},
		{"type queue", func(c *Config) { c.ActorPools.Types = map[string]PoolOverride{"order": {MaxQueue: new(-5)}} }, "actorPools.types.order.maxQueue", "must be > 0 (got -5)"},
		{"rate", func(c *Config) { c.ActorPools.Default.RateLimit = -1.5 }, "actorPools.default.rateLimit", "must be >= 0 (got -1.5)"},
		{"queue mode", func(c *Config) { c.Messaging.Default.QueueMode = "lifo" }, "messaging.default.queueMode", "lifo"},
		{"type queue mode", func(c *Config) {
			c.Messaging.Types = map[string]MessagePolicyOverride{"counter": {QueueMode: new("random")}}
		}, "messaging.types.counter.queueMode", "random"},
		{"retries", func(c *Config) { c.Messaging.Default.MaxRetries = -1 }, "messaging.default.maxRetries", "must be >= 0"},
		{"type retries", func(c *Config) {
			c.Messaging.Types = map[string]MessagePolicyOverride{"counter": {MaxRetries: new(-2)}}
		}, "messaging.types.counter.maxRetries", "(got -2)"},
		{"initial backoff", func(c *Config) { c.Messaging.Default.InitialBackoff = 0 }, "messaging.default.initialBackoff", "must be > 0"},
		{"max backoff", func(c *Config) { c.Messaging.Default.MaxBackoff = 50 * time.Millisecond }, "messaging.default.maxBackoff", "must be >= initialBackoff 100ms"},
		{"type max backoff", func(c *Config) {
			c.Messaging.Types = map[string]MessagePolicyOverride{"counter": {InitialBackoff: new(time.Minute)}}
		}, "messaging.types.counter.maxBackoff", "must be >= initialBackoff 1m"},
		{"jitter", func(c *Config) { c.Messaging.Default.Jitter = 1.5 }, "messaging.default.jitter", "between 0 and 1"},
		{"type jitter", func(c *Config) {
			c.Messaging.Types = map[string]MessagePolicyOverride{"counter": {Jitter: new(-0.1)}}
		}, "messaging.types.counter.jitter", "between 0 and 1"},
		{"messaging backend", func(c *Config) { c.Messaging.Backend = JournalMemory }, "messaging.backend", `must be empty, rabbitmq or equal journal.backend ("bbolt")`},
		{"max delay", func(c *Config) { c.Messaging.MaxDelay = 0 }, "messaging.maxDelay", "must be > 0"},
		{"id retention", func(c *Config) { c.Messaging.IDRetention = -time.Second }, "messaging.idRetention", "must be > 0"},
		{"degraded age", func(c *Config) { c.Messaging.DegradedAge = 0 }, "messaging.degradedAge", "must be > 0"},
		{"workers", func(c *Config) { c.Messaging.Workers = 0 }, "messaging.workers", "must be > 0"},
		{"default reentrant", func(c *Config) { c.ActorPools.Default.Reentrant = true }, "actorPools.default.reentrant", "must be set per type, under actorPools.types.<type>.reentrant: reentrancy changes what a turn commits, so a type opts in by name"},
		{"type activating", func(c *Config) { c.ActorPools.Types = map[string]PoolOverride{"order": {MaxActivating: new(-1)}} }, "actorPools.types.order.maxActivating", "must be >= 0 (got -1)"},
		{"type size", func(c *Config) {
			c.ActorPools.Types = map[string]PoolOverride{"counter": {MaxSize: new(-1)}}
		}, "actorPools.types.counter.maxSize", "must be > 0 (got -1)"},
		{"type idle", func(c *Config) {
			c.ActorPools.Types = map[string]PoolOverride{"counter": {IdleTimeout: new(-time.Minute)}}
		}, "actorPools.types.counter.idleTimeout", "must be >= 0 (got -1m)"},
		{"type policy", func(c *Config) {
			c.ActorPools.Types = map[string]PoolOverride{"counter": {EvictionPolicy: new("LRU")}}
		}, "actorPools.types.counter.evictionPolicy", `(got "LRU")`},
		{"type name", func(c *Config) {
			c.ActorPools.Types = map[string]PoolOverride{"": {}}
		}, "actorPools.types.", "must not be empty"},
		{"journal backend", func(c *Config) { c.Journal.Backend = "mongo" }, "journal.backend", "must be one of bbolt, memory, raft, redis, postgres"},
		{"redis journal without a server", func(c *Config) { c.Journal.Backend, c.Coordination.Backend = "redis", "raft" }, "journal.backend", "redis needs a server"},
		{"redis journal with a memory coordinator", func(c *Config) {
			c.Journal.Backend, c.Journal.Redis.Addr = "redis", "127.0.0.1:6379"
		}, "journal.backend", "redis needs coordination.backend redis or raft"},
		{"redis coordinator with a local journal", func(c *Config) {
			c.Coordination.Backend, c.Journal.Redis.Addr = "redis", "127.0.0.1:6379"
		}, "coordination.backend", `redis needs journal.backend redis: the nodes that share a Redis coordinator form one cluster, and an actor's journal must be readable on whichever node owns it next (got journal.backend "bbolt")`},
		{"postgres journal without a server", func(c *Config) { c.Journal.Backend, c.Coordination.Backend = "postgres", "raft" }, "journal.backend", "postgres needs a server: set journal.postgres (stateAdapter) host or url"},
		{"postgres journal with a memory coordinator", func(c *Config) {
			c.Journal.Backend, c.Journal.Postgres = "postgres", testPG
		}, "journal.backend", "postgres needs coordination.backend postgres or raft: a PostgreSQL journal refuses fencing tokens lower than the highest it has seen"},
		{"postgres coordinator with a local journal", func(c *Config) {
			c.Coordination.Backend, c.Journal.Postgres = "postgres", testPG
		}, "coordination.backend", `postgres needs journal.backend postgres: the nodes that share a PostgreSQL coordinator form one cluster, and an actor's journal must be readable on whichever node owns it next (got journal.backend "bbolt")`},
		{"postgres coordinator with a redis journal", func(c *Config) {
			c.Coordination.Backend, c.Coordination.Postgres = "postgres", testPG
			c.Journal.Backend, c.Journal.Redis.Addr = "redis", "127.0.0.1:6379"
		}, "coordination.backend", `postgres needs journal.backend postgres: fencing tokens and the journals they fence must be kept in one store`},
		{"redis coordinator with a postgres journal", func(c *Config) {
			c.Coordination.Backend, c.Coordination.Redis.Addr = "redis", "127.0.0.1:6379"
			c.Journal.Backend, c.Journal.Postgres = "postgres", testPG
		}, "coordination.backend", `redis needs journal.backend redis: fencing tokens and the journals they fence must be kept in one store`},
		{"postgres url and host", func(c *Config) {
			c.Journal.Postgres = PostgresConfig{URL: "postgres://loom:s3cret@db/loom", Host: "db", User: "loom"}
		}, "journal.postgres.url", "give url, or host, port, user, password and database, not both"},
		{"postgres url scheme", func(c *Config) { c.Journal.Postgres.URL = "mysql://loom:s3cret@db" }, "journal.postgres.url", "must be a postgres:// or postgresql:// URL"},
		{"postgres port", func(c *Config) {
			c.Journal.Postgres = testPG
			c.Journal.Postgres.Port = 70000
		}, "journal.postgres.port", "must be 0 to 65535 (got 70000)"},
		{"postgres port without host", func(c *Config) { c.Journal.Postgres.Port = 5433 }, "journal.postgres.port", "is the port of host"},
		{"postgres host without user", func(c *Config) { c.Journal.Postgres.Host = "db" }, "journal.postgres.user", "must be set with host"},
		{"postgres user without host", func(c *Config) { c.Journal.Postgres.User = "loom" }, "journal.postgres.user", "names no server without host"},
		{"postgres password without host", func(c *Config) { c.Journal.Postgres.Password = "s3cret" }, "journal.postgres.password", "names no server without host"},
		{"postgres schema", func(c *Config) {
			c.Journal.Postgres = testPG
			c.Journal.Postgres.Schema = "Orders-1"
		}, "journal.postgres.schema", `lower-case SQL identifier`},
		{"postgres pool size", func(c *Config) {
			c.Coordination.Postgres = testPG
			c.Coordination.Postgres.PoolSize = -1
		}, "coordination.postgres.poolSize", "must be >= 0 (got -1)"},
		{"postgres journal pool", func(c *Config) {
			c.Journal.Backend, c.Coordination.Backend, c.Journal.Postgres = "postgres", "postgres", testPG
			c.Journal.Postgres.PoolSize = 2
		}, "journal.postgres.poolSize", "must be 0 or at least 3"},
		{"postgres timeout", func(c *Config) {
			c.Journal.Postgres = testPG
			c.Journal.Postgres.QueryTimeout = -time.Second
		}, "journal.postgres.queryTimeout", "must be >= 0 (got -1s)"},
		{"postgres tls", func(c *Config) {
			c.Journal.Postgres = testPG
			c.Journal.Postgres.TLSCA = "/etc/ca.pem"
		}, "journal.postgres.tls", "must be true when tlsCA or tlsServerName is set"},
		{"postgres queues elsewhere", func(c *Config) {
			c.Journal.Backend, c.Coordination.Backend, c.Journal.Postgres = "postgres", "postgres", testPG
			c.Messaging.Postgres = PostgresConfig{Host: "other", User: "loom"}
		}, "messaging.postgres.host", "must name the journal's PostgreSQL server"},
		{"rabbitmq needs a broker", func(c *Config) { c.Messaging.Backend = MessagingRabbitMQ }, "messaging.backend", "rabbitmq needs a broker: set messaging.rabbitmq url or host"},
		{"rabbitmq with cosmos journals", func(c *Config) {
			c.Journal.Backend, c.Coordination.Backend = JournalCosmos, CoordinationCosmos
			c.Journal.Cosmos = CosmosConfig{Endpoint: "https://acct.documents.azure.com:443/", Key: "a2V5", Database: "loom"}
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host = MessagingRabbitMQ, "rabbit"
		}, "messaging.backend", "journal.backend cosmos does not"},
		{"rabbitmq broker unused", func(c *Config) { c.Messaging.RabbitMQ.Host = "rabbit" }, "messaging.rabbitmq.host", `names a broker, but messaging.backend is ""`},
		{"rabbitmq url scheme", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.URL = MessagingRabbitMQ, "http://rabbit:5672/"
		}, "messaging.rabbitmq.url", "must be an amqp:// or amqps:// URL with a host"},
		{"rabbitmq url and host", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.URL, c.Messaging.RabbitMQ.Host = MessagingRabbitMQ, "amqp://rabbit/", "rabbit"
		}, "messaging.rabbitmq.url", "give url, or host, port, username, password and vhost, not both"},
		{"rabbitmq port without host", func(c *Config) {
			c.Messaging.RabbitMQ.Port = 5672
		}, "messaging.rabbitmq.host", "must be set with port, username, password or vhost"},
		{"rabbitmq tls", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host, c.Messaging.RabbitMQ.TLSCA = MessagingRabbitMQ, "rabbit", "/etc/ca.pem"
		}, "messaging.rabbitmq.tls", "must be true (or the url amqps://) when tlsCA is set"},
		{"rabbitmq prefix", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host, c.Messaging.RabbitMQ.Prefix = MessagingRabbitMQ, "rabbit", "loom orders"
		}, "messaging.rabbitmq.prefix", `letters, digits, '.', '_' or '-' (got "loom orders")`},
		{"rabbitmq fifo queues", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host, c.Messaging.RabbitMQ.FIFOQueues = MessagingRabbitMQ, "rabbit", 0
		}, "messaging.rabbitmq.fifoQueues", "must be > 0 (got 0)"},
		{"rabbitmq prefetch", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host, c.Messaging.RabbitMQ.Prefetch = MessagingRabbitMQ, "rabbit", -1
		}, "messaging.rabbitmq.prefetch", "must be > 0 (got -1)"},
		{"rabbitmq delivery limit", func(c *Config) {
			c.Messaging.Backend, c.Messaging.RabbitMQ.Host, c.Messaging.RabbitMQ.DeliveryLimit = MessagingRabbitMQ, "rabbit", 1
		}, "messaging.rabbitmq.deliveryLimit", "must be >= 2"},
		{"gossip key not base64", func(c *Config) { c.Cluster.GossipKey = "not base64!" }, "cluster.gossipKey", "must be standard base64"},
		{"gossip key length", func(c *Config) { c.Cluster.GossipKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" }, "cluster.gossipKey", "must be 16, 24 or 32 bytes (AES-128, -192, -256) once decoded, not 20"},
		{"snapshotEvery", func(c *Config) { c.Journal.SnapshotEvery = -1 }, "journal.snapshotEvery", "must be >= 0 (got -1)"},
		{"coordination backend", func(c *Config) { c.Coordination.Backend = "etcd" }, "coordination.backend", `must be one of memory, raft, redis, postgres, cosmos (got "etcd")`},
		{"journal backend raft allowed", func(c *Config) { c.Journal.Backend = "Raft" }, "journal.backend", `must be one of bbolt, memory, raft, redis, postgres, cosmos (got "Raft")`},
		{"raft journal needs raft", func(c *Config) { c.Journal.Backend = JournalRaft }, "journal.backend", `needs coordination.backend raft: the journal is replicated through the coordinator's Raft group (got coordination.backend "memory")`},
		{"memory coordinator with join", func(c *Config) { c.Cluster.Join = "10.0.0.1:7946" }, "coordination.backend", "a memory coordinator cannot be shared between nodes; use raft (cluster.join is set)"},
		{"memory coordinator with bootstrapExpect", func(c *Config) { c.Cluster.BootstrapExpect = 3 }, "coordination.backend", "use raft (cluster.bootstrapExpect is 3)"},
		{"memory coordinator with both", func(c *Config) {
			c.Cluster.Join, c.Cluster.BootstrapExpect = "10.0.0.1:7946", 2
		}, "coordination.backend", "(cluster.join is set and cluster.bootstrapExpect is 2)"},
		{"local journal in a cluster", func(c *Config) {
			c.Coordination.Backend = CoordinationRaft
			c.Cluster.BootstrapExpect = 3
		}, "journal.backend", "a cluster needs journal.backend raft"},
		{"memory journal in a cluster", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalMemory
			c.Cluster.Join = "10.0.0.1:7946"
		}, "journal.backend", "a cluster needs journal.backend raft"},
		{"bad join", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Cluster.Join = "10.0.0.1:7946, nope"
		}, "cluster.join", `must be host:port, such as 10.0.0.5:7946 (got "nope")`},
		{"join with scheme", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Cluster.Join = "tcp://10.0.0.1:7946"
		}, "cluster.join", "without a scheme"},
		{"join port 0", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Cluster.Join = "10.0.0.1:0"
		}, "cluster.join", `port between 1 and 65535 (got "10.0.0.1:0")`},
		{"advertise needed with join", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Node.Bind, c.Cluster.Join = "0.0.0.0", "10.0.0.1:7946"
		}, "node.advertise", "must be set when node.bind is 0.0.0.0 in a cluster: other nodes need an address they can reach (cluster.join is set)"},
		{"advertise needed with bootstrapExpect", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Node.Bind, c.Cluster.BootstrapExpect = "::", 3
		}, "node.advertise", "must be set when node.bind is ::"},
		{"bad advertise", func(c *Config) { c.Node.Advertise = "host" }, "node.advertise", `must be an IP address such as 10.0.0.7, or "" to use node.bind (got "host")`},
		{"unspecified advertise", func(c *Config) { c.Node.Advertise = "0.0.0.0" }, "node.advertise", "not 0.0.0.0"},
		{"grpc same as http", func(c *Config) { c.Node.GRPCPort = c.Node.HTTPPort }, "node.grpcPort", "must differ from node.httpPort (both 7420"},
		{"gossip same as grpc", func(c *Config) { c.Node.GossipPort = c.Node.GRPCPort }, "node.gossipPort", "must differ from node.grpcPort (both 7421"},
		{"raft same as gossip", func(c *Config) { c.Node.RaftPort = c.Node.GossipPort }, "node.raftPort", "must differ from node.gossipPort (both 7946"},
		{"raft same as http", func(c *Config) { c.Node.RaftPort = 7420 }, "node.raftPort", "must differ from node.httpPort"},
		{"grpc port high", func(c *Config) { c.Node.GRPCPort = 65536 }, "node.grpcPort", "between 0 and 65535 (got 65536)"},
		{"gossip port negative", func(c *Config) { c.Node.GossipPort = -1 }, "node.gossipPort", "between 0 and 65535 (got -1)"},
		{"raft port range", func(c *Config) { c.Node.RaftPort = 70000 }, "node.raftPort", "between 0 and 65535"},
		{"bootstrap expect", func(c *Config) { c.Cluster.BootstrapExpect = 0 }, "cluster.bootstrapExpect", "must be >= 1 (got 0)"},
		{"even voters", func(c *Config) { c.Cluster.Voters = 4 }, "cluster.voters", "must be odd and between 1 and 7 (got 4)"},
		{"no raft groups", func(c *Config) { c.Cluster.RaftGroups = 0 }, "cluster.raftGroups", "must be between 1 and 64 (got 0)"},
		{"too many raft groups", func(c *Config) { c.Cluster.RaftGroups = 65 }, "cluster.raftGroups", "(got 65)"},
		{"no voters", func(c *Config) { c.Cluster.Voters = 0 }, "cluster.voters", "(got 0)"},
		{"too many voters", func(c *Config) { c.Cluster.Voters = 9 }, "cluster.voters", "(got 9)"},
		{"dead voter timeout", func(c *Config) { c.Cluster.DeadVoterTimeout = 0 }, "cluster.deadVoterTimeout", "must be > 0 (got 0s)"},
		{"join timeout", func(c *Config) { c.Cluster.JoinTimeout = -time.Second }, "cluster.joinTimeout", "must be > 0 (got -1s)"},
		{"rejoin interval", func(c *Config) { c.Cluster.RejoinInterval = 0 }, "cluster.rejoinInterval", "must be > 0 (got 0s)"},
		{"gossip preset", func(c *Config) { c.Cluster.Gossip = "wan" }, "cluster.gossip", `must be one of lan, local (got "wan")`},
		{"gossip preset empty", func(c *Config) { c.Cluster.Gossip = "" }, "cluster.gossip", `(got "")`},
		{"ttl", func(c *Config) { c.Coordination.SessionTTL = 0 }, "coordination.sessionTTL", "must be > 0"},
		{"renew zero", func(c *Config) { c.Coordination.RenewInterval = 0 }, "coordination.renewInterval", "must be > 0"},
		{"renew half", func(c *Config) { c.Coordination.RenewInterval = 5 * time.Second }, "coordination.renewInterval", "must be < coordination.sessionTTL/2 (5s)"},
		{"trace age", func(c *Config) { c.Tracing.MaxTraceAge = 0 }, "tracing.maxTraceAge", "must be > 0"},
		{"spans", func(c *Config) { c.Tracing.MaxSpans = -5 }, "tracing.maxSpans", "(got -5)"},
		{"endpoint url", func(c *Config) { c.Tracing.OTLPEndpoint = "http://collector:4317" }, "tracing.otlpEndpoint", "without a scheme"},
		{"endpoint no port", func(c *Config) { c.Tracing.OTLPEndpoint = "collector" }, "tracing.otlpEndpoint", "must be host:port"},
		{"endpoint bad port", func(c *Config) { c.Tracing.OTLPEndpoint = "collector:0" }, "tracing.otlpEndpoint", "port between 1 and 65535"},
		{"header name", func(c *Config) { c.Tracing.OTLPHeaders = map[string]string{"bad name": "s3cret"} }, "tracing.otlpHeaders.bad name", "invalid header name"},
		{"level", func(c *Config) { c.Logging.Level = "trace" }, "logging.level", "debug, info, warn, error"},
		{"format", func(c *Config) { c.Logging.Format = "logfmt" }, "logging.format", "text, json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			ps := problems(t, c.Validate())
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1: %v", len(ps), ps)
			}
			p := ps[0]
			if p.Key != tc.key || !strings.Contains(p.Message, tc.message) {
				t.Errorf("problem = %q, want key %q and a message containing %q", p, tc.key, tc.message)
			}
			if p.File != "" || p.Line != 0 {
				t.Errorf("problem %q has a position, but the value came from no file", p)
			}
			if strings.Contains(p.String(), "s3cret") {
				t.Errorf("problem %q repeats a secret", p)
			}
		})
	}
}

// testPG names a PostgreSQL server, as the smallest valid section does.
var testPG = PostgresConfig{Host: "db.example.com", User: "loom"}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"port 0", func(c *Config) { c.Node.HTTPPort = 0 }},
		// Each 0 picks its own free port: equal zeros are no conflict.
		{"all ports 0", func(c *Config) {
			c.Node.HTTPPort, c.Node.GRPCPort, c.Node.GossipPort, c.Node.RaftPort = 0, 0, 0, 0
		}},
		{"max ports", func(c *Config) {
			c.Node.HTTPPort, c.Node.GRPCPort, c.Node.GossipPort, c.Node.RaftPort = 65535, 65534, 65533, 65532
		}},
		{"advertise", func(c *Config) { c.Node.Advertise = "10.0.0.7" }},
		{"ipv6 advertise", func(c *Config) { c.Node.Advertise = "fd00::7" }},
		// A raft coordinator runs a one-node cluster too, with any journal.
		{"raft single node", func(c *Config) { c.Coordination.Backend = CoordinationRaft }},
		{"raft everything single node", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
		}},
		{"cluster", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Cluster.Join = " 10.0.0.5:7946, node-b.internal:7946 ,[fd00::6]:7946,"
			c.Cluster.BootstrapExpect = 3
		}},
		{"cluster on any address with advertise", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationRaft, JournalRaft
			c.Node.Bind, c.Node.Advertise = "0.0.0.0", "10.0.0.7"
			c.Cluster.Join = "10.0.0.5:7946"
		}},
		// 0.0.0.0 without advertise is fine while no other node needs it.
		{"single node on any address", func(c *Config) {
			c.Coordination.Backend, c.Node.Bind = CoordinationRaft, "0.0.0.0"
		}},
		// Only commas or spaces: no address, so not a cluster.
		{"empty join elements", func(c *Config) { c.Cluster.Join = " , " }},
		{"one voter", func(c *Config) { c.Cluster.Voters = 1 }},
		{"seven voters", func(c *Config) { c.Cluster.Voters = 7 }},
		{"local gossip", func(c *Config) { c.Cluster.Gossip = GossipLocal }},
		{"ipv6 bind", func(c *Config) { c.Node.Bind = "::" }},
		{"any bind", func(c *Config) { c.Node.Bind = "0.0.0.0" }},
		{"max payload", func(c *Config) { c.Node.MaxPayloadBytes = MaxPayloadLimit }},
		{"idle never", func(c *Config) { c.ActorPools.Default.IdleTimeout = 0 }},
		{"reject", func(c *Config) { c.ActorPools.Default.EvictionPolicy = EvictionReject }},
		{"no snapshots", func(c *Config) { c.Journal.SnapshotEvery = 0 }},
		{"postgres everything", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend, c.Journal.Postgres = CoordinationPostgres, JournalPostgres, testPG
			c.Messaging.Backend, c.Messaging.Postgres = JournalPostgres, testPG
		}},
		{"postgres cluster", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend, c.Journal.Postgres = CoordinationPostgres, JournalPostgres, testPG
			c.Cluster.Join, c.Cluster.BootstrapExpect = "10.0.0.5:7946", 3
		}},
		{"postgres coordinator on its own server", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationPostgres, JournalPostgres
			c.Coordination.Postgres, c.Journal.Postgres = PostgresConfig{Host: "locks", User: "loom"}, testPG
		}},
		{"postgres journal with raft", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend, c.Journal.Postgres = CoordinationRaft, JournalPostgres, testPG
		}},
		{"postgres url", func(c *Config) {
			c.Coordination.Backend, c.Journal.Backend = CoordinationPostgres, JournalPostgres
			c.Journal.Postgres = PostgresConfig{URL: "postgres://loom:pw@db:5433/orders?sslmode=verify-full", Schema: "orders", PoolSize: 8}
		}},
		{"postgres keyword url", func(c *Config) { c.Journal.Postgres.URL = "host=db user=loom dbname=orders" }},
		{"postgres tls", func(c *Config) {
			c.Journal.Postgres = PostgresConfig{Host: "db", User: "loom", TLS: true, TLSCA: "/etc/ca.pem", TLSServerName: "db.internal"}
		}},
		{"memory journal", func(c *Config) { c.Journal.Backend = JournalMemory }},
		{"endpoint", func(c *Config) { c.Tracing.OTLPEndpoint = "localhost:4317" }},
		{"ipv6 endpoint", func(c *Config) { c.Tracing.OTLPEndpoint = "[::1]:4317" }},
		{"headers", func(c *Config) { c.Tracing.OTLPHeaders = map[string]string{"Authorization": "x"} }},
		{"id", func(c *Config) { c.Node.ID = "a.b_c-9" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Node.ID = ""
	c.ActorPools.Default.MaxSize = -1
	c.Logging.Format = "xml"
	ps := problems(t, c.Validate())
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	want := []string{"node.id", "actorPools.default.maxSize", "logging.format"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problem keys = %q, want %q", keys, want)
	}
}

// TestValidateReportsEveryClusterProblem: a cluster config with several
// mistakes yields one problem each, the cross-field ones included.
func TestValidateReportsEveryClusterProblem(t *testing.T) {
	c := Default()
	c.Node.Bind = "0.0.0.0"
	c.Node.RaftPort = c.Node.GRPCPort
	c.Journal.Backend = JournalRaft
	c.Cluster.Join = "10.0.0.5:7946,bad"
	c.Cluster.BootstrapExpect = 3
	c.Cluster.Voters = 2
	ps := problems(t, c.Validate())
	var got []string
	for _, p := range ps {
		got = append(got, p.Key)
	}
	want := []string{
		"node.raftPort",        // same as grpcPort
		"journal.backend",      // raft without a raft coordinator
		"coordination.backend", // memory in a cluster
		"node.advertise",       // 0.0.0.0 in a cluster
		"cluster.join",         // "bad"
		"cluster.voters",       // even
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problem keys = %q, want %q\n%v", got, want, ps)
	}
}

func TestJoinAddrs(t *testing.T) {
	tests := []struct {
		join string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"10.0.0.5:7946", []string{"10.0.0.5:7946"}},
		{" a:1 ,b:2,, [::1]:3 ,", []string{"a:1", "b:2", "[::1]:3"}},
	}
	for _, tc := range tests {
		c := ClusterConfig{Join: tc.join}
		if got := c.JoinAddrs(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("JoinAddrs(%q) = %q, want %q", tc.join, got, tc.want)
		}
	}
}

func TestClustered(t *testing.T) {
	tests := []struct {
		join   string
		expect int
		want   bool
	}{
		{"", 1, false},
		{" , ", 1, false},
		{"", 0, false},
		{"", 2, true},
		{"a:1", 1, true},
		{"a:1", 3, true},
	}
	for _, tc := range tests {
		c := ClusterConfig{Join: tc.join, BootstrapExpect: tc.expect}
		if got := c.Clustered(); got != tc.want {
			t.Errorf("Clustered() with join %q, bootstrapExpect %d = %v, want %v", tc.join, tc.expect, got, tc.want)
		}
	}
}

func TestPoolFor(t *testing.T) {
	pools := ActorPoolsConfig{
		Default: PoolConfig{MaxSize: 100, IdleTimeout: time.Minute, EvictionPolicy: EvictionLRU},
		Types: map[string]PoolOverride{
			"counter": {MaxSize: new(10)},
			"session": {IdleTimeout: new(time.Duration(0)), EvictionPolicy: new(EvictionReject)},
			"empty":   {},
			"all":     {MaxSize: new(1), IdleTimeout: new(time.Second), EvictionPolicy: new(EvictionReject)},
		},
	}
	tests := []struct {
		actorType string
		want      PoolConfig
	}{
		{"counter", PoolConfig{MaxSize: 10, IdleTimeout: time.Minute, EvictionPolicy: EvictionLRU}},
		// A zero override is set, not inherited.
		{"session", PoolConfig{MaxSize: 100, IdleTimeout: 0, EvictionPolicy: EvictionReject}},
		{"empty", pools.Default},
		{"all", PoolConfig{MaxSize: 1, IdleTimeout: time.Second, EvictionPolicy: EvictionReject}},
		{"unknown", pools.Default},
	}
	for _, tc := range tests {
		if got := pools.For(tc.actorType); got != tc.want {
			t.Errorf("For(%q) = %+v, want %+v", tc.actorType, got, tc.want)
		}
	}
}

func TestMessagingFor(t *testing.T) {
	m := Default().Messaging
	m.Types = map[string]MessagePolicyOverride{
		"counter": {QueueMode: new(QueueModeStandard), MaxRetries: new(0)},
		"empty":   {},
	}
	want := m.Default
	want.QueueMode, want.MaxRetries = QueueModeStandard, 0 // a zero override is set, not inherited
	if got := m.For("counter"); got != want {
		t.Errorf("For(counter) = %+v, want %+v", got, want)
	}
	for _, typ := range []string{"empty", "unknown"} {
		if got := m.For(typ); got != m.Default {
			t.Errorf("For(%s) = %+v, want the default %+v", typ, got, m.Default)
		}
	}
}

func TestJournalPath(t *testing.T) {
	c := Default()
	c.Node.DataDir = "/data"
	if got := c.JournalPath(); got != "/data/journal.db" {
		t.Errorf("JournalPath() = %q, want /data/journal.db", got)
	}
	c.Journal.Path = "/elsewhere/j.db"
	if got := c.JournalPath(); got != "/elsewhere/j.db" {
		t.Errorf("JournalPath() = %q, want /elsewhere/j.db", got)
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		name string
		flag string
		env  string
		want string
	}{
		{"nothing", "", "", ""},
		{"env only", "", "/etc/loom/env.yaml", "/etc/loom/env.yaml"},
		{"flag only", "flag.yaml", "", "flag.yaml"},
		{"flag wins", "flag.yaml", "/etc/loom/env.yaml", "flag.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvConfigPath, tc.env)
			if got := Path(tc.flag); got != tc.want {
				t.Errorf("Path(%q) with %s=%q = %q, want %q", tc.flag, EnvConfigPath, tc.env, got, tc.want)
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "loom.config.yaml", Line: 12, Key: "actorPools.types.counter.maxSize", Message: "must be > 0 (got -1)"},
			"loom.config.yaml:12: actorPools.types.counter.maxSize: must be > 0 (got -1)"},
		{Problem{Key: "node.httpPort", Message: "m"}, "node.httpPort: m"},
		{Problem{File: "f.yaml", Line: 3, Message: "m"}, "f.yaml:3: m"},
		{Problem{File: "f.yaml", Message: "m"}, "f.yaml: m"},
		{Problem{Line: 3, Key: "k", Message: "m"}, "line 3: k: m"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	err := &ValidationError{Problems: []Problem{tests[0].p, tests[1].p}}
	want := tests[0].want + "\n" + tests[1].want
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                 "0s",
		1500 * time.Millisecond:           "1.5s",
		30 * time.Second:                  "30s",
		5 * time.Minute:                   "5m",
		5*time.Minute + 3*time.Second:     "5m3s",
		time.Hour:                         "1h",
		90 * time.Minute:                  "1h30m",
		time.Hour + time.Second:           "1h0m1s",
		-time.Minute:                      "-1m",
		10*time.Minute + 10*time.Hour:     "10h10m",
		100*time.Hour + 20*time.Second:    "100h0m20s",
		2*time.Hour + 500*time.Nanosecond: "2h0m0.0000005s",
	}
	for d, want := range tests {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(formatDuration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", formatDuration(d), back, err, d)
		}
	}
}

// Dev is a valid one-node Raft cluster, and a file loaded over it keeps
// what it does not set.
func TestDevIsAOneNodeCluster(t *testing.T) {
	c := Dev()
	if err := c.Validate(); err != nil {
		t.Fatalf("Dev() does not validate: %v", err)
	}
	if c.Coordination.Backend != CoordinationRaft || c.Journal.Backend != JournalRaft || c.Cluster.BootstrapExpect != 1 {
		t.Fatalf("Dev() = %+v %+v %+v", c.Coordination, c.Journal, c.Cluster)
	}
	if !c.Tracing.Enabled || Default().Tracing.Enabled {
		t.Fatalf("tracing: dev %v, default %v; want dev on, default off", c.Tracing.Enabled, Default().Tracing.Enabled)
	}
	path := filepath.Join(t.TempDir(), "loom.config.yaml")
	if err := os.WriteFile(path, []byte("node:\n  httpPort: 9000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFrom(path, Dev())
	if err != nil {
		t.Fatal(err)
	}
	if got.Node.HTTPPort != 9000 || got.Journal.Backend != JournalRaft || got.Node.RaftPort != 0 {
		t.Fatalf("LoadFrom over Dev: httpPort %d, journal %s, raftPort %d", got.Node.HTTPPort, got.Journal.Backend, got.Node.RaftPort)
	}
}
