package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// RedactedValue replaces the value of a secret field in Redacted and YAML.
const RedactedValue = "[redacted]"

// Redacted returns a copy of c in which every non-empty value of a field
// tagged `loom:"secret"` (today: Tracing.OTLPHeaders values; header names
// are kept) is replaced by RedactedValue. c itself is not changed. Use it
// before logging or printing a config.
func (c Config) Redacted() Config {
	redact(reflect.ValueOf(&c).Elem())
	return c
}

// redact replaces secret values inside v (addressable), copying maps
// before writing so that the original's maps are not changed.
func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			if t.Field(i).Tag.Get("loom") == "secret" {
				redactValue(v.Field(i))
			} else {
				redact(v.Field(i))
			}
		}
	case reflect.Map:
		if v.IsNil() || !containsSecret(v.Type().Elem()) {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), v.Len())
		for iter := v.MapRange(); iter.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			redact(e)
			m.SetMapIndex(iter.Key(), e)
		}
		v.Set(m)
	}
}

// redactValue hides a secret field's value: a string, or the values of a
// map of strings.
func redactValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.String() != "" {
			v.SetString(RedactedValue)
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), v.Len())
		for iter := v.MapRange(); iter.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			redactValue(e)
			m.SetMapIndex(iter.Key(), e)
		}
		v.Set(m)
	default:
		// Any other secret is hidden by zeroing it; there is none today.
		v.SetZero()
	}
}

// containsSecret reports whether type t has a field tagged secret.
func containsSecret(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.IsExported() && (f.Tag.Get("loom") == "secret" || containsSecret(f.Type)) {
				return true
			}
		}
	case reflect.Map, reflect.Pointer:
		return containsSecret(t.Elem())
	}
	return false
}

// YAML returns the configuration as loom.config.yaml text, secrets
// redacted (see Redacted): every key with its value, durations written
// like "5m" or "1h30m", and actor type overrides with only the fields they
// set. Parse accepts the result and yields c.Redacted(), except that it
// refuses a redacted token secret (auth.tokens) with a problem that says
// to put the secret back: a token cannot be "[redacted]". The empty
// journal.path and node.advertise are annotated with their effective
// values.
func (c Config) YAML() ([]byte, error) {
	r := c.Redacted()
	root, err := encodeNode(reflect.ValueOf(r))
	if err != nil {
		return nil, err
	}
	if r.Node.Advertise == "" {
		if n := lookupNode(root, "node", "advertise"); n != nil {
			n.LineComment = "# = node.bind (" + r.Node.Bind + ")"
		}
	}
	if r.Journal.Path == "" {
		if n := lookupNode(root, "journal", "path"); n != nil {
			n.LineComment = "# = " + r.JournalPath()
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeNode turns a config value into a YAML node, field order kept and
// map keys sorted.
func encodeNode(v reflect.Value) (*yaml.Node, error) {
	if v.Type() == durationType {
		return strNode(formatDuration(time.Duration(v.Int()))), nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		return encodeNode(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := range t.NumField() {
			name := yamlName(t.Field(i))
			if name == "" || v.Field(i).Kind() == reflect.Pointer && v.Field(i).IsNil() {
				continue // unexported, or an unset override
			}
			child, err := encodeNode(v.Field(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, strNode(name), child)
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle // {}
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		for _, k := range keys {
			child, err := encodeNode(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, strNode(k), child)
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle // {}
		}
		return n, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle} // [a, b]
		for i := range v.Len() {
			child, err := encodeNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, child)
		}
		return n, nil
	case reflect.String:
		return strNode(v.String()), nil
	case reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}, nil
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}, nil
	case reflect.Float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(v.Float(), 'g', -1, 64)}, nil
	}
	return nil, fmt.Errorf("config: no YAML encoding for Go type %s", v.Type())
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// lookupNode follows keys down nested mappings.
func lookupNode(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		var next *yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}
