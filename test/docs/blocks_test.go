package docs_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// block is one fenced code block of a Markdown file.
type block struct {
	File string // relative to the repository root
	Line int    // of the opening fence
	Lang string // after the fence: sh, go, yaml, ...
	Kind string // the marker's kind: "sh" or "go"; "" without a marker
	Arg  string // the marker's argument: a check's name, or a Go file
	Text string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// checked are the languages whose blocks must carry a marker.
var checked = map[string]string{"sh": "sh", "bash": "sh", "console": "sh", "go": "go"}

var markerRE = regexp.MustCompile(`^<!--\s*doc:\s*(\S+)\s+(\S+)\s*-->$`)

// repoRoot is the module's root, two directories up.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// docBlocks parses README.md and docs/*.md.
func docBlocks(t testing.TB, root string) []block {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	var all []block
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		bs, err := parseBlocks(f, rel)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, bs...)
	}
	return all
}

func parseBlocks(path, rel string) ([]block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		out  []block
		cur  *block
		body []string
		prev string // the last non-blank line outside a block
	)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fence := strings.HasPrefix(line, "```")
		switch {
		case cur == nil && fence:
			cur = &block{File: rel, Line: n, Lang: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			if m := markerRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.Kind, cur.Arg = m[1], m[2]
			}
			body = body[:0]
		case cur != nil && fence:
			cur.Text = strings.Join(body, "\n")
			out = append(out, *cur)
			cur, prev = nil, ""
		case cur != nil:
			body = append(body, line)
		case strings.TrimSpace(line) != "":
			prev = line
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a code block that never ends", rel, cur.Line)
	}
	return out, sc.Err()
}

// TestEveryBlockIsChecked fails for a shell or Go block without a marker,
// for a marker that names no check or a Go file the block is not in, and
// for a check whose block is gone.
func TestEveryBlockIsChecked(t *testing.T) {
	root := repoRoot(t)
	blocks := docBlocks(t, root)
	inPackage := packageFiles(t, root)
	used := map[string][]string{}
	for _, b := range blocks {
		kind, ok := checked[b.Lang]
		if !ok {
			if b.Kind != "" {
				t.Errorf("%s: a marker on a ```%s block, which nothing runs", b, b.Lang)
			}
			continue
		}
		if b.Kind != kind {
			t.Errorf("%s: a ```%s block needs <!-- doc: %s ... --> on the line before it (has %q)", b, b.Lang, kind, b.Kind)
			continue
		}
		switch kind {
		case "sh":
			if _, ok := shellChecks[b.Arg]; !ok {
				t.Errorf("%s: no shell check named %q in test/docs", b, b.Arg)
			}
			used[b.Arg] = append(used[b.Arg], b.String())
		case "go":
			src := filepath.Join(root, filepath.FromSlash(b.Arg))
			if !inPackage[src] {
				t.Errorf("%s: %s is not a Go file of any package in the module", b, b.Arg)
				continue
			}
			if err := inOrder(b.Text, src); err != nil {
				t.Errorf("%s: %v", b, err)
			}
		}
	}
	for name := range shellChecks {
		switch n := len(used[name]); {
		case n == 0:
			t.Errorf("shell check %q runs no block: none is marked <!-- doc: sh %s -->", name, name)
		case n > 1:
			t.Errorf("shell check %q is named by %d blocks: %v", name, n, used[name])
		}
	}
}

// packageFiles lists every Go file, tests included, of the module's
// packages.
func packageFiles(t *testing.T, root string) map[string]bool {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .TestGoFiles}}{{$d}}/{{.}}
{{end}}{{range .XTestGoFiles}}{{$d}}/{{.}}
{{end}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		files[filepath.Clean(f)] = true
	}
	return files
}

// inOrder reports whether every non-blank line of text appears, in order,
// among the lines of the file at path, with spaces collapsed on both sides.
func inOrder(text, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	have := strings.Split(string(data), "\n")
	for i := range have {
		have[i] = squash(have[i])
	}
	at := 0
	for _, l := range strings.Split(text, "\n") {
		want := squash(l)
		if want == "" {
			continue
		}
		i := slices.Index(have[at:], want)
		if i < 0 {
			if slices.Contains(have, want) {
				return fmt.Errorf("%q is in %s, but not after the block's previous lines", want, filepath.Base(path))
			}
			return fmt.Errorf("%q is not in %s", want, filepath.Base(path))
		}
		at += i + 1
	}
	return nil
}

func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.go")
	if err := os.WriteFile(path, []byte("package x\n\nfunc f() {\n\ta :=  1\n\t_ = a // one\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text string
		ok   bool
	}{
		{"a := 1\n\n_ = a // one", true},
		{"func f() {\n}", true},
		{"_ = a // one\na := 1", false}, // out of order
		{"a := 2", false},
		{"_ = a", false}, // the comment is part of the line
	} {
		if err := inOrder(c.text, path); (err == nil) != c.ok {
			t.Errorf("inOrder(%q) = %v, want ok=%v", c.text, err, c.ok)
		}
	}
}

func TestParseBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.md")
	md := "# T\n\n<!-- doc: sh first -->\n```sh\nmake run\n```\n\ntext\n```go\nx := 1\n```\n<!-- doc: go a.go -->\n\n```yaml\nk: v\n```\n"
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	bs, err := parseBlocks(path, "x.md")
	if err != nil {
		t.Fatal(err)
	}
	want := []block{
		{File: "x.md", Line: 4, Lang: "sh", Kind: "sh", Arg: "first", Text: "make run"},
		{File: "x.md", Line: 9, Lang: "go", Text: "x := 1"},
		{File: "x.md", Line: 14, Lang: "yaml", Kind: "go", Arg: "a.go", Text: "k: v"},
	}
	if !slices.Equal(bs, want) {
		t.Fatalf("parseBlocks = %+v\nwant %+v", bs, want)
	}
}

func TestSteps(t *testing.T) {
	for _, c := range []struct {
		text string
		want []step
	}{
		{"make run   # a comment\n\n# a line of comment\nmake test", []step{{Cmd: "make run"}, {Cmd: "make test"}}},
		{"go run ./x \\\n    --flag 1   # c\nls", []step{{Cmd: "go run ./x --flag 1"}, {Cmd: "ls"}}},
		{"$ echo '# not a comment'  # one\n# not a comment\n$ true", []step{{Cmd: "echo '# not a comment'", Want: []string{"# not a comment"}}, {Cmd: "true"}}},
	} {
		got := steps(c.text)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("steps(%q) = %q, want %q", c.text, got, c.want)
		}
	}
	if b, l := splitLast(`pkill x; echo "a; b"; make run`); b != `pkill x; echo "a; b"` || l != "make run" {
		t.Errorf("splitLast = %q, %q", b, l)
	}
}
