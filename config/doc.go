// Package config turns loom.config.yaml into a typed, validated Config.
//
// # Finding and loading the file
//
// Path picks the file: the --config flag if given, else $LOOM_CONFIG_PATH,
// else none. Load reads it (no file means Default()); Parse does the same
// from bytes. testdata/loom.config.yaml is a complete, commented example.
//
// # What Parse guarantees
//
//   - It starts from Default() and overlays only the keys the file sets; a
//     key left out keeps its default. A section with no value (a key
//     followed only by comments) is an empty section. A scalar key with no
//     value is a problem, not a silent default: write "" for an empty
//     string, or remove the key.
//   - Environment variables are expanded first, on the raw text, so they
//     can be used anywhere: ${VAR} is VAR's value and an unset VAR is a
//     problem naming it and its line; ${VAR:-default} uses default when VAR
//     is unset or empty (default is literal text; no nested ${...}); $$
//     is a literal '$'; any other '$' is kept. Comments are not expanded.
//     A substituted value is not expanded again and must not contain a line
//     break. The substitution is textual: quote a value that may contain
//     YAML syntax such as ": " or " #" ("${TOKEN}").
//   - Keys are camelCase, as documented on the Go fields' yaml tags.
//     Unknown and duplicate keys are problems, reported with their dotted
//     key path (actorPools.types.counter.maxSize) and line. So are values
//     of the wrong type: integers and booleans must be written as such
//     (not quoted), durations as Go duration strings ("30s", "5m",
//     "1h30m"; "0" is allowed) or as plain integers, which are
//     milliseconds (300000 is 5m, as the seed's examples write them). Any
//     scalar is accepted as a string.
//   - An actor type's pool may be written directly under actorPools, as
//     the seed does (actorPools.orderProcessor.maxSize), or under
//     actorPools.types; one type set both ways is a problem. Problems name
//     the key as written.
//   - The seed's adapter sections are other names of today's keys:
//     coordinationAdapter's type, lockTimeout and renewInterval are
//     coordination.backend, sessionTTL and renewInterval; stateAdapter's
//     type is journal.backend; messageAdapter's type, queueMode and
//     maxRetries are messaging.backend and messaging.default's queueMode
//     and maxRetries (type bullmq is another name of redis); each
//     section's other keys (host, port, password...) are its role's Redis
//     server (coordination.redis, journal.redis, messaging.redis), or its
//     PostgreSQL server (coordination.postgres, journal.postgres,
//     messaging.postgres) when the section's type is postgres (without a
//     type: when the backend it configures is), its Cosmos DB account
//     (coordination.cosmos, journal.cosmos) when it is cosmos, or
//     messageAdapter's RabbitMQ broker (messaging.rabbitmq) when its type
//     is rabbitmq. A key set in both forms
//     is a problem; problems name the key as written, and `config print`
//     shows today's names.
//   - Anchors and aliases work; merge keys (<<) and multiple YAML
//     documents are rejected.
//   - Every problem is reported, not just the first: syntax errors aside
//     (the YAML parser stops at the first one), one run lists every unset
//     variable, unknown key, bad type and invalid value, in file order, in
//     a single *ValidationError. A problem that merely follows from an
//     unset variable on the same line is left out.
//
// # Validation
//
// Config.Validate checks every field (ranges, enumerations, cross-field
// rules such as renewInterval < sessionTTL/2) and never changes the config:
// defaults come from Default only. The cross-field rules include the
// cluster's: node ports that are equal and non-zero; journal.backend raft
// without coordination.backend raft; a redis, postgres or cosmos journal with the
// memory coordinator, and a redis, postgres or cosmos coordinator with a journal
// kept anywhere else than in its own kind of server; and, for a node in a cluster (a
// non-empty cluster.join or a cluster.bootstrapExpect > 1, see
// ClusterConfig.Clustered), a memory coordinator, a journal other than raft
// beside a raft coordinator, or a node.bind of 0.0.0.0 or :: without
// node.advertise. A problem that several keys cause is reported on the key
// to change, at the line of a related key when that key is not in the file. A Config from Parse remembers the line of
// every key it read, so problems found later by Validate point at the file,
// unless the value was changed after parsing (for example by a flag), in
// which case the problem has no file and line.
//
// # Effective values
//
// ActorPoolsConfig.For merges a type's override over the default pool
// (nil override fields inherit). Config.JournalPath resolves the empty
// journal path to <node.dataDir>/journal.db; an empty node.advertise means
// node.bind. ClusterConfig.JoinAddrs splits cluster.join into its
// addresses. Relative paths are relative to the working directory, not to
// the config file.
//
// # Secrets
//
// Fields tagged `loom:"secret"` (the OTLP headers, the Redis and
// PostgreSQL passwords and URLs, the Cosmos DB account key) are never echoed in a
// problem message, and Redacted and YAML show their non-empty values as
// "[redacted]". YAML is for display: parsing its output gives back the
// redacted config, not the secrets.
//
// The package has no global state; Parse reads the process environment
// and Path reads $LOOM_CONFIG_PATH, nothing else.
package config
