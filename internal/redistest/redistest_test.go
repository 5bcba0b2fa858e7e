package redistest_test

import (
	"testing"

	"github.com/loom-mesh/loom/internal/redistest"
)

// TestKillAndRestartKeepsAcknowledgedWrites: a write the server answered
// is in its append-only file (appendfsync always), so it survives a kill -9
// and a restart on the same data directory; a password is required when
// set.
func TestKillAndRestartKeepsAcknowledgedWrites(t *testing.T) {
	s := redistest.Start(t, redistest.Options{Password: "s3cret"})
	c := s.Client()
	ctx := t.Context()
	for i := range 100 {
		if err := c.RPush(ctx, "l", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed server answered PING")
	}
	s.Restart()
	n, err := c.LLen(ctx, "l").Result()
	if err != nil || n != 100 {
		t.Fatalf("after kill -9 and restart: LLEN = %d, %v; want 100", n, err)
	}
	if err := c.Do(ctx, "AUTH", "wrong").Err(); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}
