package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const exampleFile = "testdata/loom.config.yaml"

func TestParseExampleFile(t *testing.T) {
	// The example uses ${LOOM_NODE_ID:-node-7} and ${LOOM_OTLP_TOKEN:-dev-token}.
	t.Setenv("LOOM_NODE_ID", "")
	t.Setenv("LOOM_OTLP_TOKEN", "t0ken")

	got, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load(%q): %v", exampleFile, err)
	}
	want := Config{
		Node: NodeConfig{
			ID:              "node-7",
			DataDir:         "/var/lib/loom",
			Bind:            "0.0.0.0",
			HTTPPort:        8080,
			GRPCPort:        8081,
			GossipPort:      8301,
			RaftPort:        8300,
			Advertise:       "10.0.0.7",
			ShutdownTimeout: 45 * time.Second,
			MaxPayloadBytes: 8 << 20,
			Pprof:           true,
		},
		ActorPools: ActorPoolsConfig{
			Default: PoolConfig{MaxSize: 20000, IdleTimeout: 10 * time.Minute, EvictionPolicy: EvictionLRU,
				IdempotencyKeys: 2000, IdempotencyRetention: 30 * time.Minute, MaxQueue: 500, MaxActivating: 64},
			Types: map[string]PoolOverride{
				"counter": {MaxSize: new(1000), MaxQueue: new(5000), RateLimit: new(2500.5), Reentrant: new(true)},
				"session": {IdleTimeout: new(30 * time.Second), EvictionPolicy: new(EvictionReject)},
			},
		},
		Journal: JournalConfig{Backend: JournalRaft, Path: "/var/lib/loom/journal/actors.db", SnapshotEvery: 500},
		Messaging: MessagingConfig{
			Backend:  JournalRaft,
			Default:  MessagePolicyConfig{QueueMode: QueueModeFIFO, MaxRetries: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Minute, Jitter: 0.1},
			Types:    map[string]MessagePolicyOverride{"counter": {QueueMode: new(QueueModeStandard), MaxRetries: new(10)}},
			MaxDelay: 168 * time.Hour, IDRetention: 2 * time.Hour, DegradedAge: 5 * time.Minute, Workers: 64,
			RabbitMQ: Default().Messaging.RabbitMQ, // only with backend rabbitmq: testdata/rabbitmq.config.yaml
		},
		Coordination: CoordinationConfig{
			Backend:       CoordinationRaft,
			SessionTTL:    15 * time.Second,
			RenewInterval: 5 * time.Second,
		},
		Cluster: ClusterConfig{
			Join:             "10.0.0.5:8301,10.0.0.6:8301",
			BootstrapExpect:  3,
			Voters:           5,
			DeadVoterTimeout: 5 * time.Minute,
			RaftLogStore:     RaftLogWAL,
			RaftGroups:       3,
			GroupMembers:     GroupMembersVoters,
			JoinTimeout:      time.Minute,
			RejoinInterval:   15 * time.Second,
			Gossip:           GossipLAN,
		},
		Tracing: TracingConfig{
			Enabled:      true,
			MaxTraceAge:  2 * time.Hour,
			MaxSpans:     50000,
			OTLPEndpoint: "otel-collector:4317",
			OTLPHeaders:  map[string]string{"authorization": "Bearer t0ken", "x-price": "$5"},
		},
		Logging: LoggingConfig{Level: LogLevelDebug, Format: LogFormatJSON},
		TLS: TLSConfig{CA: "testdata/tls/loom-ca.pem", Cert: "testdata/tls/node-7.pem", Key: "testdata/tls/node-7-key.pem",
			VerifyIncoming: true, VerifyOutgoing: true, ServerName: "localhost", MinVersion: TLSVersion13},
		Auth: AuthConfig{Tokens: map[string]TokenConfig{
			"app": {Secret: "app-token-for-the-example", Scopes: []string{"actors:call", "tasks:run"}},
			"ops": {Secret: "ops-token-for-the-example", Scopes: []string{"admin", "metrics"}},
		}, TokensFile: "testdata/tokens.yaml"},
	}
	if !reflect.DeepEqual(exported(got), want) {
		t.Errorf("Load(%q) =\n%+v\nwant\n%+v", exampleFile, exported(got), want)
	}
	if p := got.ActorPools.For("counter"); p != (PoolConfig{MaxSize: 1000, IdleTimeout: 10 * time.Minute, EvictionPolicy: EvictionLRU,
		IdempotencyKeys: 2000, IdempotencyRetention: 30 * time.Minute, MaxQueue: 5000, MaxActivating: 64, RateLimit: 2500.5, Reentrant: true}) {
		t.Errorf("For(counter) = %+v", p)
	}
	if p := got.ActorPools.For("session"); p != (PoolConfig{MaxSize: 20000, IdleTimeout: 30 * time.Second, EvictionPolicy: EvictionReject,
		IdempotencyKeys: 2000, IdempotencyRetention: 30 * time.Minute, MaxQueue: 500, MaxActivating: 64}) {
		t.Errorf("For(session) = %+v", p)
	}
}

