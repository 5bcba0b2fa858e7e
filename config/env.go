package config

import (
	"bytes"
	"fmt"
	"strings"
)

// expandEnv substitutes environment variables in the raw text of a config
// file, line by line, so that line numbers are unchanged:
//
//   - ${VAR} is VAR's value; VAR unset is a problem.
//   - ${VAR:-default} is VAR's value, or default when VAR is unset or empty.
//     default is literal text; a nested ${...} in it is a problem.
//   - $$ is a literal '$'.
//   - any other '$' is kept as is.
//
// Comments (a '#' at the start of a line or after a blank, outside quotes)
// are copied untouched, so documentation may mention ${VAR} freely. The
// substituted text is not expanded again. A value containing a line break
// is a problem: it would shift every following line and could inject keys.
//
// On a problem the reference expands to "" and scanning goes on, so that
// every problem in the file is reported.
func expandEnv(data []byte, file string, lookup func(string) (string, bool)) ([]byte, []Problem) {
	var (
		out      bytes.Buffer
		problems []Problem
	)
	out.Grow(len(data))
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		problems = append(problems, expandLine(&out, string(line), file, i+1, lookup)...)
	}
	return out.Bytes(), problems
}

func expandLine(out *bytes.Buffer, line, file string, lineNo int, lookup func(string) (string, bool)) []Problem {
	var (
		problems []Problem
		inDouble bool
		inSingle bool
		start    = out.Len() // where this line begins in out
	)
	problem := func(format string, args ...any) {
		problems = append(problems, Problem{File: file, Line: lineNo, Message: fmt.Sprintf(format, args...)})
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case inDouble && c == '\\' && i+1 < len(line):
			out.WriteString(line[i : i+2])
			i += 2
			continue
		case inDouble && c == '"':
			inDouble = false
		case inSingle && c == '\'':
			if i+1 < len(line) && line[i+1] == '\'' { // '' escapes a quote
				out.WriteString("''")
				i += 2
				continue
			}
			inSingle = false
		case !inDouble && !inSingle && (c == '"' || c == '\'') && opensQuote(out.Bytes()[start:]):
			inDouble = c == '"'
			inSingle = c == '\''
		case !inDouble && !inSingle && c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			out.WriteString(line[i:]) // a comment: copy the rest untouched
			return problems
		case c == '$' && i+1 < len(line) && line[i+1] == '$':
			out.WriteByte('$')
			i += 2
			continue
		case c == '$' && i+1 < len(line) && line[i+1] == '{':
			end := closingBrace(line[i+2:])
			if end < 0 {
				problem("unterminated %q: missing '}' (write $$ for a literal '$')", strings.TrimRight(line[i:], "\r\n"))
				out.WriteString(line[i:])
				return problems
			}
			ref := line[i : i+2+end+1] // ${...}
			value, err := expandRef(line[i+2:i+2+end], lookup)
			if err != "" {
				problem("%s: %s", ref, err)
			} else if strings.ContainsAny(value, "\r\n") {
				problem("%s: the value contains a line break, which is not allowed", ref)
			} else {
				out.WriteString(value)
			}
			i += len(ref)
			continue
		}
		out.WriteByte(c)
		i++
	}
	return problems
}

// expandRef evaluates the inside of ${...}. It returns the value, or an
// explanation of what is wrong. It never includes the variable's value in
// the explanation: it may be a secret.
func expandRef(inner string, lookup func(string) (string, bool)) (value, problem string) {
	name, def, hasDefault := strings.Cut(inner, ":-")
	if !validEnvName(name) {
		if name == "" {
			return "", "empty variable name (write $$ for a literal '$')"
		}
		if i := strings.IndexAny(name, ":-?=+"); i > 0 && validEnvName(name[:i]) {
			return "", fmt.Sprintf("unsupported expansion; use ${%s} or ${%s:-default}", name[:i], name[:i])
		}
		return "", fmt.Sprintf("invalid variable name %q (letters, digits and '_', not starting with a digit)", name)
	}
	if hasDefault && strings.Contains(def, "${") {
		return "", "nested ${...} in a default is not supported"
	}
	v, ok := lookup(name)
	switch {
	case hasDefault && v == "":
		return def, ""
	case !ok:
		return "", fmt.Sprintf("environment variable %s is not set (write ${%s:-value} to give a default)", name, name)
	}
	return v, ""
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// opensQuote reports whether a quote character following prefix (the
// current line so far) starts a YAML quoted scalar rather than sitting
// inside a plain one (as in "it's"): it must follow the line's start, or
// a blank or flow indicator after an indicator such as ':' or '-'.
func opensQuote(prefix []byte) bool {
	if len(prefix) == 0 {
		return true
	}
	last := prefix[len(prefix)-1]
	if last != ' ' && last != '\t' && last != '[' && last != '{' && last != ',' {
		return false
	}
	trimmed := bytes.TrimRight(prefix, " \t")
	if len(trimmed) == 0 {
		return true
	}
	return strings.IndexByte(":-?[{,", trimmed[len(trimmed)-1]) >= 0
}

// closingBrace returns the index in s of the '}' that closes a "${" just
// before s, counting nested "${", or -1.
func closingBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			depth++
			i++
		case s[i] == '}' && depth == 0:
			return i
		case s[i] == '}':
			depth--
		}
	}
	return -1
}
