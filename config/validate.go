package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File and Line locate the value in the config file. Both are zero
	// when the value did not come from a file (a default, or a field set
	// in code or from a flag after parsing). Line may be set without File
	// when Parse was given no file name.
	File string
	Line int
	// Key is the dotted key path, such as "actorPools.types.counter.maxSize".
	// It is empty for problems that are not about one key (a YAML syntax
	// error, an undefined environment variable).
	Key string
	// Message says what is wrong, and what was found where that is not secret.
	Message string
}

// String formats p as "file:line: key: message", leaving out the parts
// that are empty.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		fmt.Fprintf(&b, "%s: ", p.File)
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError is the error returned by Parse, Load and Validate when
// the configuration is wrong. It holds every problem found, not only the
// first, in file order (problems with a line first).
type ValidationError struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// source remembers where the keys of a parsed config came from.
type source struct {
	file string
	keys map[string]origin // by dotted key path
	// written maps a canonical key path to the path the file wrote it at,
	// for keys written in the seed's shape: an actor type's pool,
	// "actorPools.types.<type>" written "actorPools.<type>", and the keys
	// of the seed's adapter sections ("coordination.backend" written
	// "coordinationAdapter.type").
	written map[string]string
}

// display is key as the file wrote it: a problem about a pool set at
// actorPools.<type> names that key, not actorPools.types.<type>.
func (s *source) display(key string) string {
	if s == nil || len(s.written) == 0 {
		return key
	}
	for canon, w := range s.written {
		if key == canon || strings.HasPrefix(key, canon+".") {
			return w + key[len(canon):]
		}
	}
	return key
}

// origin is where one key was read, and the value read there (formatted
// with formatValue), so that a value changed after parsing is not
// attributed to the file.
type origin struct {
	line  int
	value string
}

// locate returns the file and line of key if its current value is the one
// read from the file.
func (s *source) locate(key, value string) (string, int, bool) {
	if s == nil {
		return "", 0, false
	}
	o, ok := s.keys[key]
	if !ok || o.value != value {
		return "", 0, false
	}
	return s.file, o.line, true
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks every field and returns nil or a *ValidationError listing
// every problem. It never changes c: defaults are not filled in here (start
// from Default for that). For a Config from Parse or Load, each problem
// carries the file and line of the offending value, unless that value was
// changed after parsing.
func (c *Config) Validate() error {
	v := validator{src: c.src}
	v.validate(c)
	if len(v.problems) == 0 {
		return nil
	}
	sortProblems(v.problems)
	return &ValidationError{Problems: v.problems}
}

// CheckActorTypes reports, as a *ValidationError with file and line, every
// actorPools.types entry that sets reentrant for a type not among names
// (the types the node registers): a flag that changes what a turn commits
// must not silently apply to nothing.
func (c *Config) CheckActorTypes(names []string) error {
	v := validator{src: c.src}
	for _, name := range sortedKeys(c.ActorPools.Types) {
		if o := c.ActorPools.Types[name]; o.Reentrant != nil && !slices.Contains(names, name) {
			sorted := slices.Sorted(slices.Values(names))
			v.add("actorPools.types."+name+".reentrant", *o.Reentrant,
				fmt.Sprintf("no actor type %q is registered (registered: %s)", name, strings.Join(sorted, ", ")))
		}
	}
	if len(v.problems) == 0 {
		return nil
	}
	sortProblems(v.problems)
	return &ValidationError{Problems: v.problems}
}

// sortProblems puts problems in file order, those without a line last,
// keeping the order of problems on the same line.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
}

type validator struct {
	src      *source
	problems []Problem
}

// add records a problem about key, whose current value is value. The line
// is key's own when it came from the file, else that of the first of
// related (keys the rule also depends on) that did.
func (v *validator) add(key string, value any, msg string, related ...relatedKey) {
	p := Problem{Key: v.src.display(key), Message: msg}
	if f, l, ok := v.src.locate(key, formatValue(value)); ok {
		p.File, p.Line = f, l
	} else {
		for _, r := range related {
			if f, l, ok := v.src.locate(r.key, formatValue(r.value)); ok {
				p.File, p.Line = f, l
				break
			}
		}
	}
	v.problems = append(v.problems, p)
}

type relatedKey struct {
	key   string
	value any
}

func (v *validator) positive(key string, n int) {
	if n <= 0 {
		v.add(key, n, fmt.Sprintf("must be > 0 (got %d)", n))
	}
}

func (v *validator) notNegative(key string, n float64) {
	if n < 0 || math.IsNaN(n) {
		v.add(key, n, fmt.Sprintf("must be >= 0 (got %v)", n))
	}
}

func (v *validator) positiveDuration(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, d, fmt.Sprintf("must be > 0 (got %s)", formatDuration(d)))
	}
}

