package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Path returns the config file to use: flagValue (the --config flag) if it
// is not empty, else $LOOM_CONFIG_PATH, else "" (no file: the defaults).
func Path(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv(EnvConfigPath)
}

// Load reads and parses the config file at path; see Parse. An empty path
// returns Default(), validated. A file that cannot be read is an error
// naming the file (errors.Is(err, fs.ErrNotExist) for a missing one).
func Load(path string) (Config, error) {
	return LoadFrom(path, Default())
}

// LoadFrom is Load with base in place of Default(): the file's keys
// override base's values (`loom-node dev` starts from Dev()).
func LoadFrom(path string, base Config) (Config, error) {
	if path == "" {
		return base, base.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("config: %w", err) // *fs.PathError names the file
	}
	return parse(data, path, base, os.LookupEnv)
}

// Parse builds a Config from the text of a config file; filename is only
// used in problems. It starts from Default() and overlays the keys present
// in data, in three steps:
//
//  1. Environment variables are expanded in the raw text (see the package
//     documentation for the syntax).
//  2. The YAML is decoded. Unknown keys, duplicate keys, keys without a
//     value and values of the wrong type are problems.
//  3. The result is validated (see Config.Validate).
//
// Every problem found by all three steps is returned together, in a
// *ValidationError, with the config as far as it could be decoded.
func Parse(data []byte, filename string) (Config, error) {
	return parse(data, filename, Default(), os.LookupEnv)
}

func parse(data []byte, filename string, c Config, lookup func(string) (string, bool)) (Config, error) {
	expanded, envProblems := expandEnv(data, filename, lookup)

	d := decoder{
		src:    &source{file: filename, keys: map[string]origin{}},
		failed: map[string]bool{},
	}
	d.document(expanded, reflect.ValueOf(&c).Elem())
	c.src = d.src

	later := d.problems
	if err := c.Validate(); err != nil {
		for _, p := range err.(*ValidationError).Problems {
			if !d.failed[p.Key] { // already reported as undecodable
				later = append(later, p)
			}
		}
	}
	problems := append(envProblems, dropFollowOnProblems(later, envProblems)...)
	if len(problems) == 0 {
		return c, nil
	}
	sortProblems(problems)
	return c, &ValidationError{Problems: problems}
}

// dropFollowOnProblems removes the problems on a line where an environment
// variable could not be expanded: they follow from that one.
func dropFollowOnProblems(problems, envProblems []Problem) []Problem {
	envLines := map[int]bool{}
	for _, p := range envProblems {
		envLines[p.Line] = true
	}
	var kept []Problem
	for _, p := range problems {
		if !envLines[p.Line] {
			kept = append(kept, p)
		}
	}
	return kept
}

// decoder overlays a YAML document on a Config, collecting problems
// instead of stopping at the first.
type decoder struct {
	src      *source
	problems []Problem
	failed   map[string]bool // keys whose value could not be decoded
}

func (d *decoder) problem(line int, key, format string, args ...any) {
	key = d.src.display(key)
	d.problems = append(d.problems, Problem{File: d.src.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
	if key != "" {
		d.failed[key] = true
	}
}

var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) document(data []byte, target reflect.Value) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // empty file: all defaults
		}
		line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlErrorLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		d.problem(line, "", "invalid YAML: %s", msg)
		return
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		d.problem(next.Line, "", "a config file must hold one YAML document, not several")
	}
	if len(doc.Content) == 0 {
		return
	}
	d.value(doc.Content[0], target, "", false)
}

var durationType = reflect.TypeFor[time.Duration]()