func TestReentrantNeedsARegisteredType(t *testing.T) {
	c, err := Parse([]byte("actorPools:\n  types:\n    order:\n      reentrant: true\n    ordr:\n      reentrant: true\n"), "loom.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckActorTypes([]string{"order", "stock"}); err == nil ||
		err.Error() != `loom.config.yaml:6: actorPools.types.ordr.reentrant: no actor type "ordr" is registered (registered: order, stock)` {
		t.Errorf("CheckActorTypes = %v", err)
	}
	if err := c.CheckActorTypes([]string{"order", "ordr"}); err != nil {
		t.Errorf("both registered: %v", err)
	}
}

// TestExampleFileSetsEveryKey keeps the documented example complete: every
// field of Config appears in it.
func TestExampleFileSetsEveryKey(t *testing.T) {
	got, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			name := yamlName(typ.Field(i))
			if name == "" {
				continue
			}
			key := joinPath(path, name)
			if ft := typ.Field(i).Type; ft == reflect.TypeFor[RedisConfig]() || ft == reflect.TypeFor[PostgresConfig]() || ft == reflect.TypeFor[RabbitMQConfig]() || ft == reflect.TypeFor[CosmosConfig]() {
				continue // only with that backend: testdata/redis.config.yaml, postgres.config.yaml, rabbitmq.config.yaml and cosmos.config.yaml set them
			}
			if _, ok := got.src.keys[key]; !ok {
				t.Errorf("%s does not set %s", exampleFile, key)
			}
			if ft := typ.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "\n", "# only a comment\n", "---\n", "node:\n# nothing set\n"} {
		c, err := Parse([]byte(text), "loom.config.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
		if !reflect.DeepEqual(exported(c), Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", text, c)
		}
	}
}

func TestParseOverlaysDefaults(t *testing.T) {
	c, err := Parse([]byte("node:\n  httpPort: 0\nlogging:\n  level: warn\n"), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Node.HTTPPort = 0
	want.Logging.Level = LogLevelWarn
	if !reflect.DeepEqual(exported(c), want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestParseEnv(t *testing.T) {
	env := map[string]string{
		"LOOM_SET":   "/data",
		"LOOM_EMPTY": "",
		"LOOM_SPACE": "a b",
		"LOOM_NL":    "a\nb: c",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	tests := []struct {
		name    string
		value   string // written as journal.path on line 3
		want    string // the parsed journal.path, if no problem
		problem string // substring of the one problem on line 3
	}{
		{name: "set", value: "${LOOM_SET}", want: "/data"},
		{name: "set with default", value: "${LOOM_SET:-/default}", want: "/data"},
		{name: "unset with default", value: "${LOOM_UNSET:-/default}", want: "/default"},
		{name: "empty with default", value: "${LOOM_EMPTY:-/default}", want: "/default"},
		{name: "default with spaces", value: "${LOOM_UNSET:-/a b}", want: "/a b"},
		{name: "empty default", value: `"${LOOM_UNSET:-}"`, want: ""},
		{name: "inside text", value: "${LOOM_SET}/journal-${LOOM_UNSET:-x}.db", want: "/data/journal-x.db"},
		{name: "double quoted", value: `"${LOOM_SPACE}"`, want: "a b"},
		{name: "single quoted", value: `'${LOOM_SET}'`, want: "/data"},
		{name: "hash in quotes is not a comment", value: `"a #${LOOM_SET}"`, want: "a #/data"},
		{name: "dollar dollar", value: "a$$b", want: "a$b"},
		{name: "dollar dollar brace", value: "$${LOOM_SET}", want: "${LOOM_SET}"},
		{name: "dollar dollar then var", value: "$$${LOOM_SET}", want: "$/data"},
		{name: "lone dollar", value: "a$b$", want: "a$b$"},
		{name: "comment not expanded", value: "/x # see ${LOOM_UNSET}", want: "/x"},
		{name: "apostrophe then comment", value: "it's/x # see ${LOOM_UNSET}", want: "it's/x"},
		{name: "quoted with escapes", value: `"a\"#${LOOM_SET}" # ${LOOM_UNSET}`, want: `a"#/data`},
		{name: "single quoted with escapes", value: `'it''s ${LOOM_SET}' # ${LOOM_UNSET}`, want: "it's /data"},
		{name: "crlf", value: "${LOOM_SET}\r", want: "/data"},
		{name: "unset", value: "${LOOM_UNSET}", problem: "environment variable LOOM_UNSET is not set"},
		{name: "unset in quotes", value: `"${LOOM_UNSET}"`, problem: "LOOM_UNSET is not set"},
		{name: "empty without default", value: "${LOOM_EMPTY}", problem: "has no value"},
		{name: "line break", value: "${LOOM_NL}", problem: "${LOOM_NL}: the value contains a line break"},
		{name: "unterminated", value: "${LOOM_SET", problem: "missing '}'"},
		{name: "empty name", value: "${}", problem: "empty variable name"},
		{name: "bad name", value: "${1X}", problem: `invalid variable name "1X"`},
		{name: "unsupported operator", value: "${LOOM_SET:=x}", problem: "use ${LOOM_SET} or ${LOOM_SET:-default}"},
		{name: "nested default", value: "${LOOM_UNSET:-${LOOM_SET}}", problem: "nested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := "# a comment mentioning ${LOOM_UNSET}\njournal:\n  path: " + tc.value + "\n  snapshotEvery: 7\n"
			c, err := parse([]byte(text), "loom.config.yaml", Default(), lookup)
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				if c.Journal.Path != tc.want || c.Journal.SnapshotEvery != 7 {
					t.Errorf("journal = %+v, want path %q", c.Journal, tc.want)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Line != 3 || ps[0].File != "loom.config.yaml" || !strings.Contains(ps[0].Message, tc.problem) {
				t.Fatalf("problems = %q, want one on loom.config.yaml:3 containing %q", ps, tc.problem)
			}
			if c.Journal.SnapshotEvery != 7 {
				t.Errorf("the rest of the file was not read: %+v", c.Journal)
			}
		})
	}
}

// TestParseEnvProcess checks that Parse reads the process environment.
func TestParseEnvProcess(t *testing.T) {
	t.Setenv("LOOM_TEST_NODE_ID", "from-env")
	t.Setenv("LOOM_TEST_UNSET", "")
	os.Unsetenv("LOOM_TEST_UNSET") // t.Setenv restores it afterwards

	c, err := Parse([]byte("node:\n  id: ${LOOM_TEST_NODE_ID}\n  dataDir: ${LOOM_TEST_UNSET:-/d}\n"), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.ID != "from-env" || c.Node.DataDir != "/d" {
		t.Errorf("node = %+v", c.Node)
	}

	_, err = Parse([]byte("node:\n  id: x\n  dataDir: ${LOOM_TEST_UNSET}\n"), "f.yaml")
	want := "f.yaml:3: ${LOOM_TEST_UNSET}: environment variable LOOM_TEST_UNSET is not set (write ${LOOM_TEST_UNSET:-value} to give a default)"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		key     string
		line    int
		message string
	}{
		{"top level", "node:\n  id: a\nnodes:\n  id: b\n", "nodes", 3, "unknown key"},
		{"in a section", "node:\n  id: a\n  color: blue\n", "node.color", 3, "allowed: advertise, bind, dataDir, gossipPort, grpcPort, httpPort, id, maxPayloadBytes, pprof, raftPort, shutdownTimeout"},
		{"case", "node:\n  httpport: 1\n", "node.httpport", 2, `did you mean "httpPort"?`},
		{"snake case", "actorPools:\n  default:\n    max_size: 1\n", "actorPools.default.max_size", 3, `did you mean "maxSize"?`},
		{"in a type override", "actorPools:\n  types:\n    counter:\n      maxSize: 5\n      size: 1\n", "actorPools.types.counter.size", 5, "unknown key"},
		{"pool level value", "actorPools:\n  counter: 5\n", "actorPools.counter", 2, "allowed: default, types, or an actor type's pool settings"},
		{"pool level typo", "actorPools:\n  Default: 5\n", "actorPools.Default", 2, `did you mean "default"?`},
		{"in a type at pool level", "actorPools:\n  counter:\n    size: 1\n", "actorPools.counter.size", 3, "unknown key"},
		{"type set twice", "actorPools:\n  types:\n    counter:\n      maxSize: 5\n  counter:\n    maxSize: 1\n", "actorPools.counter", 5, "also set under actorPools.types (line 3)"},
		{"in cluster", "cluster:\n  seeds: a:1\n", "cluster.seeds", 2, "allowed: bootstrapExpect, deadVoterTimeout, gossip, gossipKey, groupMembers, join, joinTimeout, raftGroups, raftLogStore, rejoinInterval, voters"},
		{"cluster snake case", "cluster:\n  bootstrap_expect: 3\n", "cluster.bootstrap_expect", 2, `did you mean "bootstrapExpect"?`},
		{"deep", "tracing:\n  enabled: true\n\n  otlp:\n    endpoint: x\n", "tracing.otlp", 4, "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "loom.config.yaml")
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1: %q", len(ps), ps)
			}
			p := ps[0]
			if p.Key != tc.key || p.Line != tc.line || p.File != "loom.config.yaml" || !strings.Contains(p.Message, tc.message) {
				t.Errorf("problem = %q, want %s at line %d containing %q", p, tc.key, tc.line, tc.message)
			}
		})
	}
}

func TestParseWrongTypes(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		key     string
		line    int
		message string
	}{
		{"string for int", "node:\n  httpPort: abc\n", "node.httpPort", 2, `must be an integer (got "abc")`},
		{"quoted int", "node:\n  httpPort: \"7420\"\n", "node.httpPort", 2, "remove the quotes"},
		{"float for int", "journal:\n  snapshotEvery: 1.5\n", "journal.snapshotEvery", 2, "must be an integer (got 1.5)"},
		{"overflow", "tracing:\n  maxSpans: 99999999999999999999\n", "tracing.maxSpans", 2, "must be an integer"},
		{"list for int", "tracing:\n  maxSpans: [1]\n", "tracing.maxSpans", 2, "not a list"},
		{"duration as a fraction", "node:\n  shutdownTimeout: 30.5\n", "node.shutdownTimeout", 2, `or a whole number of milliseconds (got 30.5)`},
		{"bad duration", "actorPools:\n  default:\n    idleTimeout: five minutes\n", "actorPools.default.idleTimeout", 3, `(got "five minutes")`},
		{"bad override duration", "actorPools:\n  types:\n    a:\n      idleTimeout: 1y\n", "actorPools.types.a.idleTimeout", 4, "must be a duration"},
		{"quoted port", "node:\n  grpcPort: \"7421\"\n", "node.grpcPort", 2, "remove the quotes"},
		{"string for gossip port", "node:\n  gossipPort: memberlist\n", "node.gossipPort", 2, `must be an integer (got "memberlist")`},
		{"float for raft port", "node:\n  raftPort: 7422.5\n", "node.raftPort", 2, "must be an integer (got 7422.5)"},
		{"list for join", "cluster:\n  join: [a:1, b:2]\n", "cluster.join", 2, "not a list"},
		{"quoted bootstrapExpect", "cluster:\n  bootstrapExpect: \"3\"\n", "cluster.bootstrapExpect", 2, "remove the quotes"},
		{"float voters", "cluster:\n  voters: 3.0\n", "cluster.voters", 2, "must be an integer"},
		{"join timeout too large", "cluster:\n  joinTimeout: 9223372036854775807\n", "cluster.joinTimeout", 2, `must be a duration such as "30s"`},
		{"bad dead voter timeout", "cluster:\n  deadVoterTimeout: soon\n", "cluster.deadVoterTimeout", 2, `(got "soon")`},
		{"no value rejoin", "cluster:\n  rejoinInterval:\n", "cluster.rejoinInterval", 2, "has no value"},
		{"scalar for cluster", "cluster: 3\n", "cluster", 1, "must be a mapping"},
		{"yes for bool", "tracing:\n  enabled: yes\n", "tracing.enabled", 2, `must be true or false (got "yes")`},
		{"number for bool", "tracing:\n  enabled: 1\n", "tracing.enabled", 2, "must be true or false (got 1)"},
		{"scalar for section", "node: 5\n", "node", 1, "must be a mapping"},
		{"list for section", "logging:\n  - level\n", "logging", 2, "must be a mapping of keys to values (got a list)"},
		{"scalar for map", "tracing:\n  otlpHeaders: x\n", "tracing.otlpHeaders", 2, "must be a mapping"},
		{"scalar for override", "actorPools:\n  types:\n    counter: 5\n", "actorPools.types.counter", 3, "must be a mapping"},
		{"mapping for string", "node:\n  id:\n    x: y\n", "node.id", 3, "not a mapping"},
		{"no value", "node:\n  id:\n", "node.id", 2, `has no value (write "" for an empty string, or remove the key to use the default)`},
		{"no value int", "node:\n  httpPort: ~\n", "node.httpPort", 2, "has no value (remove the key to use the default)"},
		{"no value override", "actorPools:\n  types:\n    a:\n      maxSize:\n", "actorPools.types.a.maxSize", 4, "remove the key to inherit from actorPools.default"},
		{"duplicate", "node:\n  id: a\n  bind: ::1\n  id: b\n", "node.id", 4, "duplicate key (first set on line 2)"},
		{"duplicate section", "node:\n  id: a\nnode:\n  id: b\n", "node", 3, "duplicate key"},
		{"merge key", "x: &x\n  id: a\nnode:\n  <<: *x\n", "x", 1, "unknown key"},
		{"not a mapping", "just text\n", "", 1, `must be a mapping of keys to values (got "just text")`},
		{"syntax", "node:\n  id: [\n", "", 2, "invalid YAML"},
		{"two documents", "node:\n  id: a\n---\nnode:\n  id: b\n", "", 3, "one YAML document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "loom.config.yaml")
			ps := problems(t, err)
			p := ps[0]
			if p.Key != tc.key || p.Line != tc.line || !strings.Contains(p.Message, tc.message) {
				t.Errorf("problems = %q, want first %q at line %d containing %q", ps, tc.key, tc.line, tc.message)
			}
		})
	}
}

func TestParseSecretsNotEchoed(t *testing.T) {
	text := "tracing:\n  otlpHeaders:\n    authorization: s3cret\n    bad name: s3cret\n    nested:\n      s3cret: s3cret\n    other: [s3cret]\n"
	_, err := Parse([]byte(text), "f.yaml")
	ps := problems(t, err)
	if len(ps) != 3 {
		t.Errorf("got %d problems, want 3: %q", len(ps), ps)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error repeats a secret:\n%v", err)
	}
}

func TestParseAliases(t *testing.T) {
	text := `actorPools:
  default:
    idleTimeout: &idle 2m
  types:
    a:
      idleTimeout: *idle
`
	c, err := Parse([]byte(text), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ActorPools.For("a").IdleTimeout; got != 2*time.Minute {
		t.Errorf("For(a).IdleTimeout = %v, want 2m", got)
	}
}

// TestParseReportsAllProblems: a file with several mistakes of different
// kinds yields one problem each, with the right lines, in file order.
func TestParseReportsAllProblems(t *testing.T) {
	t.Setenv("LOOM_TEST_UNSET", "")
	os.Unsetenv("LOOM_TEST_UNSET")

	text := `node:
  id: node-1
  httpPort: 70000
actorPools:
  types:
    counter:
      maxSize: -1
journal:
  snapshotEvery: often
`
	_, err := Parse([]byte(text), "loom.config.yaml")
	want := `loom.config.yaml:3: node.httpPort: must be between 0 and 65535 (got 70000)
loom.config.yaml:7: actorPools.types.counter.maxSize: must be > 0 (got -1)
loom.config.yaml:9: journal.snapshotEvery: must be an integer (got "often")`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}

	// Every stage at once: env, unknown key, wrong type, invalid value,
	// cross-field rule; the follow-on "has no value" of line 3 is left out.
	text = `node:
  id: ok
  dataDir: ${LOOM_TEST_UNSET}
  bogus: 1
coordination:
  sessionTTL: 4s
logging:
  level: loud
  format: 3s
tracing:
  maxSpans: many
`
	_, err = Parse([]byte(text), "loom.config.yaml")
	ps := problems(t, err)
	type at struct {
		line int
		key  string
	}
	var got []at
	for _, p := range ps {
		got = append(got, at{p.Line, p.Key})
	}
	wantAt := []at{
		{3, ""},
		{4, "node.bogus"},
		{6, "coordination.renewInterval"}, // default 3s >= 4s/2: points at sessionTTL
		{8, "logging.level"},
		{9, "logging.format"},
		{11, "tracing.maxSpans"},
	}
	if !reflect.DeepEqual(got, wantAt) {
		t.Errorf("problems at %v, want %v:\n%v", got, wantAt, err)
	}
}

// TestParseClusterRules: the cluster's cross-field rules point at the key
// to change, and at a line of the file even when that key is left at its
// default (then at the line of a key the rule depends on).
func TestParseClusterRules(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // the one problem, as printed
	}{
		{"memory coordinator, join set", "node:\n  id: a\ncluster:\n  join: 10.0.0.5:7946\n",
			"f.yaml:4: coordination.backend: a memory coordinator cannot be shared between nodes; use raft (cluster.join is set)"},
		{"memory coordinator set, join set", "coordination:\n  backend: memory\ncluster:\n  join: 10.0.0.5:7946\n",
			"f.yaml:2: coordination.backend: a memory coordinator cannot be shared between nodes; use raft (cluster.join is set)"},
		{"memory coordinator, bootstrapExpect", "cluster:\n  voters: 5\n  bootstrapExpect: 3\n",
			"f.yaml:3: coordination.backend: a memory coordinator cannot be shared between nodes; use raft (cluster.bootstrapExpect is 3)"},
		{"raft journal, memory coordinator", "journal:\n  backend: raft\n",
			`f.yaml:2: journal.backend: raft needs coordination.backend raft: the journal is replicated through the coordinator's Raft group (got coordination.backend "memory")`},
		{"raft journal, coordinator set", "coordination:\n  backend: memory\njournal:\n  backend: raft\n",
			`f.yaml:4: journal.backend: raft needs coordination.backend raft: the journal is replicated through the coordinator's Raft group (got coordination.backend "memory")`},
		{"bbolt journal in a cluster", "coordination:\n  backend: raft\ncluster:\n  bootstrapExpect: 3\n",
			"f.yaml:2: journal.backend: a cluster needs journal.backend raft, redis, postgres or cosmos: an actor's journal must be readable on whichever node owns it next (cluster.bootstrapExpect is 3)"},
		{"advertise needed", "node:\n  bind: 0.0.0.0\ncoordination:\n  backend: raft\njournal:\n  backend: raft\ncluster:\n  join: 10.0.0.5:7946\n",
			"f.yaml:2: node.advertise: must be set when node.bind is 0.0.0.0 in a cluster: other nodes need an address they can reach (cluster.join is set)"},
		{"advertise empty in the file", "node:\n  bind: \"::\"\n  advertise: \"\"\ncoordination:\n  backend: raft\njournal:\n  backend: raft\ncluster:\n  bootstrapExpect: 2\n",
			"f.yaml:3: node.advertise: must be set when node.bind is :: in a cluster: other nodes need an address they can reach (cluster.bootstrapExpect is 2)"},
		{"bad advertise", "node:\n  advertise: node-7.internal\n",
			`f.yaml:2: node.advertise: must be an IP address such as 10.0.0.7, or "" to use node.bind (got "node-7.internal")`},
		{"same ports", "node:\n  grpcPort: 9000\n  raftPort: 9000\n",
			"f.yaml:3: node.raftPort: must differ from node.grpcPort (both 9000; 0 picks a free port)"},
		// The later key is left at its default: the earlier one's line.
		{"port same as a default", "node:\n  httpPort: 7421\n",
			"f.yaml:2: node.grpcPort: must differ from node.httpPort (both 7421; 0 picks a free port)"},
		{"bad join element", "coordination:\n  backend: raft\njournal:\n  backend: raft\ncluster:\n  join: 10.0.0.5:7946,10.0.0.6\n",
			`f.yaml:6: cluster.join: must be host:port, such as 10.0.0.5:7946 (got "10.0.0.6")`},
		{"even voters", "cluster:\n  voters: 4\n",
			"f.yaml:2: cluster.voters: must be odd and between 1 and 7 (got 4): an even count tolerates no more failures than one fewer"},
		{"gossip preset", "cluster:\n  gossip: wan\n",
			`f.yaml:2: cluster.gossip: must be one of lan, local (got "wan")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "f.yaml")
			if err == nil || err.Error() != tc.want {
				t.Errorf("error =\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestValidateAfterParseKeepsLines(t *testing.T) {
	text := "node:\n  id: a\n  httpPort: 70000\n"
	c, err := Parse([]byte(text), "loom.config.yaml")
	if ps := problems(t, err); len(ps) != 1 || ps[0].Line != 3 {
		t.Fatalf("Parse problems = %q", ps)
	}
	// The returned config remembers where httpPort came from.
	ps := problems(t, c.Validate())
	if len(ps) != 1 || ps[0].String() != "loom.config.yaml:3: node.httpPort: must be between 0 and 65535 (got 70000)" {
		t.Errorf("Validate problems = %q", ps)
	}
	// A value changed after parsing (say by a flag) has no position.
	c.Node.HTTPPort = -1
	ps = problems(t, c.Validate())
	if len(ps) != 1 || ps[0].String() != "node.httpPort: must be between 0 and 65535 (got -1)" {
		t.Errorf("after a flag, Validate problems = %q", ps)
	}
	// Nor does a value that was never in the file.
	c.Node.HTTPPort = 1
	c.Logging.Level = "loud"
	ps = problems(t, c.Validate())
	if len(ps) != 1 || ps[0].File != "" || ps[0].Line != 0 {
		t.Errorf("Validate problems = %q", ps)
	}
}

func TestParseWithoutFilename(t *testing.T) {
	_, err := Parse([]byte("node:\n  httpPort: -1\n"), "")
	if err == nil || err.Error() != "line 2: node.httpPort: must be between 0 and 65535 (got -1)" {
		t.Errorf("error = %v", err)
	}
}

func TestLoad(t *testing.T) {
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf(`Load("") = %+v, %v; want Default(), nil`, c, err)
	}

	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err = Load(missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an fs.ErrNotExist naming %s", err, missing)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("node:\n  id: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if ps := problems(t, err); len(ps) != 1 || ps[0].File != bad || ps[0].Line != 2 || ps[0].Key != "node.id" {
		t.Errorf("Load(bad) problems = %q", ps)
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Tracing.OTLPHeaders = map[string]string{"authorization": "Bearer s3cret", "x-empty": ""}
	r := c.Redacted()
	want := map[string]string{"authorization": RedactedValue, "x-empty": ""}
	if !reflect.DeepEqual(r.Tracing.OTLPHeaders, want) {
		t.Errorf("Redacted headers = %v, want %v", r.Tracing.OTLPHeaders, want)
	}
	if c.Tracing.OTLPHeaders["authorization"] != "Bearer s3cret" {
		t.Errorf("Redacted changed the original: %v", c.Tracing.OTLPHeaders)
	}
	// Everything else is unchanged.
	r.Tracing.OTLPHeaders = c.Tracing.OTLPHeaders
	if !reflect.DeepEqual(r, c) {
		t.Errorf("Redacted changed more than secrets")
	}
	// No headers: nothing to redact.
	if got := Default().Redacted(); !reflect.DeepEqual(got, Default()) {
		t.Errorf("Default().Redacted() = %+v", got)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	t.Setenv("LOOM_OTLP_TOKEN", "t0ken")
	example, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	withTypes := Default()
	withTypes.ActorPools.Types = map[string]PoolOverride{
		"counter": {MaxSize: new(1000)},
		"zero":    {IdleTimeout: new(time.Duration(0))},
		"empty":   {},
		"true":    {EvictionPolicy: new(EvictionReject)},
	}
	withTypes.Node.ID = "123"
	withTypes.Node.DataDir = "/path with spaces/#not-a-comment"
	withTypes.ActorPools.Default.IdleTimeout = 90*time.Minute + 1500*time.Millisecond
	withTypes.Tracing.OTLPHeaders = map[string]string{"Authorization": "Bearer s3cret", "X-Empty": ""}

	// A printed token secret is "[redacted]", which Parse refuses (with a
	// problem per token that says so); the round trip is checked without
	// the tokens, and the refusal on its own.
	out, err := example.YAML()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(out, "printed.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 || !strings.Contains(err.Error(), "auth.tokens.app.secret: is [redacted], as config print shows every secret: put the token's secret back") {
		t.Errorf("Parse(YAML()) of the example = %v, want a problem for each redacted token", err)
	}
	example.Auth.Tokens = nil

	tests := map[string]Config{
		"default": Default(),
		"example": example,
		"types":   withTypes,
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			text := string(out)
			for _, secret := range []string{"t0ken", "s3cret", "app-token-for-the-example", "ops-token-for-the-example"} {
				if strings.Contains(text, secret) {
					t.Errorf("YAML shows a secret:\n%s", text)
				}
			}
			back, err := Parse(out, "printed.yaml")
			if err != nil {
				t.Fatalf("Parse(YAML()): %v\n%s", err, text)
			}
			if want := exported(c.Redacted()); !reflect.DeepEqual(exported(back), want) {
				t.Errorf("Parse(YAML()) =\n%+v\nwant\n%+v\nYAML:\n%s", exported(back), want, text)
			}
		})
	}
}

func TestYAMLFormat(t *testing.T) {
	c := Default()
	c.Tracing.OTLPHeaders = map[string]string{"authorization": "Bearer s3cret"}
	c.ActorPools.Types = map[string]PoolOverride{"counter": {MaxSize: new(1000)}}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  shutdownTimeout: 30s\n",
		"    idleTimeout: 5m\n",
		"  maxTraceAge: 1h\n",
		"    counter:\n      maxSize: 1000\n",
		"    authorization: '[redacted]'\n",
		`  path: "" # = loom-data/journal.db` + "\n",
		`  advertise: "" # = node.bind (127.0.0.1)` + "\n",
		"  gossipPort: 7946\n",
		"cluster:\n  join: \"\"\n  bootstrapExpect: 1\n  voters: 3\n  deadVoterTimeout: 2m\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}
}

// TestParseSeedShape: the seed's way of writing pools and durations is
// read as today's: an actor type's pool directly under actorPools, and
// durations as plain numbers of milliseconds; problems name the keys as
// written, with their lines.
func TestParseSeedShape(t *testing.T) {
	seed := "actorPools:\n" +
		"  orderProcessor:\n" +
		"    maxSize: 100\n" +
		"    idleTimeout: 300000\n" +
		"    evictionPolicy: lru\n" +
		"tracing:\n" +
		"  enabled: true\n" +
		"  maxTraceAge: 3600000\n"
	c, err := parse([]byte(seed), "seed.yaml", Default(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the seed's shape: %v", err)
	}
	p := c.ActorPools.For("orderProcessor")
	if p.MaxSize != 100 || p.IdleTimeout != 5*time.Minute || p.EvictionPolicy != EvictionLRU {
		t.Fatalf("orderProcessor's pool = %+v", p)
	}
	if c.Tracing.MaxTraceAge != time.Hour || !c.Tracing.Enabled {
		t.Fatalf("tracing = %+v", c.Tracing)
	}
	if d := c.ActorPools.For("other"); d != c.ActorPools.Default {
		t.Fatalf("another type's pool = %+v, want the default", d)
	}

	_, err = parse([]byte("actorPools:\n  orderProcessor:\n    maxSize: 0\n    idleTimeout: -1\n"), "seed.yaml", Default(), func(string) (string, bool) { return "", false })
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("error = %v, want two problems", err)
	}
	for i, want := range []Problem{
		{File: "seed.yaml", Line: 3, Key: "actorPools.orderProcessor.maxSize"},
		{File: "seed.yaml", Line: 4, Key: "actorPools.orderProcessor.idleTimeout"},
	} {
		if got := ve.Problems[i]; got.File != want.File || got.Line != want.Line || got.Key != want.Key {
			t.Errorf("problem %d = %+v, want %s:%d %s", i, got, want.File, want.Line, want.Key)
		}
	}
}

// TestSeedExample: the seed's configuration example loads as written, with
// REDIS_PASSWORD set: its adapter sections set today's keys, its pools and
// durations are read in its shape, and the password is never printed.
func TestSeedExample(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "REDIS_PASSWORD" {
			return "hunter2", true
		}
		return "", false
	}
	data, err := os.ReadFile("testdata/seed.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(data, "seed.config.yaml", Default(), env)
	if err != nil {
		t.Fatalf("the seed's example: %v", err)
	}
	if c.Journal.Backend != JournalRedis || c.Coordination.Backend != CoordinationRedis || c.Messaging.Backend != MessagingBullMQ {
		t.Fatalf("backends: journal %q, coordination %q, messaging %q", c.Journal.Backend, c.Coordination.Backend, c.Messaging.Backend)
	}
	if r := c.Journal.Redis; r.Host != "redis.prod.example.com" || r.Port != 6379 || r.Password != "hunter2" {
		t.Fatalf("journal.redis = %+v", r)
	}
	if r := c.CoordinationRedis(); r != c.Journal.Redis {
		t.Fatalf("the coordinator's Redis = %+v, want the state section's", r)
	}
	if c.Coordination.SessionTTL != 30*time.Second || c.Coordination.RenewInterval != 10*time.Second {
		t.Fatalf("coordination = %+v", c.Coordination)
	}
	if p := c.Messaging.For("any"); p.QueueMode != QueueModeFIFO || p.MaxRetries != 3 {
		t.Fatalf("messaging policy = %+v", p)
	}
	if p := c.ActorPools.For("orderProcessor"); p.MaxSize != 100 || p.IdleTimeout != 5*time.Minute {
		t.Fatalf("orderProcessor's pool = %+v", p)
	}
	printed, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(printed), "hunter2") || !strings.Contains(string(printed), "[redacted]") {
		t.Fatalf("config print shows the password or no redaction:\n%s", printed)
	}
}

// TestRedisExampleSetsEveryRedisKey: testdata/redis.config.yaml, the
// documented Redis example, sets every key of a Redis server through the
// seed's sections, and loads.
func TestRedisExampleSetsEveryRedisKey(t *testing.T) {
	t.Setenv("REDIS_PASSWORD", "pw")
	c, err := Load("testdata/redis.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[RedisConfig]()
	for i := range typ.NumField() {
		key := "journal.redis." + yamlName(typ.Field(i))
		if name := yamlName(typ.Field(i)); name == "addr" || name == "url" {
			continue // alternatives to host and port, named in the file's comments
		}
		if _, ok := c.src.keys[key]; !ok {
			t.Errorf("testdata/redis.config.yaml does not set %s (stateAdapter.%s)", key, yamlName(typ.Field(i)))
		}
	}
	if c.Journal.Redis.ReadTimeout != 1500*time.Millisecond || c.Journal.Redis.KeyPrefix != "orders:" {
		t.Fatalf("journal.redis = %+v", c.Journal.Redis)
	}
}

// TestPostgresExampleSetsEveryPostgresKey: testdata/postgres.config.yaml,
// the documented PostgreSQL example, sets every key of a PostgreSQL server
// through the seed's sections, loads, and never prints the password.
func TestPostgresExampleSetsEveryPostgresKey(t *testing.T) {
	t.Setenv("PGPASSWORD", "hunter2")
	c, err := Load("testdata/postgres.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[PostgresConfig]()
	for i := range typ.NumField() {
		key := "journal.postgres." + yamlName(typ.Field(i))
		if yamlName(typ.Field(i)) == "url" {
			continue // the alternative to host and the rest, named in the file's comments
		}
		if _, ok := c.src.keys[key]; !ok {
			t.Errorf("testdata/postgres.config.yaml does not set %s (stateAdapter.%s)", key, yamlName(typ.Field(i)))
		}
	}
	if c.Journal.Backend != JournalPostgres || c.Coordination.Backend != CoordinationPostgres || c.Messaging.Backend != JournalPostgres {
		t.Fatalf("backends: journal %q, coordination %q, messaging %q", c.Journal.Backend, c.Coordination.Backend, c.Messaging.Backend)
	}
	want := PostgresConfig{Host: "db.example.com", Port: 5433, User: "loom", Password: "hunter2", Database: "orders",
		Schema: "loom_orders", TLS: true, TLSCA: "/etc/loom/postgres-ca.pem", TLSServerName: "db.example.com",
		PoolSize: 16, ConnectTimeout: 2 * time.Second, QueryTimeout: 5 * time.Second}
	if c.Journal.Postgres != want {
		t.Fatalf("journal.postgres = %+v, want %+v", c.Journal.Postgres, want)
	}
	if c.CoordinationPostgres() != want || c.Coordination.Redis.Set() || c.Journal.Redis.Set() {
		t.Fatalf("the coordinator's server = %+v, want the state section's", c.CoordinationPostgres())
	}
	printed, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(printed), "hunter2") || !strings.Contains(string(printed), "[redacted]") {
		t.Fatalf("config print shows the password or no redaction:\n%s", printed)
	}
}

// TestSeedSectionsFollowTheirType: a seed section's server keys are the
// PostgreSQL server's when its type is postgres, and, in a section
// without a type, when the backend it configures is postgres (written
// under today's name, or in stateAdapter for the queues, wherever in the
// file); else Redis's.
func TestSeedSectionsFollowTheirType(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	for _, c := range []struct {
		name, yaml string
		check      func(c Config) bool
	}{
		{"state", "stateAdapter:\n  type: postgres\n  host: db\n  user: loom\ncoordinationAdapter:\n  type: raft\n",
			func(c Config) bool { return c.Journal.Postgres.Host == "db" && !c.Journal.Redis.Set() }},
		{"coordination by type", "journal:\n  backend: postgres\n  postgres:\n    host: db\n    user: loom\ncoordinationAdapter:\n  type: postgres\n  host: locks\n  user: lk\n",
			func(c Config) bool {
				return c.Coordination.Postgres.Host == "locks" && c.Coordination.Postgres.User == "lk"
			}},
		{"coordination by backend", "coordination:\n  backend: postgres\njournal:\n  backend: postgres\n  postgres:\n    url: postgres://db/x\ncoordinationAdapter:\n  host: locks\n  user: lk\n",
			func(c Config) bool { return c.Coordination.Postgres.Host == "locks" && !c.Coordination.Redis.Set() }},
		{"queues after the journal", "messageAdapter:\n  queueMode: standard\n  host: db\n  user: loom\nstateAdapter:\n  type: postgres\n  host: db\n  user: loom\ncoordinationAdapter:\n  type: postgres\n",
			func(c Config) bool {
				return c.Messaging.Postgres == c.Journal.Postgres && c.Messaging.Default.QueueMode == QueueModeStandard
			}},
		{"redis stays redis", "stateAdapter:\n  type: redis\n  host: r\ncoordinationAdapter:\n  type: redis\n",
			func(c Config) bool { return c.Journal.Redis.Host == "r" && !c.Journal.Postgres.Set() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse([]byte(c.yaml), "f.yaml", Default(), none)
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(cfg) {
				t.Fatalf("journal %+v\ncoordination %+v\nmessaging %+v", cfg.Journal, cfg.Coordination, cfg.Messaging)
			}
		})
	}
}

// TestSeedSectionProblems: the seed's sections are checked like the rest,
// with problems naming the key as written.
func TestSeedSectionProblems(t *testing.T) {
	for _, c := range []struct {
		name, yaml, key string
		line            int
		msg             string
	}{
		{"unknown key", "stateAdapter:\n  type: redis\n  key_prefix: a\n", "stateAdapter.key_prefix", 3, `did you mean "keyPrefix"?`},
		{"key of another section", "stateAdapter:\n  type: redis\n  host: a\n  queueMode: fifo\n", "stateAdapter.queueMode", 4, "unknown key (allowed:"},
		{"set twice", "journal:\n  backend: raft\nstateAdapter:\n  type: redis\n", "stateAdapter.type", 4, "sets journal.backend, which line 2 sets too"},
		{"bad type", "stateAdapter:\n  type: mongo\n", "stateAdapter.type", 2, "must be one of"},
		{"redis without a server", "stateAdapter:\n  type: redis\n", "stateAdapter.type", 2, "needs a server"},
		{"bad port", "stateAdapter:\n  type: redis\n  host: a\n  port: 70000\n", "stateAdapter.port", 4, "must be 0 to 65535"},
		{"bad duration", "coordinationAdapter:\n  lockTimeout: soon\n", "coordinationAdapter.lockTimeout", 2, "must be a duration"},
		{"not a mapping", "messageAdapter: bullmq\n", "messageAdapter", 1, "must be a mapping"},
		{"queues elsewhere", "stateAdapter:\n  type: redis\n  host: a\nmessageAdapter:\n  type: redis\n  host: b\n", "messageAdapter.host", 6, "must name the journal's Redis"},
		{"postgres unknown key", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\n  keyPrefix: x\n", "stateAdapter.keyPrefix", 5, "unknown key (allowed:"},
		{"postgres key suggested", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\n  pool_size: 4\n", "stateAdapter.pool_size", 5, `did you mean "poolSize"?`},
		{"postgres without a server", "stateAdapter:\n  type: postgres\ncoordinationAdapter:\n  type: raft\n", "stateAdapter.type", 2, "postgres needs a server"},
		{"postgres without a user", "stateAdapter:\n  type: postgres\n  host: a\ncoordinationAdapter:\n  type: postgres\n", "stateAdapter.user", 3, "must be set with host"},
		{"postgres bad port", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\n  port: 70000\n", "stateAdapter.port", 5, "must be 0 to 65535"},
		{"postgres bad schema", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\n  schema: Loom\n", "stateAdapter.schema", 5, "lower-case SQL identifier"},
		{"postgres with a memory coordinator", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\n", "stateAdapter.type", 2, "postgres needs coordination.backend postgres or raft"},
		{"postgres coordinator, redis journal", "stateAdapter:\n  type: redis\n  host: r\ncoordinationAdapter:\n  type: postgres\n  host: p\n  user: u\n", "coordinationAdapter.type", 5, "kept in one store"},
		{"postgres queues elsewhere", "stateAdapter:\n  type: postgres\n  host: a\n  user: u\ncoordinationAdapter:\n  type: postgres\nmessageAdapter:\n  type: postgres\n  host: b\n  user: u\n", "messageAdapter.host", 9, "must name the journal's PostgreSQL server"},
		{"postgres password not echoed", "stateAdapter:\n  type: postgres\n  url: \"mysql://u:hunter2@a\"\n", "stateAdapter.url", 3, "must be a postgres://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse([]byte(c.yaml), "f.yaml", Default(), func(string) (string, bool) { return "", false })
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v, want a *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Key == c.key && p.Line == c.line && strings.Contains(p.Message, c.msg) {
					return
				}
			}
			t.Fatalf("problems %v, want %s at line %d saying %q", ve.Problems, c.key, c.line, c.msg)
		})
	}
}

// TestRabbitMQExampleSetsEveryRabbitMQKey: testdata/rabbitmq.config.yaml,
// the documented RabbitMQ example, sets every key of the broker's section
// through the seed's messageAdapter, loads, builds the broker's URL from
// the parts, and never prints the password.
func TestRabbitMQExampleSetsEveryRabbitMQKey(t *testing.T) {
	t.Setenv("RABBITMQ_PASSWORD", "hunter/2")
	c, err := Load("testdata/rabbitmq.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[RabbitMQConfig]()
	for i := range typ.NumField() {
		key := "messaging.rabbitmq." + yamlName(typ.Field(i))
		if yamlName(typ.Field(i)) == "url" {
			continue // the alternative to host and the rest, named in the file's comments
		}
		if _, ok := c.src.keys[key]; !ok {
			t.Errorf("testdata/rabbitmq.config.yaml does not set %s (messageAdapter.%s)", key, yamlName(typ.Field(i)))
		}
	}
	if c.Messaging.Backend != MessagingRabbitMQ || c.Journal.Backend != JournalRaft {
		t.Fatalf("backends: messaging %q, journal %q", c.Messaging.Backend, c.Journal.Backend)
	}
	want := RabbitMQConfig{Host: "rabbit.example.com", Port: 5671, Username: "loom", Password: "hunter/2", VHost: "orders",
		TLS: true, TLSCA: "/etc/loom/rabbitmq-ca.pem", Prefix: "loom-orders", FIFOQueues: 16, Prefetch: 64, DeliveryLimit: 10}
	if c.Messaging.RabbitMQ != want {
		t.Fatalf("messaging.rabbitmq = %+v, want %+v", c.Messaging.RabbitMQ, want)
	}
	if u := c.Messaging.RabbitMQ.AMQPURL(); u != "amqps://loom:hunter%2F2@rabbit.example.com:5671/orders" {
		t.Fatalf("AMQPURL = %q", u)
	}
	printed, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(printed), "hunter") || !strings.Contains(string(printed), "[redacted]") {
		t.Fatalf("config print shows the password or no redaction:\n%s", printed)
	}
}