// redis checks the settings of a Redis server at prefix.
func (v *validator) redis(prefix string, r RedisConfig) {
	named := 0
	for _, s := range []string{r.Host, r.Addr, r.URL} {
		if s != "" {
			named++
		}
	}
	if named > 1 {
		key, val := r.serverKey(prefix)
		v.add(key, val, "give one of host (with port), addr or url")
	}
	if r.Port < 0 || r.Port > 65535 {
		v.add(prefix+".port", r.Port, fmt.Sprintf("must be 0 to 65535 (got %d)", r.Port))
	}
	if r.Port != 0 && r.Host == "" {
		v.add(prefix+".port", r.Port, "is the port of host: set host too, or give addr")
	}
	if r.Addr != "" {
		if _, _, err := net.SplitHostPort(r.Addr); err != nil {
			v.add(prefix+".addr", r.Addr, fmt.Sprintf("must be host:port (got %q)", r.Addr))
		}
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") {
		v.add(prefix+".url", r.URL, "must start with redis:// or rediss://")
	}
	if r.Database < 0 {
		v.add(prefix+".database", r.Database, fmt.Sprintf("must be >= 0 (got %d)", r.Database))
	}
	v.notNegative(prefix+".poolSize", float64(r.PoolSize))
	for _, d := range []struct {
		key string
		val time.Duration
	}{{".dialTimeout", r.DialTimeout}, {".readTimeout", r.ReadTimeout}, {".writeTimeout", r.WriteTimeout}} {
		if d.val < 0 {
			v.add(prefix+d.key, d.val, fmt.Sprintf("must be >= 0 (got %s)", formatDuration(d.val)))
		}
	}
	if (r.TLSCA != "" || r.TLSServerName != "") && !r.TLS {
		v.add(prefix+".tls", r.TLS, "must be true when tlsCA or tlsServerName is set")
	}
}

// schemaPattern is a schema PostgreSQL takes unquoted: a lower-case SQL
// identifier of at most 63 bytes.
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// postgres checks the settings of a PostgreSQL server at prefix. Secret
// values (url, password) are never quoted.
func (v *validator) postgres(prefix string, p PostgresConfig) {
	if p.URL != "" {
		if p.Host != "" || p.Port != 0 || p.User != "" || p.Password != "" || p.Database != "" {
			v.add(prefix+".url", p.URL, "give url, or host, port, user, password and database, not both")
		}
		if !strings.HasPrefix(p.URL, "postgres://") && !strings.HasPrefix(p.URL, "postgresql://") && !strings.Contains(p.URL, "=") {
			v.add(prefix+".url", p.URL, `must be a postgres:// or postgresql:// URL, or a connection string such as "host=db.example.com user=loom dbname=loom"`)
		}
	}
	if p.Port < 0 || p.Port > 65535 {
		v.add(prefix+".port", p.Port, fmt.Sprintf("must be 0 to 65535 (got %d)", p.Port))
	}
	if p.Port != 0 && p.Host == "" && p.URL == "" {
		v.add(prefix+".port", p.Port, "is the port of host: set host too")
	}
	if p.Host != "" && p.User == "" {
		v.add(prefix+".user", p.User, "must be set with host: the role Loom logs in as", relatedKey{prefix + ".host", p.Host})
	}
	if (p.User != "" || p.Password != "" || p.Database != "") && p.Host == "" && p.URL == "" {
		key, val := prefix+".user", p.User
		if p.User == "" {
			key, val = prefix+".database", p.Database
		}
		if p.User == "" && p.Database == "" {
			key, val = prefix+".password", p.Password
		}
		v.add(key, val, "names no server without host: set host (or give everything in url)")
	}
	if p.Schema != "" && !schemaPattern.MatchString(p.Schema) {
		v.add(prefix+".schema", p.Schema, fmt.Sprintf("must be a lower-case SQL identifier (letters, digits and '_', not starting with a digit) of at most 63 bytes (got %q)", p.Schema))
	}
	v.notNegative(prefix+".poolSize", float64(p.PoolSize))
	for _, d := range []struct {
		key string
		val time.Duration
	}{{".connectTimeout", p.ConnectTimeout}, {".queryTimeout", p.QueryTimeout}} {
		if d.val < 0 {
			v.add(prefix+d.key, d.val, fmt.Sprintf("must be >= 0 (got %s)", formatDuration(d.val)))
		}
	}
	if (p.TLSCA != "" || p.TLSServerName != "") && !p.TLS {
		v.add(prefix+".tls", p.TLS, "must be true when tlsCA or tlsServerName is set")
	}
}

