package redislock_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/lock"
)

// TestKeeperAcrossRedisCrash drives the coordinator the way a node does,
// with lock.Keeper on the real clock: renewals keep the session (and its
// lock) alive past several TTLs; when redis-server is killed the node's
// lease runs out and its epoch ends within the TTL; after a restart the
// keeper opens a new session, which gets the lock, with a higher token,
// once the old session has lapsed on the server.
func TestKeeperAcrossRedisCrash(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: uniquePrefix()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	const ttl = time.Second
	k := lock.NewKeeper(c, "node-a", lock.KeeperConfigForTTL(ttl), slog.New(slog.DiscardHandler))
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	e, err := k.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Acquire(ctx, e.Session(), "actor")
	if err != nil {
		t.Fatal(err)
	}

	// Renewals keep the epoch for 3 TTLs (a fixed span: the assertion is
	// that nothing happens during it).
	select {
	case <-e.Lapsed():
		t.Fatalf("epoch lapsed while redis-server was up (lease %+v)", e.Lease())
	case <-time.After(3 * ttl):
	}
	if info, ok, err := c.Holder(ctx, "actor"); err != nil || !ok || info.Token != tok {
		t.Fatalf("after 3 TTLs of renewals, Holder = %+v, %v, %v; want token %d", info, ok, err, tok)
	}

	srv.Kill()
	killed := time.Now()
	select {
	case <-e.Lapsed():
		// The lease counts from the send of the last successful renewal, at
		// most one RenewInterval (TTL/3) before the kill, and ends
		// SafetyMargin before TTL: no later than TTL after the kill.
		if el := time.Since(killed); el > ttl+500*time.Millisecond {
			t.Fatalf("epoch ended %v after redis-server was killed; the TTL is %v", el, ttl)
		}
	case <-time.After(10 * ttl):
		t.Fatal("epoch still valid 10 TTLs after redis-server was killed")
	}
	if e.Valid() {
		t.Fatal("lapsed epoch still Valid")
	}

	srv.Restart()
	e2, err := k.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Session() == e.Session() {
		t.Fatalf("new epoch reuses session %s", e.Session())
	}
	// The old session may still be alive on the server for up to a TTL
	// after its last renewal; poll until its lock is free.
	deadline := time.Now().Add(10 * ttl)
	for {
		tok2, err := c.Acquire(ctx, e2.Session(), "actor")
		if err == nil {
			if tok2 <= tok {
				t.Fatalf("token after the crash = %d; want > %d", tok2, tok)
			}
			break
		}
		if !errors.Is(err, lock.ErrHeld) || time.Now().After(deadline) {
			t.Fatalf("Acquire with the new session: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval for a condition with a deadline
	}
	if err := k.Close(ctx); err != nil {
		t.Fatalf("Keeper.Close: %v", err)
	}
	if _, ok, err := c.Holder(ctx, "actor"); err != nil || ok {
		t.Fatalf("after Keeper.Close (which destroys the session), Holder = %v, %v; want free", ok, err)
	}
}
