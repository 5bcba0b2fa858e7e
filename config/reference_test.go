package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var updateReference = flag.Bool("update", false, "rewrite docs/config.md from the config package")

const referencePath = "../docs/config.md"

// TestConfigReference keeps docs/config.md the config package's own
// words: every key, its default (from Default) and its doc comment (from
// the source). It fails when the file and the code differ; -update
// rewrites the file.
func TestConfigReference(t *testing.T) {
	got := reference(t)
	if *updateReference {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (make it with: go test ./config -run TestConfigReference -update)", err)
	}
	if string(want) != got {
		t.Fatalf("docs/config.md differs from the config package: run go test ./config -run TestConfigReference -update")
	}
}

// docs reads the doc comments of the package's struct types and fields.
type docs struct {
	types  map[string]string            // type name → its doc
	fields map[string]map[string]string // type name → field name → its doc
}

func readDocs(t *testing.T) docs {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	d := docs{types: map[string]string{}, fields: map[string]map[string]string{}}
	for _, f := range pkgs["config"].Files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				d.types[ts.Name.Name] = gd.Doc.Text()
				fs := map[string]string{}
				for _, fld := range st.Fields.List {
					for _, n := range fld.Names {
						fs[n.Name] = fld.Doc.Text()
					}
				}
				d.fields[ts.Name.Name] = fs
			}
		}
	}
	return d
}

func reference(t *testing.T) string {
	d := readDocs(t)
	var b strings.Builder
	b.WriteString(`# Configuration reference

Every key of ` + "`loom.config.yaml`" + `, with its default and what it does. This file is generated from
the config package (its defaults and its doc comments) by
` + "`go test ./config -run TestConfigReference -update`" + `, and a test fails when the two differ.
Durations are written like ` + "`30s`" + `, ` + "`5m`" + ` or ` + "`1h30m`" + `; ` + "`${VAR}`" + ` and ` + "`${VAR:-default}`" + ` take a value
from the environment. Every key is optional. ` + "`loom-node config validate`" + ` lists every problem
with its file and line, and ` + "`loom-node config print`" + ` shows the effective configuration, secrets
redacted. A commented example that sets every key:
[config/testdata/loom.config.yaml](../config/testdata/loom.config.yaml).
`)
	def := reflect.ValueOf(Default())
	ct := def.Type()
	for i := range ct.NumField() {
		f := ct.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s", name, paragraph(d.types[f.Type.Name()]))
		walkReference(&b, d, f.Type, def.Field(i), name)
	}
	return b.String()
}

// walkReference writes a section per leaf key of the struct type st
// (whose defaults are v) under prefix.
func walkReference(b *strings.Builder, d docs, st reflect.Type, v reflect.Value, prefix string) {
	for i := range st.NumField() {
		f := st.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		key := prefix + "." + name
		doc := d.fields[st.Name()][f.Name]
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			fmt.Fprintf(b, "\n### `%s`\n\n%s", key, paragraph(doc))
			walkReference(b, d, ft, v.Field(i), key)
			continue
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct && !hasPointerFields(ft.Elem()):
			// A map of sections (auth.tokens): each entry's keys.
			placeholder := "<name>"
			fmt.Fprintf(b, "\n### `%s.%s`\n\n%s", key, placeholder, paragraph(doc))
			walkReference(b, d, ft.Elem(), reflect.New(ft.Elem()).Elem(), key+"."+placeholder)
			continue
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			// Per-type overrides: the keys of the default, by name.
			key += ".<type>"
		}
		fmt.Fprintf(b, "\n#### `%s`\n\nDefault: %s.", key, defaultOf(v.Field(i)))
		if f.Tag.Get("loom") == "secret" {
			b.WriteString(" Secret: `config print` shows it as `[redacted]`.")
		}
		fmt.Fprintf(b, "\n\n%s", paragraph(doc))
	}
}

func hasPointerFields(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Type.Kind() == reflect.Pointer {
			return true
		}
	}
	return false
}

// defaultOf formats a default value as the YAML a user would write.
func defaultOf(v reflect.Value) string {
	if (v.Kind() == reflect.Map || v.Kind() == reflect.Slice) && v.Len() == 0 {
		return "none"
	}
	n, err := encodeNode(v)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if n.Kind != yaml.ScalarNode {
		out, _ := yaml.Marshal(n)
		return "`" + strings.TrimSpace(string(out)) + "`"
	}
	if n.Value == "" {
		return "`\"\"`"
	}
	return "`" + n.Value + "`"
}

// paragraph joins a doc comment's lines into paragraphs (blank lines
// kept), ending with one blank line.
func paragraph(doc string) string {
	doc = strings.TrimSpace(doc)
	if doc == "" {
		return ""
	}
	var paras []string
	for p := range strings.SplitSeq(doc, "\n\n") {
		lines := strings.Split(p, "\n")
		if strings.HasPrefix(lines[0], "  ") || strings.HasPrefix(lines[0], "\t") || strings.HasPrefix(strings.TrimSpace(lines[0]), "- ") {
			paras = append(paras, p) // a list or preformatted: as written
			continue
		}
		for i := range lines {
			lines[i] = strings.TrimSpace(lines[i])
		}
		paras = append(paras, strings.Join(lines, " "))
	}
	return strings.Join(paras, "\n\n") + "\n"
}