// cosmos checks the settings of a Cosmos DB account at prefix. The key is
// never quoted.
func (v *validator) cosmos(prefix string, c CosmosConfig) {
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			v.add(prefix+".endpoint", c.Endpoint, fmt.Sprintf("must be an https:// URL such as https://myaccount.documents.azure.com:443/ (got %q)", c.Endpoint))
		}
		if c.Key == "" {
			v.add(prefix+".key", c.Key, "must be set with endpoint: the account's primary or secondary key", relatedKey{prefix + ".endpoint", c.Endpoint})
		}
	}
	if c.Key != "" {
		if _, err := base64.StdEncoding.DecodeString(c.Key); err != nil {
			v.add(prefix+".key", c.Key, "must be base64, as an account key is")
		}
		if c.Endpoint == "" {
			v.add(prefix+".key", c.Key, "names no account without endpoint: set endpoint")
		}
	}
	for _, r := range []struct{ key, val string }{
		{".database", c.Database}, {".leaseContainer", c.LeaseContainer}, {".journalContainer", c.JournalContainer},
	} {
		if r.val != "" && (len(r.val) > 255 || strings.ContainsAny(r.val, `/\?#`) || strings.HasSuffix(r.val, " ")) {
			v.add(prefix+r.key, r.val, fmt.Sprintf(`must be 1 to 255 characters without / \ ? or #, not ending with a space (got %q)`, r.val))
		}
	}
	lease, jrnl := c.LeaseContainer, c.JournalContainer
	if lease == "" {
		lease = "leases"
	}
	if jrnl == "" {
		jrnl = "journal"
	}
	if lease == jrnl {
		v.add(prefix+".journalContainer", c.JournalContainer, fmt.Sprintf("must differ from leaseContainer (both %q)", lease))
	}
	if c.CAFile != "" && c.InsecureSkipVerify {
		v.add(prefix+".insecureSkipVerify", c.InsecureSkipVerify, "must be false when caFile is set: check the certificate against caFile, or accept any (a test server's)", relatedKey{prefix + ".caFile", c.CAFile})
	}
	if c.Consistency != "" {
		v.oneOf(prefix+".consistency", c.Consistency, "Strong", "BoundedStaleness")
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{{".connectTimeout", c.ConnectTimeout}, {".requestTimeout", c.RequestTimeout}} {
		if d.val < 0 {
			v.add(prefix+d.key, d.val, fmt.Sprintf("must be >= 0 (got %s)", formatDuration(d.val)))
		}
	}
}

// serverKey is the key that names p's server, and its value, for problems.
func (p PostgresConfig) serverKey(prefix string) (string, string) {
	if p.Host != "" {
		return prefix + ".host", p.Host
	}
	return prefix + ".url", p.URL
}

// serverKey is the key that names r's server, and its value, for problems.
func (r RedisConfig) serverKey(prefix string) (string, string) {
	switch {
	case r.Host != "":
		return prefix + ".host", r.Host
	case r.Addr != "":
		return prefix + ".addr", r.Addr
	}
	return prefix + ".url", r.URL
}

// rabbitmq checks a RabbitMQ section.
// gossipKey checks a gossip key: standard base64 of 16, 24 or 32 bytes.
func (v *validator) gossipKey(key, value string) {
	if value == "" {
		return
	}
	k, err := base64.StdEncoding.DecodeString(value)
	switch {
	case err != nil:
		v.add(key, value, "must be standard base64 (loom-node keygen makes a key)")
	case len(k) != 16 && len(k) != 24 && len(k) != 32:
		v.add(key, value, fmt.Sprintf("must be 16, 24 or 32 bytes (AES-128, -192, -256) once decoded, not %d (loom-node keygen makes a 32-byte key)", len(k)))
	}
}

func (v *validator) rabbitmq(prefix string, r RabbitMQConfig) {
	if r.URL != "" {
		if r.Host != "" || r.Port != 0 || r.Username != "" || r.Password != "" || r.VHost != "" {
			v.add(prefix+".url", r.URL, "give url, or host, port, username, password and vhost, not both")
		}
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			v.add(prefix+".url", r.URL, "must be an amqp:// or amqps:// URL with a host, such as amqp://loom:secret@rabbit.example.com:5672/loom")
		}
	}
	if r.Port < 0 || r.Port > 65535 {
		v.add(prefix+".port", r.Port, fmt.Sprintf("must be 0 to 65535 (got %d)", r.Port))
	}
	if (r.Port != 0 || r.Username != "" || r.Password != "" || r.VHost != "") && r.Host == "" && r.URL == "" {
		v.add(prefix+".host", r.Host, "must be set with port, username, password or vhost: they name no broker without it")
	}
	if r.TLSCA != "" && !r.TLS && !strings.HasPrefix(r.URL, "amqps://") {
		v.add(prefix+".tls", r.TLS, "must be true (or the url amqps://) when tlsCA is set")
	}
	if r.Prefix != "" && !amqpNamePattern.MatchString(r.Prefix) {
		v.add(prefix+".prefix", r.Prefix, fmt.Sprintf("must be 1 to 64 letters, digits, '.', '_' or '-' (got %q)", r.Prefix))
	}
	v.positive(prefix+".fifoQueues", r.FIFOQueues)
	v.positive(prefix+".prefetch", r.Prefetch)
	if r.DeliveryLimit < 2 {
		v.add(prefix+".deliveryLimit", r.DeliveryLimit, fmt.Sprintf("must be >= 2: with 1, a node crashing during a delivery would dead-letter the message (got %d)", r.DeliveryLimit))
	}
}

