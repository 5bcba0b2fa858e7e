package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/internal/rabbitmqtest"
)

// TestRabbitPublishRunsAndCleansUp runs the rabbitmq-publish baseline
// briefly against a throwaway broker: its publishes are all confirmed, the
// table has its column, and its queue is gone afterwards. A wrong password
// is refused before anything is measured, without the password in the
// error.
func TestRabbitPublishRunsAndCleansUp(t *testing.T) {
	srv := rabbitmqtest.Start(t)
	args := []string{"--rabbitmq", srv.URL(), "--only", "rabbitmq-publish", "--callers", "4", "--duration", "300ms"}
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var row []string
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "rabbitmq-publish" {
			row = f
		}
	}
	// scenario calls/s p50 p99 p999 errors x unary x stream x raft x rabbitmq
	if len(row) != 10 {
		t.Fatalf("no rabbitmq-publish row of 10 fields in:\n%s", out.String())
	}
	if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
		t.Errorf("calls/s %q", row[1])
	}
	if row[5] != "0" || row[9] != "1.00" {
		t.Errorf("errors %s, ratio to itself %s:\n%s", row[5], row[9], out.String())
	}
	if queues, err := srv.Ctl("list_queues", "name"); err != nil || strings.Contains(queues, "loom-bench-publish-") {
		t.Errorf("queues left behind: %v\n%s", err, queues)
	}

	out.Reset()
	errOut.Reset()
	bad := strings.Replace(srv.URL(), ":"+srv.Password+"@", ":wrong-s3cret@", 1)
	if bad == srv.URL() {
		t.Fatalf("could not replace the password in %s", srv.URL())
	}
	if code := run([]string{"--rabbitmq", bad, "--only", "rabbitmq-publish", "--duration", "300ms"}, &out, &errOut); code != 1 {
		t.Errorf("wrong password: exit %d, want 1\nstdout:\n%s", code, out.String())
	}
	if strings.Contains(errOut.String(), "wrong-s3cret") || !strings.Contains(errOut.String(), "rabbitmq baseline") {
		t.Errorf("stderr %q", errOut.String())
	}
}
