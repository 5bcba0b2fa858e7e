//go:build loomchaos

package main

import (
	"bytes"
	"strings"
	"testing"
)

// The test-only flags are refused where they make no sense, and an unknown
// unsafe mode is named.
func TestChaosTestOnlyFlagsAreChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--chaos-events", "/tmp/x.jsonl"}, "--chaos-events needs --chaos-hook"},
		{[]string{"run", "--debug-unsafe", "fast-and-loose", "--data-dir", t.TempDir()}, `unknown unsafe mode "fast-and-loose"`},
		{[]string{"run", "--debug-unsafe", "redis-skip-fence", "--data-dir", t.TempDir()}, `unsafe mode "redis-skip-fence" needs journal.backend "redis"`},
		{[]string{"run", "--chaos-hook", "--bind", "0.0.0.0", "--data-dir", t.TempDir()}, "needs node.bind to be one IP of this node's own"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want it to say %q", c.args, code, stderr.String(), c.want)
		}
	}
}