// amqpNamePattern is what Loom allows in the prefix of its exchange and
// queue names.
var amqpNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// serverKey is the key that names r's broker, for problems about it.
func (r RabbitMQConfig) serverKey(prefix string) (string, string) {
	if r.Host != "" {
		return prefix + ".host", r.Host
	}
	return prefix + ".url", r.URL
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.add(key, value, fmt.Sprintf("must be one of %s (got %q)", strings.Join(allowed, ", "), value))
	}
}

// messagePolicy checks the default message policy.
func (v *validator) messagePolicy(prefix string, p MessagePolicyConfig) {
	v.oneOf(prefix+".queueMode", p.QueueMode, QueueModeFIFO, QueueModeStandard)
	v.maxRetries(prefix+".maxRetries", p.MaxRetries)
	v.positiveDuration(prefix+".initialBackoff", p.InitialBackoff)
	v.backoffs(prefix, p)
	v.jitter(prefix+".jitter", p.Jitter)
}

func (v *validator) maxRetries(key string, n int) {
	if n < 0 {
		v.add(key, n, fmt.Sprintf("must be >= 0 (got %d)", n))
	}
}

// backoffs checks that maxBackoff is not below initialBackoff in the
// effective policy p.
func (v *validator) backoffs(prefix string, p MessagePolicyConfig) {
	if p.MaxBackoff < p.InitialBackoff {
		v.add(prefix+".maxBackoff", p.MaxBackoff, fmt.Sprintf("must be >= initialBackoff %s (got %s)", formatDuration(p.InitialBackoff), formatDuration(p.MaxBackoff)))
	}
}

func (v *validator) jitter(key string, f float64) {
	if !(f >= 0 && f <= 1) {
		v.add(key, f, fmt.Sprintf("must be between 0 and 1 (got %v)", f))
	}
}