// value decodes n into v, whose key path is path. secret values are never
// quoted in problems.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, secret bool) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	isNull := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	t := v.Type()

	// Sections: a missing value is an empty section, which changes nothing.
	if t.Kind() == reflect.Struct || t.Kind() == reflect.Map {
		if isNull {
			d.record(path, n.Line, "")
			return
		}
		if n.Kind != yaml.MappingNode {
			d.problem(n.Line, path, "must be a mapping of keys to values (got %s)", describe(n, secret))
			return
		}
		d.record(path, n.Line, "")
		if t.Kind() == reflect.Struct {
			d.structure(n, v, path)
		} else {
			d.mapping(n, v, path, secret)
		}
		return
	}

	// Lists of single values (auth token scopes): each element is decoded
	// as a value of its own, at its own line, "key[i]" in problems.
	if t.Kind() == reflect.Slice && !isNull {
		if n.Kind != yaml.SequenceNode {
			d.problem(n.Line, path, "must be a list such as [a, b] (got %s)", describe(n, secret))
			return
		}
		d.record(path, n.Line, "")
		out := reflect.MakeSlice(t, 0, len(n.Content))
		for i, e := range n.Content {
			elem := reflect.New(t.Elem()).Elem()
			before := len(d.problems)
			d.value(e, elem, fmt.Sprintf("%s[%d]", path, i), secret)
			if len(d.problems) == before {
				out = reflect.Append(out, elem)
			}
		}
		v.Set(out)
		return
	}
	if isNull {
		hint := "remove the key to use the default"
		if strings.HasPrefix(path, "actorPools.types.") {
			hint = "remove the key to inherit from actorPools.default"
		}
		if t.Kind() == reflect.String || t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.String {
			hint = `write "" for an empty string, or ` + hint
		}
		d.problem(n.Line, path, "has no value (%s)", hint)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.problem(n.Line, path, "must be a single value, not a %s", kindName(n.Kind))
		return
	}

	if t.Kind() == reflect.Pointer { // a PoolOverride field: set means non-nil
		elem := reflect.New(t.Elem())
		if d.scalar(n, elem.Elem(), path, secret) {
			v.Set(elem)
		}
		return
	}
	d.scalar(n, v, path, secret)
}

// scalar decodes the scalar n into v and reports whether it could.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string, secret bool) bool {
	tag := n.ShortTag()
	quotedHint := ""
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		quotedHint = "; remove the quotes"
	}
	switch {
	case v.Type() == durationType:
		dur, ok := parseDuration(n)
		if !ok {
			d.problem(n.Line, path, `must be a duration such as "30s", "5m" or "1h30m", or a whole number of milliseconds (got %s)`, describe(n, secret))
			return false
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		// Any scalar is accepted as a string: 123 or true are read as written.
		v.SetString(n.Value)
	case v.Kind() == reflect.Int:
		var i int
		if tag != "!!int" || n.Decode(&i) != nil {
			if tag == "!!int" {
				d.problem(n.Line, path, "must be an integer that fits in 64 bits (got %s)", describe(n, secret))
			} else {
				d.problem(n.Line, path, "must be an integer (got %s%s)", describe(n, secret), quotedHint)
			}
			return false
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.problem(n.Line, path, "must be a number such as 250 or 12.5 (got %s%s)", describe(n, secret), quotedHint)
			return false
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			d.problem(n.Line, path, "must be true or false (got %s%s)", describe(n, secret), quotedHint)
			return false
		}
		v.SetBool(b)
	default:
		// Unreachable for the types in Config; a guard for future fields.
		d.problem(n.Line, path, "cannot decode a value of Go type %s", v.Type())
		return false
	}
	d.record(path, n.Line, formatValue(v.Interface()))
	return true
}

// parseDuration reads a Go duration string, or a plain integer as
// milliseconds (the seed's idleTimeout: 300000).
func parseDuration(n *yaml.Node) (time.Duration, bool) {
	if n.ShortTag() == "!!int" {
		var ms int64
		if n.Decode(&ms) != nil || ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
			return 0, false
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	dur, err := time.ParseDuration(n.Value)
	return dur, err == nil
}

var actorPoolsType = reflect.TypeFor[ActorPoolsConfig]()

// structure decodes a mapping into the struct v, field by yaml tag.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	if t == actorPoolsType {
		d.poolTypesAtTop(n, v, path, fields)
	}
	var seed []*yaml.Node // the seed's adapter sections, read last: key, value, ...
	d.eachKey(n, path, func(key string, keyNode, valNode *yaml.Node) {
		childPath := joinPath(path, key)
		i, ok := fields[key]
		if !ok && t == actorPoolsType {
			return // an actor type in the seed's shape: poolTypesAtTop's
		}
		if _, isSeed := seedSections[key]; !ok && isSeed && t == configType {
			seed = append(seed, keyNode, valNode)
			return
		}
		if !ok {
			msg := "unknown key"
			if s := suggest(key, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (allowed: " + strings.Join(sortedKeys(fields), ", ") + ")"
			}
			d.problem(keyNode.Line, childPath, "%s", msg)
			return
		}
		f := t.Field(i)
		d.value(valNode, v.Field(i), childPath, f.Tag.Get("loom") == "secret")
	})
	// stateAdapter first: a section without a type of its own follows the
	// journal's backend (see seedServer).
	for _, first := range []bool{true, false} {
		for i := 0; i+1 < len(seed); i += 2 {
			if (seed[i].Value == "stateAdapter") == first {
				d.seedSection(seed[i], seed[i+1], v)
			}
		}
	}
}

