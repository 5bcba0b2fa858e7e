package raftlock

import (
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/lock/locktest"
)

// TestFencingPausedOwner is the scenario fencing exists for: A holds
// "t/x" and writes; A pauses past its TTL (the leader's clock advances);
// B acquires with a higher token; A's next append with its old token is
// rejected with ErrFenced although B has not written anything yet. A and B
// are on different followers of a three-node cluster.
func TestFencingPausedOwner(t *testing.T) {
	t.Parallel()
	clock := locktest.NewFakeClock(time.Time{})
	c := newCluster(t, 3, clock.Now)
	ctx := t.Context()
	l := c.leader()
	var a, b *Store
	for i, s := range c.nodes {
		if i != l {
			if a == nil {
				a = s
			} else {
				b = s
			}
		}
	}
	const ttl = 10 * time.Second
	sa, err := a.CreateSession(ctx, "node-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.CreateSession(ctx, "node-b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := a.Acquire(ctx, sa, "t/x")
	if err != nil || ta != 1 {
		t.Fatalf("A: Acquire = %d, %v; want token 1", ta, err)
	}
	if _, err := b.Acquire(ctx, sb, "t/x"); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("B: Acquire of A's lock: %v; want ErrHeld", err)
	}
	if _, err := a.Append(ctx, "t/x", ta, 0, entry("a-1")); err != nil {
		t.Fatalf("A: Append: %v", err)
	}

	// A pauses; B keeps its session alive.
	clock.Advance(ttl / 2)
	if err := b.Renew(ctx, sb); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl/2 + time.Second)
	tb, err := b.Acquire(ctx, sb, "t/x")
	if err != nil || tb <= ta {
		t.Fatalf("B: Acquire after A lapsed = %d, %v; want a token above %d", tb, err, ta)
	}

	// A wakes up and writes with its old token: fenced by the lock, since
	// the journal's highest token is still A's.
	if got, err := a.Tail(ctx, "t/x"); err != nil || got.Token != ta {
		t.Fatalf("Tail = %+v, %v; want highest token %d (B has not written)", got, err, ta)
	}
	_, err = a.Append(ctx, "t/x", ta, 1, entry("a-2"))
	if !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("A: Append with the old token after B acquired: %v; want ErrFenced", err)
	}
	for _, op := range []struct {
		name string
		err  error
	}{
		{"SaveSnapshot", a.SaveSnapshot(ctx, "t/x", ta, journal.Snapshot{Seq: 1})},
		{"Truncate", a.Truncate(ctx, "t/x", ta, 0)},
	} {
		if !errors.Is(op.err, journal.ErrFenced) {
			t.Errorf("A: %s with the old token: %v; want ErrFenced", op.name, op.err)
		}
	}
	if err := a.Renew(ctx, sa); !errors.Is(err, lock.ErrSessionExpired) {
		t.Errorf("A: Renew of the lapsed session: %v; want ErrSessionExpired", err)
	}
	// B writes after the tail A left.
	if tail, err := b.Append(ctx, "t/x", tb, 1, entry("b-1")); err != nil || tail != 2 {
		t.Fatalf("B: Append = %d, %v", tail, err)
	}
	wantReplica(t, a, "t/x", []string{"a-1", "b-1"})
}

// TestAppendWithoutLockAllowed: the lock rule only applies while a lock on
// the key is held; with none, only the journal's highest token fences.
func TestAppendFenceRules(t *testing.T) {
	t.Parallel()
	clock := locktest.NewFakeClock(time.Time{})
	s := openSingle(t, t.TempDir(), "127.0.0.1:0", clock.Now)
	defer s.Close()
	ctx := t.Context()

	// No lock: any token at or above the highest written works.
	if _, err := s.Append(ctx, "t/free", 7, 0, entry("x")); err != nil {
		t.Fatal(err)
	}
	// A lock on a key that was written with a high token gets a token
	// above it, so its holder is not fenced by history.
	sid, err := s.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Acquire(ctx, sid, "t/free")
	if err != nil || tok <= 7 {
		t.Fatalf("Acquire of a key written with token 7 = %d, %v; want a token above 7", tok, err)
	}
	if _, err := s.Append(ctx, "t/free", 7, 1, entry("y")); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("Append with token 7 while the lock is held with %d: %v; want ErrFenced", tok, err)
	}
	if _, err := s.Append(ctx, "t/free", tok, 1, entry("y")); err != nil {
		t.Fatal(err)
	}
	// Once the lock is released, the journal's own fence remains.
	if err := s.Release(ctx, sid, "t/free"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "t/free", 7, 2, entry("z")); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("Append with token 7 after token %d wrote: %v; want ErrFenced", tok, err)
	}
	// A lock whose session lapsed fences nothing.
	tok2, err := s.Acquire(ctx, sid, "t/other")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := s.Append(ctx, "t/other", tok2-1, 0, entry("late")); err != nil {
		t.Fatalf("Append below the token of a lapsed lock: %v; want success", err)
	}
}