func (v *validator) validate(c *Config) {
	n := c.Node
	if !nodeIDPattern.MatchString(n.ID) {
		v.add("node.id", n.ID, fmt.Sprintf("must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (got %q)", n.ID))
	}
	if n.DataDir == "" {
		v.add("node.dataDir", n.DataDir, "must not be empty")
	}
	if _, err := netip.ParseAddr(n.Bind); err != nil {
		v.add("node.bind", n.Bind, fmt.Sprintf("must be an IP address such as 127.0.0.1, 0.0.0.0 or :: (got %q)", n.Bind))
	}
	// Each port in range; two equal non-zero ports are a problem on the
	// later key (in the order of NodeConfig and of the example file), placed
	// at the earlier key's line when the later one is not in the file.
	seen := map[int]string{}
	for _, pp := range []struct {
		key  string
		port int
	}{{"node.httpPort", n.HTTPPort}, {"node.grpcPort", n.GRPCPort}, {"node.gossipPort", n.GossipPort}, {"node.raftPort", n.RaftPort}} {
		if pp.port < 0 || pp.port > 65535 {
			v.add(pp.key, pp.port, fmt.Sprintf("must be between 0 and 65535 (got %d)", pp.port))
			continue
		}
		if pp.port == 0 {
			continue // each 0 picks its own free port
		}
		if other, dup := seen[pp.port]; dup {
			v.add(pp.key, pp.port, fmt.Sprintf("must differ from %s (both %d; 0 picks a free port)", other, pp.port),
				relatedKey{other, pp.port})
			continue
		}
		seen[pp.port] = pp.key
	}
	if n.Advertise != "" {
		if a, err := netip.ParseAddr(n.Advertise); err != nil {
			v.add("node.advertise", n.Advertise, fmt.Sprintf("must be an IP address such as 10.0.0.7, or \"\" to use node.bind (got %q)", n.Advertise))
		} else if a.IsUnspecified() {
			v.add("node.advertise", n.Advertise, fmt.Sprintf("must be an address other nodes can reach, not %s", n.Advertise))
		}
	}
	v.positiveDuration("node.shutdownTimeout", n.ShutdownTimeout)
	if n.MaxPayloadBytes <= 0 || n.MaxPayloadBytes > MaxPayloadLimit {
		v.add("node.maxPayloadBytes", n.MaxPayloadBytes, fmt.Sprintf("must be > 0 and <= %d (256 MiB) (got %d)", MaxPayloadLimit, n.MaxPayloadBytes))
	}

	p := c.ActorPools.Default
	v.positive("actorPools.default.maxSize", p.MaxSize)
	if p.IdleTimeout < 0 {
		v.add("actorPools.default.idleTimeout", p.IdleTimeout, fmt.Sprintf("must be >= 0 (got %s)", formatDuration(p.IdleTimeout)))
	}
	v.oneOf("actorPools.default.evictionPolicy", p.EvictionPolicy, EvictionLRU, EvictionReject)
	v.positive("actorPools.default.idempotencyKeys", p.IdempotencyKeys)
	v.positiveDuration("actorPools.default.idempotencyRetention", p.IdempotencyRetention)
	v.positive("actorPools.default.maxQueue", p.MaxQueue)
	v.notNegative("actorPools.default.maxActivating", float64(p.MaxActivating))
	v.notNegative("actorPools.default.rateLimit", p.RateLimit)
	v.notNegative("actorPools.default.rateBurst", float64(p.RateBurst))
	if p.Reentrant {
		v.add("actorPools.default.reentrant", p.Reentrant, "must be set per type, under actorPools.types.<type>.reentrant: reentrancy changes what a turn commits, so a type opts in by name")
	}
	for _, name := range sortedKeys(c.ActorPools.Types) {
		o := c.ActorPools.Types[name]
		prefix := "actorPools.types." + name
		if strings.TrimSpace(name) == "" {
			v.add(prefix, name, "the actor type name must not be empty")
		}
		if o.MaxSize != nil {
			v.positive(prefix+".maxSize", *o.MaxSize)
		}
		if o.IdleTimeout != nil && *o.IdleTimeout < 0 {
			v.add(prefix+".idleTimeout", *o.IdleTimeout, fmt.Sprintf("must be >= 0 (got %s)", formatDuration(*o.IdleTimeout)))
		}
		if o.EvictionPolicy != nil {
			v.oneOf(prefix+".evictionPolicy", *o.EvictionPolicy, EvictionLRU, EvictionReject)
		}
		if o.IdempotencyKeys != nil {
			v.positive(prefix+".idempotencyKeys", *o.IdempotencyKeys)
		}
		if o.IdempotencyRetention != nil {
			v.positiveDuration(prefix+".idempotencyRetention", *o.IdempotencyRetention)
		}
		if o.MaxQueue != nil {
			v.positive(prefix+".maxQueue", *o.MaxQueue)
		}
		if o.MaxActivating != nil {
			v.notNegative(prefix+".maxActivating", float64(*o.MaxActivating))
		}
		if o.RateLimit != nil {
			v.notNegative(prefix+".rateLimit", *o.RateLimit)
		}
		if o.RateBurst != nil {
			v.notNegative(prefix+".rateBurst", float64(*o.RateBurst))
		}
	}

	j := c.Journal
	v.oneOf("journal.backend", j.Backend, JournalBBolt, JournalMemory, JournalRaft, JournalRedis, JournalPostgres, JournalCosmos)
	if j.Backend == JournalRedis && !j.Redis.Set() {
		v.add("journal.backend", j.Backend, "redis needs a server: set journal.redis (stateAdapter) host, addr or url")
	}
	v.redis("journal.redis", j.Redis)
	if j.Backend == JournalPostgres && !j.Postgres.Set() {
		v.add("journal.backend", j.Backend, "postgres needs a server: set journal.postgres (stateAdapter) host or url")
	}
	v.postgres("journal.postgres", j.Postgres)
	if j.Backend == JournalPostgres && j.Postgres.PoolSize > 0 && j.Postgres.PoolSize < 3 {
		v.add("journal.postgres.poolSize", j.Postgres.PoolSize, fmt.Sprintf("must be 0 or at least 3: the journal sends its batches on 2 connections and reads on others (got %d)", j.Postgres.PoolSize))
	}
	if j.Backend == JournalCosmos && !j.Cosmos.Set() {
		v.add("journal.backend", j.Backend, "cosmos needs an account: set journal.cosmos (stateAdapter) endpoint and key")
	}
	v.cosmos("journal.cosmos", j.Cosmos)
	if j.SnapshotEvery < 0 {
		v.add("journal.snapshotEvery", j.SnapshotEvery, fmt.Sprintf("must be >= 0 (got %d)", j.SnapshotEvery))
	}

	m := c.Messaging
	if mb := m.Backend; mb != "" && mb != j.Backend && mb != MessagingRabbitMQ && !(mb == MessagingBullMQ && j.Backend == JournalRedis) {
		v.add("messaging.backend", m.Backend, fmt.Sprintf("must be empty, rabbitmq or equal journal.backend (%q): a message is acknowledged in its actor's journal append, so the queues live with the journals or in a broker", j.Backend))
	}
	v.rabbitmq("messaging.rabbitmq", m.RabbitMQ)
	switch {
	case m.Backend == MessagingRabbitMQ && !m.RabbitMQ.Set():
		v.add("messaging.backend", m.Backend, "rabbitmq needs a broker: set messaging.rabbitmq url or host (messageAdapter)")
	case m.Backend == MessagingRabbitMQ && j.Backend == JournalCosmos:
		v.add("messaging.backend", m.Backend, "rabbitmq needs a journal that records the ids of the messages it applied (each delivery's turn does), and journal.backend cosmos does not: use raft, redis, postgres, bbolt or memory journals with it")
	case m.Backend != MessagingRabbitMQ && m.RabbitMQ.Set():
		key, val := m.RabbitMQ.serverKey("messaging.rabbitmq")
		v.add(key, val, fmt.Sprintf("names a broker, but messaging.backend is %q: set it to rabbitmq, or leave messaging.rabbitmq out", m.Backend))
	}
	if m.Backend == JournalCosmos {
		v.add("messaging.backend", m.Backend, "cosmos keeps no message queues: a Cosmos DB journal is not a queue store, so a node on it has no durable messaging (Send fails); leave messaging.backend empty")
	}
	v.messagePolicy("messaging.default", m.Default)
	for _, name := range sortedKeys(m.Types) {
		o, prefix := m.Types[name], "messaging.types."+name
		if strings.TrimSpace(name) == "" {
			v.add(prefix, name, "the actor type name must not be empty")
		}
		if o.QueueMode != nil {
			v.oneOf(prefix+".queueMode", *o.QueueMode, QueueModeFIFO, QueueModeStandard)
		}
		if o.MaxRetries != nil {
			v.maxRetries(prefix+".maxRetries", *o.MaxRetries)
		}
		if o.InitialBackoff != nil {
			v.positiveDuration(prefix+".initialBackoff", *o.InitialBackoff)
		}
		if o.MaxBackoff != nil || o.InitialBackoff != nil {
			v.backoffs(prefix, m.For(name))
		}
		if o.Jitter != nil {
			v.jitter(prefix+".jitter", *o.Jitter)
		}
	}
	v.positiveDuration("messaging.maxDelay", m.MaxDelay)
	v.positiveDuration("messaging.idRetention", m.IDRetention)
	v.positiveDuration("messaging.degradedAge", m.DegradedAge)
	v.positive("messaging.workers", m.Workers)
	v.redis("messaging.redis", m.Redis)
	if m.Redis.Set() && m.Redis != j.Redis {
		key, val := m.Redis.serverKey("messaging.redis")
		v.add(key, val, "must name the journal's Redis, or be left out: a message is acknowledged in its actor's journal append, so the queues live with the journals")
	}
	v.postgres("messaging.postgres", m.Postgres)
	if m.Postgres.Set() && m.Postgres != j.Postgres {
		key, val := m.Postgres.serverKey("messaging.postgres")
		v.add(key, val, "must name the journal's PostgreSQL server, or be left out: a message is acknowledged in its actor's journal append, so the queues live with the journals")
	}

	co := c.Coordination
	v.oneOf("coordination.backend", co.Backend, CoordinationMemory, CoordinationRaft, CoordinationRedis, CoordinationPostgres, CoordinationCosmos)
	v.redis("coordination.redis", co.Redis)
	if co.Backend == CoordinationRedis && !c.CoordinationRedis().Set() {
		v.add("coordination.backend", co.Backend, "redis needs a server: set coordination.redis (coordinationAdapter) or journal.redis (stateAdapter) host, addr or url")
	}
	v.postgres("coordination.postgres", co.Postgres)
	if co.Backend == CoordinationPostgres && !c.CoordinationPostgres().Set() {
		v.add("coordination.backend", co.Backend, "postgres needs a server: set coordination.postgres (coordinationAdapter) or journal.postgres (stateAdapter) host or url")
	}
	v.cosmos("coordination.cosmos", co.Cosmos)
	if co.Backend == CoordinationCosmos && !c.CoordinationCosmos().Set() {
		v.add("coordination.backend", co.Backend, "cosmos needs an account: set coordination.cosmos (coordinationAdapter) or journal.cosmos (stateAdapter) endpoint and key")
	}
	if j.Backend == JournalCosmos && co.Backend == CoordinationMemory {
		v.add("journal.backend", j.Backend,
			"cosmos needs coordination.backend cosmos or raft: a Cosmos DB journal refuses fencing tokens lower than the highest it has seen, and a memory coordinator's tokens start again with each process, so after a restart every write would be refused",
			relatedKey{"coordination.backend", co.Backend})
	}
	if j.Backend == JournalRedis && co.Backend == CoordinationMemory {
		v.add("journal.backend", j.Backend,
			"redis needs coordination.backend redis or raft: a Redis journal refuses fencing tokens lower than the highest it has seen, and a memory coordinator's tokens start again with each process, so after a restart every write would be refused",
			relatedKey{"coordination.backend", co.Backend})
	}
	if j.Backend == JournalPostgres && co.Backend == CoordinationMemory {
		v.add("journal.backend", j.Backend,
			"postgres needs coordination.backend postgres or raft: a PostgreSQL journal refuses fencing tokens lower than the highest it has seen, and a memory coordinator's tokens start again with each process, so after a restart every write would be refused",
			relatedKey{"coordination.backend", co.Backend})
	}
	for _, shared := range []string{CoordinationRedis, CoordinationPostgres, CoordinationCosmos} {
		if co.Backend == shared && j.Backend != shared {
			v.add("coordination.backend", co.Backend, sharedCoordinatorProblem(shared, j.Backend),
				relatedKey{"journal.backend", j.Backend})
		}
	}
	if j.Backend == JournalRaft && co.Backend != CoordinationRaft {
		v.add("journal.backend", j.Backend,
			fmt.Sprintf("raft needs coordination.backend raft: the journal is replicated through the coordinator's Raft group (got coordination.backend %q)", co.Backend),
			relatedKey{"coordination.backend", co.Backend})
	}

	// Rules for a node in a cluster. Their problems are placed at the line
	// of the key that made the node clustered when the key itself is not
	// in the file (a default).
	cl := c.Cluster
	var why []string // what makes the node clustered, for messages
	var cause []relatedKey
	if len(cl.JoinAddrs()) > 0 {
		why = append(why, "cluster.join is set")
		cause = append(cause, relatedKey{"cluster.join", cl.Join})
	}
	if cl.BootstrapExpect > 1 {
		why = append(why, fmt.Sprintf("cluster.bootstrapExpect is %d", cl.BootstrapExpect))
		cause = append(cause, relatedKey{"cluster.bootstrapExpect", cl.BootstrapExpect})
	}
	if len(why) > 0 {
		because := strings.Join(why, " and ")
		switch co.Backend {
		case CoordinationMemory:
			v.add("coordination.backend", co.Backend,
				fmt.Sprintf("a memory coordinator cannot be shared between nodes; use raft (%s)", because),
				cause...)
		}
		if co.Backend != CoordinationMemory && j.Backend != JournalRaft && j.Backend != JournalRedis && j.Backend != JournalPostgres && j.Backend != JournalCosmos {
			v.add("journal.backend", j.Backend,
				fmt.Sprintf("a cluster needs journal.backend raft, redis, postgres or cosmos: an actor's journal must be readable on whichever node owns it next (%s)", because),
				append([]relatedKey{{"coordination.backend", co.Backend}}, cause...)...)
		}
		if n.Advertise == "" {
			if a, err := netip.ParseAddr(n.Bind); err == nil && a.IsUnspecified() {
				v.add("node.advertise", n.Advertise,
					fmt.Sprintf("must be set when node.bind is %s in a cluster: other nodes need an address they can reach (%s)", n.Bind, because),
					append([]relatedKey{{"node.bind", n.Bind}}, cause...)...)
			}
		}
	}
	for _, a := range cl.JoinAddrs() {
		if msg := checkHostPort(a, "10.0.0.5:7946"); msg != "" {
			v.add("cluster.join", cl.Join, fmt.Sprintf("%s (got %q)", msg, a))
		}
	}
	if cl.BootstrapExpect < 1 {
		v.add("cluster.bootstrapExpect", cl.BootstrapExpect, fmt.Sprintf("must be >= 1 (got %d)", cl.BootstrapExpect))
	}
	if cl.Voters < 1 || cl.Voters > 7 || cl.Voters%2 == 0 {
		v.add("cluster.voters", cl.Voters, fmt.Sprintf("must be odd and between 1 and 7 (got %d): an even count tolerates no more failures than one fewer", cl.Voters))
	}
	v.positiveDuration("cluster.deadVoterTimeout", cl.DeadVoterTimeout)
	v.oneOf("cluster.raftLogStore", cl.RaftLogStore, RaftLogAuto, RaftLogWAL, RaftLogBolt)
	if cl.RaftGroups < 1 || cl.RaftGroups > 64 {
		v.add("cluster.raftGroups", cl.RaftGroups, fmt.Sprintf("must be between 1 and 64 (got %d)", cl.RaftGroups))
	}
	v.oneOf("cluster.groupMembers", cl.GroupMembers, GroupMembersAll, GroupMembersVoters)
	v.positiveDuration("cluster.joinTimeout", cl.JoinTimeout)
	v.positiveDuration("cluster.rejoinInterval", cl.RejoinInterval)
	v.oneOf("cluster.gossip", cl.Gossip, GossipLAN, GossipLocal)
	v.gossipKey("cluster.gossipKey", cl.GossipKey)
	v.positiveDuration("coordination.sessionTTL", co.SessionTTL)
	switch {
	case co.RenewInterval <= 0:
		v.positiveDuration("coordination.renewInterval", co.RenewInterval)
	case co.SessionTTL > 0 && co.RenewInterval >= co.SessionTTL/2:
		v.add("coordination.renewInterval", co.RenewInterval,
			fmt.Sprintf("must be < coordination.sessionTTL/2 (%s) so that one lost renewal does not lose the session (got %s)",
				formatDuration(co.SessionTTL/2), formatDuration(co.RenewInterval)),
			relatedKey{"coordination.sessionTTL", co.SessionTTL})
	}

	t := c.Tracing
	v.positiveDuration("tracing.maxTraceAge", t.MaxTraceAge)
	v.positive("tracing.maxSpans", t.MaxSpans)
	if t.OTLPEndpoint != "" {
		if msg := checkHostPort(t.OTLPEndpoint, "localhost:4317"); msg != "" {
			v.add("tracing.otlpEndpoint", t.OTLPEndpoint, fmt.Sprintf("%s (got %q)", msg, t.OTLPEndpoint))
		}
	}
	for _, name := range sortedKeys(t.OTLPHeaders) {
		// Never print the value: it is secret.
		if !validHeaderName(name) {
			v.add("tracing.otlpHeaders."+name, t.OTLPHeaders[name], fmt.Sprintf("invalid header name %q", name))
		}
	}

	v.tls(c.TLS)
	v.auth(c)

	l := c.Logging
	v.oneOf("logging.level", l.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)
	v.oneOf("logging.format", l.Format, LogFormatText, LogFormatJSON)
}