var configType = reflect.TypeFor[Config]()

// seedSections are the seed's adapter sections, read into today's keys:
// each of a section's keys names the key it sets; "*" is the section
// whose keys the others are (the backend's server): the Redis server,
// or "*" + a type (the PostgreSQL server, the RabbitMQ broker) when the
// section's type (or, without one, the backend it configures) is that
// type.
var seedSections = map[string]map[string]string{
	"coordinationAdapter": {"type": "coordination.backend", "lockTimeout": "coordination.sessionTTL",
		"renewInterval": "coordination.renewInterval", "*": "coordination.redis", "*postgres": "coordination.postgres", "*cosmos": "coordination.cosmos"},
	"stateAdapter": {"type": "journal.backend", "*": "journal.redis", "*postgres": "journal.postgres", "*cosmos": "journal.cosmos"},
	"messageAdapter": {"type": "messaging.backend", "queueMode": "messaging.default.queueMode",
		"maxRetries": "messaging.default.maxRetries", "*": "messaging.redis", "*postgres": "messaging.postgres",
		"*rabbitmq": "messaging.rabbitmq"},
}

// seedServer is the key of the server a seed section's other keys set
// (targets["*"] or targets["*" + type]): the type's server when the
// section's type has one of its own (postgres, rabbitmq), or, when it has
// no type, when the backend it configures (as the file set it so far)
// does; else the Redis server.
func seedServer(n *yaml.Node, targets map[string]string, c reflect.Value) string {
	typ := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, val := n.Content[i], n.Content[i+1]; k.Value == "type" && val.Kind == yaml.ScalarNode {
			typ = val.Value
		}
	}
	if typ == "" {
		b, _ := lookupPath(c, targets["type"])
		typ = b.String()
		if typ == "" && targets["type"] == "messaging.backend" {
			j, _ := lookupPath(c, "journal.backend")
			typ = j.String() // the queues live with the journals
		}
	}
	if t, ok := targets["*"+typ]; ok && typ != "" {
		return t
	}
	if t, ok := targets["*cosmos"]; ok && typ == JournalCosmos {
		return t
	}
	return targets["*"]
}

// seedSection reads one of the seed's adapter sections (k: its key, n: its
// value) into the keys it stands for, in the Config c. A key that the file
// also sets under its own name is a problem; problems name the key as
// written.
func (d *decoder) seedSection(k, n *yaml.Node, c reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	section := k.Value
	targets := seedSections[section]
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, section, "must be a mapping of keys to values (got %s)", describe(n, false))
		return
	}
	serverPath := seedServer(n, targets, c)
	server, _ := lookupPath(c, serverPath)
	serverKeys := map[string]int{}
	for i := range server.Type().NumField() {
		if name := yamlName(server.Type().Field(i)); name != "" {
			serverKeys[name] = i
		}
	}
	d.eachKey(n, section, func(key string, keyNode, valNode *yaml.Node) {
		written := joinPath(section, key)
		target, ok := targets[key]
		if !ok || strings.HasPrefix(key, "*") {
			if _, isServer := serverKeys[key]; !isServer {
				allowed := map[string]int{}
				for name := range targets {
					if !strings.HasPrefix(name, "*") {
						allowed[name] = 0
					}
				}
				for name := range serverKeys {
					allowed[name] = 0
				}
				msg := "unknown key (allowed: " + strings.Join(sortedKeys(allowed), ", ") + ")"
				if s := suggest(key, allowed); s != "" {
					msg = fmt.Sprintf("unknown key (did you mean %q?)", s)
				}
				d.problem(keyNode.Line, written, "%s", msg)
				return
			}
			target = joinPath(serverPath, key)
			if d.src.written == nil {
				d.src.written = map[string]string{}
			}
			if _, ok := d.src.written[serverPath]; !ok {
				// A problem about a server key the section leaves out
				// (a user beside its host) names it in the section too.
				d.src.written[serverPath] = section
			}
		}
		if d.src.written == nil {
			d.src.written = map[string]string{}
		}
		if o, dup := d.src.keys[target]; dup {
			d.problem(keyNode.Line, written, "sets %s, which line %d sets too: set it once", target, o.line)
			return
		}
		d.src.written[target] = written
		field, secret := lookupPath(c, target)
		d.value(valNode, field, target, secret)
	})
}

