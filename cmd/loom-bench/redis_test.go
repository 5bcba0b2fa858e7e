package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/internal/redistest"
)

// TestRedisXAddRunsAndCleansUp runs the redis-xadd baseline briefly
// against a throwaway redis-server that wants a password, given through
// $REDIS_PASSWORD: it makes calls without errors, and leaves no stream
// behind. A wrong --redis-password, which overrides the environment, is
// refused before anything is measured.
func TestRedisXAddRunsAndCleansUp(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "s3cret"})
	c := srv.Client()
	t.Setenv(redisPasswordEnv, "s3cret")
	var out, errOut bytes.Buffer
	if code := run([]string{"--redis", srv.Addr, "--only", "redis-xadd", "--callers", "4", "--duration", "300ms"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var row []string
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "redis-xadd" {
			row = f
		}
	}
	// scenario calls/s p50 p99 p999 errors x unary x stream x raft x redis
	if len(row) != 10 {
		t.Fatalf("no redis-xadd row of 10 fields in:\n%s", out.String())
	}
	if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
		t.Errorf("calls/s %q", row[1])
	}
	if row[5] != "0" || row[9] != "1.00" {
		t.Errorf("errors %s, ratio to itself %s:\n%s", row[5], row[9], out.String())
	}
	// The XADDs reached the server, and their streams are gone.
	stats, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_xadd:calls=") {
		t.Errorf("no XADD reached the server:\n%s", stats)
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left behind: %v", keys)
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"--redis", srv.Addr, "--redis-password", "wrong", "--only", "redis-xadd", "--duration", "300ms"}, &out, &errOut); code != 1 {
		t.Errorf("wrong password: exit %d, want 1\nstdout:\n%s", code, out.String())
	}
	if !strings.Contains(errOut.String(), "redis baseline") {
		t.Errorf("wrong password: stderr %q", errOut.String())
	}
}