// tls checks the tls section: the keys that go together, and that every
// file named can be read (a problem names the file, never a key's
// contents).
func (v *validator) tls(t TLSConfig) {
	v.oneOf("tls.minVersion", t.MinVersion, TLSVersion12, TLSVersion13)
	switch {
	case t.Cert != "" && t.Key == "":
		v.add("tls.cert", t.Cert, "needs tls.key, the file of the certificate's private key")
	case t.Key != "" && t.Cert == "":
		v.add("tls.key", t.Key, "needs tls.cert, the file of the key's certificate")
	}
	if t.VerifyIncoming && t.CA == "" {
		v.add("tls.verifyIncoming", t.VerifyIncoming, "needs tls.ca: peers' certificates are checked against that CA (create one with `loom-node tls ca create`)")
	}
	if t.VerifyOutgoing && t.CA == "" {
		v.add("tls.verifyOutgoing", t.VerifyOutgoing, "needs tls.ca: the nodes' certificates are checked against that CA")
	}
	if t.Cert == "" && t.Key == "" {
		for _, k := range []struct {
			key string
			val any
			set bool
		}{{"tls.verifyIncoming", t.VerifyIncoming, t.VerifyIncoming}, {"tls.verifyOutgoing", t.VerifyOutgoing, t.VerifyOutgoing}, {"tls.serverName", t.ServerName, t.ServerName != ""}} {
			if k.set {
				v.add(k.key, k.val, "needs tls.cert and tls.key: TLS is on only when the node has a certificate")
				break
			}
		}
	}
	pems := map[string][]byte{}
	for _, f := range []struct{ key, path, what string }{
		{"tls.ca", t.CA, "CA certificate"}, {"tls.cert", t.Cert, "certificate"}, {"tls.key", t.Key, "private key"},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			v.add(f.key, f.path, fmt.Sprintf("cannot read the %s file: %v", f.what, pathErr(err)))
			continue
		}
		pems[f.key] = b
	}
	if b, ok := pems["tls.ca"]; ok && !x509.NewCertPool().AppendCertsFromPEM(b) {
		v.add("tls.ca", t.CA, fmt.Sprintf("%s holds no PEM certificate", t.CA))
	}
	cert, okc := pems["tls.cert"]
	key, okk := pems["tls.key"]
	if okc && okk {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			// crypto/tls's messages never quote the key.
			v.add("tls.key", t.Key, fmt.Sprintf("%s and %s are not a certificate and its key: %v", t.Cert, t.Key, err))
		}
	}
}