// lookupPath returns the field of the struct v at the dotted key path, and
// whether it is secret. The path is one of seedSections', always valid.
func lookupPath(v reflect.Value, path string) (reflect.Value, bool) {
	secret := false
	for name := range strings.SplitSeq(path, ".") {
		t := v.Type()
		for i := range t.NumField() {
			if yamlName(t.Field(i)) == name {
				v, secret = v.Field(i), t.Field(i).Tag.Get("loom") == "secret"
				break
			}
		}
	}
	return v, secret
}

// poolTypesAtTop decodes the keys of actorPools other than its fields as
// actor types, as the seed writes them (actorPools.orderProcessor.maxSize
// for actorPools.types.orderProcessor.maxSize). A type set both ways is a
// problem. Problems name the key as written.
func (d *decoder) poolTypesAtTop(n *yaml.Node, v reflect.Value, path string, fields map[string]int) {
	nested := map[string]int{} // the types under actorPools.types, by name, with their line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, val := n.Content[i], n.Content[i+1]; k.Value == "types" && val.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(val.Content); j += 2 {
				nested[val.Content[j].Value] = val.Content[j].Line
			}
		}
	}
	types := v.FieldByName("Types")
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || seen[k.Value] {
			continue // eachKey reports these
		}
		seen[k.Value] = true
		if _, isField := fields[k.Value]; isField {
			continue
		}
		name := k.Value
		if d.src.written == nil {
			d.src.written = map[string]string{}
		}
		canon := joinPath(path, "types."+name)
		d.src.written[canon] = joinPath(path, name)
		if line, dup := nested[name]; dup {
			d.problem(k.Line, canon, "actor type %q is also set under %s.types (line %d): set it once", name, path, line)
			continue
		}
		if v := val; v.Kind == yaml.MappingNode || v.Kind == yaml.AliasNode || v.ShortTag() == "!!null" {
			d.mapping(&yaml.Node{Kind: yaml.MappingNode, Line: k.Line, Content: []*yaml.Node{k, val}}, types, joinPath(path, "types"), false)
			continue
		}
		msg := "unknown key (allowed: " + strings.Join(sortedKeys(fields), ", ") + ", or an actor type's pool settings)"
		if s := suggest(name, fields); s != "" {
			msg = fmt.Sprintf("unknown key (did you mean %q?)", s)
		}
		d.problem(k.Line, canon, "%s", msg)
	}
}

// mapping decodes a mapping into the map v. The map is created on its
// first entry, so an empty mapping leaves it nil (as in Default).
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, secret bool) {
	d.eachKey(n, path, func(key string, _, valNode *yaml.Node) {
		elem := reflect.New(v.Type().Elem()).Elem()
		before := len(d.problems)
		d.value(valNode, elem, joinPath(path, key), secret)
		if len(d.problems) > before && elem.Kind() != reflect.Struct {
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		v.SetMapIndex(reflect.ValueOf(key), elem)
	})
}

// eachKey calls fn for every key of the mapping n, after checking that the
// key is a plain scalar and not a duplicate.
func (d *decoder) eachKey(n *yaml.Node, path string, fn func(key string, keyNode, valNode *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.problem(k.Line, path, "a key must be a single value, not a %s", kindName(k.Kind))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			d.problem(k.Line, joinPath(path, k.Value), "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.problem(k.Line, joinPath(path, k.Value), "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, val)
	}
}

func (d *decoder) record(path string, line int, value string) {
	if path != "" {
		d.src.keys[path] = origin{line: line, value: value}
	}
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the allowed key that key was probably meant to be: the
// same but for case, '_' or '-' (max_size, MaxSize, max-size for maxSize).
func suggest(key string, allowed map[string]int) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	for a := range allowed {
		if norm(a) == norm(key) {
			return a
		}
	}
	return ""
}

// describe shows a node in a problem: its text for a scalar (unless
// secret), else its kind.
func describe(n *yaml.Node, secret bool) string {
	if n.Kind != yaml.ScalarNode {
		return "a " + kindName(n.Kind)
	}
	if secret {
		return "a value not shown because it is secret"
	}
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 || n.ShortTag() == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "YAML node"
}