// TestLeaderChangeExtendsSessions: a new leader whose clock runs far ahead
// of the old one's does not expire sessions that were alive when it took
// office (it gives them a full TTL from its own start), while a session
// that had already lapsed under the old leader stays lapsed.
func TestLeaderChangeExtendsSessions(t *testing.T) {
	t.Parallel()
	// Each node has its own clock.
	clocks := map[string]*locktest.FakeClock{}
	c := newClusterWith(t, 3, nil, func(cfg *Config) {
		clk := locktest.NewFakeClock(time.Time{})
		clocks[string(cfg.NodeID)] = clk
		cfg.Now = clk.Now
	})
	ctx := t.Context()
	l := c.leader()
	old := c.nodes[l]
	const ttl = 10 * time.Second
	alive, err := old.CreateSession(ctx, "node-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := old.Acquire(ctx, alive, "t/kept")
	if err != nil {
		t.Fatal(err)
	}
	short, err := old.CreateSession(ctx, "node-b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Acquire(ctx, short, "t/lost"); err != nil {
		t.Fatal(err)
	}
	// The old leader's clock passes the short session's deadline, and a
	// command carries that time into the state machine.
	clocks[string(old.LocalID())].Advance(2 * time.Second)
	if err := old.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The other nodes' clocks run a minute ahead: to them, every session
	// is long dead.
	for id, clk := range clocks {
		if id != string(old.LocalID()) {
			clk.Advance(time.Minute)
		}
	}
	c.stop(l)
	nl := c.leader()
	s := c.nodes[nl]
	if err := s.Renew(ctx, alive); err != nil {
		t.Fatalf("Renew after the leader change: %v; want the session kept alive", err)
	}
	if info, ok, err := s.Holder(ctx, "t/kept"); err != nil || !ok || info.Token != tok {
		t.Fatalf("Holder(t/kept) = %+v, %v, %v; want held with token %d", info, ok, err, tok)
	}
	if err := s.Renew(ctx, short); !errors.Is(err, lock.ErrSessionExpired) {
		t.Fatalf("Renew of the session that lapsed under the old leader: %v; want ErrSessionExpired", err)
	}
	if _, ok, err := s.Holder(ctx, "t/lost"); err != nil || ok {
		t.Fatalf("Holder(t/lost) = %v, %v; want free", ok, err)
	}
}

// TestReaperExpiresUntouchedSessions: a session nobody touches is expired
// by the leader's reap command, on every replica.
func TestReaperExpiresUntouchedSessions(t *testing.T) {
	t.Parallel()
	clock := locktest.NewFakeClock(time.Time{})
	c := newCluster(t, 3, clock.Now)
	ctx := t.Context()
	s := c.nodes[c.follower()]
	sid, err := s.CreateSession(ctx, "node-a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, sid, "t/r"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	// Holder compares with the node's own clock at once; the state
	// machine forgets the session once the reaper runs.
	for _, n := range c.nodes {
		waitFor(t, 10*time.Second, "session reaped on "+string(n.LocalID()), func() error {
			found := false
			err := n.fsm.view(func(l *layers) error {
				found = l.bucket(bSessions).Get([]byte(sid)) != nil
				return nil
			})
			if err != nil {
				return err
			}
			if found {
				return errors.New("session still stored")
			}
			return nil
		})
	}
}