// pathErr is err without the path a *fs.PathError repeats (the problem
// names the file already).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sharedCoordinatorProblem says why a coordinator kept in a server the
// nodes share (redis, postgres) cannot go with journal.backend journal.
func sharedCoordinatorProblem(co, journal string) string {
	name := map[string]string{CoordinationRedis: "Redis", CoordinationPostgres: "PostgreSQL", CoordinationCosmos: "Cosmos DB"}[co]
	if journal == JournalRedis || journal == JournalPostgres || journal == JournalCosmos {
		return fmt.Sprintf("%s needs journal.backend %s: fencing tokens and the journals they fence must be kept in one store, so that a loss of acknowledged writes (a failover to an asynchronous replica, Redis's appendfsync everysec) takes both back together; split over two stores, one can forget what the other remembers, and an owner the coordinator has replaced could write again (got journal.backend %q)", co, co, journal)
	}
	return fmt.Sprintf("%s needs journal.backend %s: the nodes that share a %s coordinator form one cluster, and an actor's journal must be readable on whichever node owns it next (got journal.backend %q)", co, co, name, journal)
}

// checkHostPort returns "" if s is host:port with a non-empty host and a
// port in 1..65535, else what is wrong; example is shown in the message.
func checkHostPort(s, example string) string {
	want := "must be host:port, such as " + example
	if strings.Contains(s, "://") {
		return want + ", without a scheme"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return want
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return want + ", with a port between 1 and 65535"
	}
	return ""
}

// validHeaderName reports whether s is an HTTP header field name (an RFC
// 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// formatValue formats a config value the same way when it is read and when
// it is validated, so the two can be compared.
func formatValue(v any) string {
	switch v := v.(type) {
	case time.Duration:
		return formatDuration(v)
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// formatDuration prints d like time.Duration.String without trailing zero
// units: "5m" rather than "5m0s", "1h30m" rather than "1h30m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
