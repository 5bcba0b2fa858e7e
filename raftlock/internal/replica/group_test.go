package replica

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/replica/replicatest"
)

var waitFor = replicatest.WaitFor

// lossyForwarder forwards in process, except that while drop is positive
// it delivers each request but loses the answer (and counts drop down),
// as a connection that breaks after the leader applied the batch would:
// the follower's commands are then sent again with their outcome unknown.
type lossyForwarder struct {
	*replicatest.Forwarder
	drop atomic.Int32
}

func (f *lossyForwarder) Forward(ctx context.Context, leader raft.ServerID, addr raft.ServerAddress, batch []byte) ([]byte, error) {
	out, err := f.Forwarder.Forward(ctx, leader, addr, batch)
	if err == nil && f.drop.Add(-1) >= 0 {
		return nil, fmt.Errorf("the answer from %s was lost", leader)
	}
	return out, err
}

// counterCluster is three Groups of counters on loopback TCP, forwarding
// in process.
type counterCluster struct {
	t      testing.TB
	fwd    *lossyForwarder
	groups []*Group[sum] // nil once stopped
	fsms   []*counter
}

func newCounterCluster(t testing.TB) *counterCluster {
	t.Helper()
	c := &counterCluster{t: t, fwd: &lossyForwarder{Forwarder: replicatest.NewForwarder()}}
	var servers []raft.Server
	for i := range 3 {
		fsm := newCounter()
		g, err := Open(counterConfig(t, c.id(i), fsm, c.fwd))
		if err != nil {
			t.Fatal(err)
		}
		c.groups, c.fsms = append(c.groups, g), append(c.fsms, fsm)
		c.fwd.Set(c.id(i), g)
		servers = append(servers, g.LocalServer())
	}
	t.Cleanup(func() {
		for i := range c.groups {
			c.stop(i)
		}
	})
	if err := c.groups[0].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	c.leader()
	return c
}

// id is the server id of group i, also once it is stopped.
func (c *counterCluster) id(i int) raft.ServerID { return raft.ServerID(fmt.Sprintf("c%d", i+1)) }

// stop closes group i, as a crash would look to the others.
func (c *counterCluster) stop(i int) {
	if c.groups[i] == nil {
		return
	}
	c.fwd.Set(c.id(i), nil)
	if err := c.groups[i].Close(); err != nil {
		c.t.Errorf("Close %s: %v", c.id(i), err)
	}
	c.groups[i] = nil
}

// leader waits for a group that has taken office and returns its index.
func (c *counterCluster) leader() int {
	c.t.Helper()
	return replicatest.Leader(c.t, c.groups)
}

// adds sends n adds of 1 through group i, each with an id of its own, and
// reports the first failure; it calls halfway halfway.
func (c *counterCluster) adds(ctx context.Context, i, n int, halfway func()) error {
	g, fsm := c.groups[i], c.fsms[i]
	for seq := 1; seq <= n; seq++ {
		if seq == n/2 {
			halfway()
		}
		_, born, _ := fsm.Progress()
		cmd := encodeAdd(add{origin: string(c.id(i)), seq: uint64(seq), born: born, delta: 1})
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		r, err := g.Exec(actx, cmd, true)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: add %d: %w", c.id(i), seq, err)
		}
		if r.retry || r.text != "" {
			return fmt.Errorf("%s: add %d answered %+v", c.id(i), seq, r)
		}
	}
	return nil
}

// TestGroupCommandsOnceThroughLeaderChanges: a Group replicates a state
// machine that knows nothing of locks or journals. Writers on the two
// followers send commands, which are forwarded to the leader; at first
// the answers of some forwards are lost after the leader applied them,
// and halfway the leader is stopped. Every command returns, the retries
// (the same bytes, flagged) are answered from the dedup table, and every
// command took effect exactly once on every replica left.
func TestGroupCommandsOnceThroughLeaderChanges(t *testing.T) {
	t.Parallel()
	c := newCounterCluster(t)
	ctx := t.Context()
	const perWriter = 60
	first := c.leader()
	writers := []int{(first + 1) % 3, (first + 2) % 3}
	c.fwd.drop.Store(5)
	var done, half sync.WaitGroup
	half.Add(len(writers))
	for _, w := range writers {
		halfway := sync.OnceFunc(half.Done)
		done.Go(func() {
			defer halfway() // a writer may fail before
			if err := c.adds(ctx, w, perWriter, halfway); err != nil {
				t.Error(err)
			}
		})
	}
	half.Wait()
	c.stop(first)
	done.Wait()
	if t.Failed() {
		return
	}
	if l := c.leader(); l == first {
		t.Fatalf("the stopped group %s still leads", c.id(first))
	}

	want := uint64(len(writers) * perWriter)
	var retries, remembered int
	for _, w := range writers {
		g, fsm := c.groups[w], c.fsms[w]
		n, _ := strconv.Atoi(g.Stats()["send_retries"])
		retries += n
		// Every replica applies every command: wait until this one has
		// applied them all.
		waitFor(t, 10*time.Second, fmt.Sprintf("%s applies every add", c.id(w)), func() error {
			if total, _, _, _ := fsm.snapshot(); total < want {
				return fmt.Errorf("sum %d, want %d", total, want)
			}
			return nil
		})
		total, effects, offices, rem := fsm.snapshot()
		remembered = max(remembered, rem)
		if total != want || offices < 2 {
			t.Errorf("%s: sum %d, offices taken %d; want %d, at least 2", c.id(w), total, offices, want)
		}
		for _, origin := range writers {
			for seq := 1; seq <= perWriter; seq++ {
				if k := fmt.Sprintf("%s/%d", c.id(origin), seq); effects[k] != 1 {
					t.Errorf("%s: add %s took effect %d times", c.id(w), k, effects[k])
				}
			}
		}
	}
	t.Logf("send retries %d, adds answered from the dedup table %d", retries, remembered)
	if retries == 0 || remembered == 0 {
		t.Errorf("send retries %d, remembered %d: nothing was sent again", retries, remembered)
	}
}

// TestGroupErrors: a Group's errors wrap the sentinels its user gave
// (here the package's defaults): HandleForward on a follower is
// ErrNotLeader, and after Close every call is ErrClosed.
func TestGroupErrors(t *testing.T) {
	t.Parallel()
	c := newCounterCluster(t)
	ctx := t.Context()
	f := (c.leader() + 1) % 3
	g := c.groups[f]
	if _, err := g.HandleForward(ctx, counterWire.EncodeForward(nil)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("HandleForward on a follower: %v; want ErrNotLeader", err)
	}
	if err := g.AddVoter(ctx, "x", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a follower: %v; want ErrNotLeader", err)
	}
	c.stop(f)
	if _, err := g.Exec(ctx, encodeAdd(add{origin: "o", seq: 1, delta: 1}), true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Exec after Close: %v; want ErrClosed", err)
	}
	if err := g.BeforeRead(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("BeforeRead after Close: %v; want ErrClosed", err)
	}
	if _, err := g.HandleForward(ctx, counterWire.EncodeForward(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("HandleForward after Close: %v; want ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A leader whose first attempts to take office fail (a leadership
// transfer under way refuses the office entry, say) keeps trying while it
// leads, and serves once one succeeds; LeaderChanged tells when.
func TestLeaderRetriesTakingOffice(t *testing.T) {
	t.Parallel()
	fsm := newCounter()
	cfg := counterConfig(t, "c1", fsm, replicatest.NewForwarder())
	var attempts atomic.Int32
	office := cfg.TakeOffice
	cfg.TakeOffice = func(ctx context.Context, commit func(cmds ...[]byte) ([]sum, error)) error {
		if attempts.Add(1) <= 2 {
			return raft.ErrLeadershipTransferInProgress
		}
		return office(ctx, commit)
	}
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	changed := g.LeaderChanged()
	if err := g.Bootstrap([]raft.Server{g.LocalServer()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for !g.IsLeader() {
		select {
		case <-changed:
			changed = g.LeaderChanged()
		case <-deadline:
			t.Fatalf("not in office 10 s after the bootstrap, after %d attempts", attempts.Load())
		}
	}
	if n := attempts.Load(); n != 3 {
		t.Fatalf("in office after %d attempts, want 3", n)
	}
	if _, err := g.Exec(t.Context(), encodeAdd(add{origin: "o", seq: 1, delta: 1}), true); err != nil {
		t.Fatalf("a command once in office: %v", err)
	}
}

// TestPartialOutsider: a Partial Group on a node outside the group's
// configuration hears from no leader; it forwards its commands where
// LeaderHint says, returns the leader's answers without waiting for its
// own replica (which applies nothing), and refuses reads with
// ErrNotReplica. Once the leader adds it, it replicates and reads again.
func TestPartialOutsider(t *testing.T) {
	t.Parallel()
	c := newCounterCluster(t)
	l := c.leader()
	fsm := newCounter()
	cfg := counterConfig(t, "c4", fsm, c.fwd)
	cfg.Partial = true
	cfg.LeaderHint = func() (raft.ServerID, raft.ServerAddress) {
		return c.id(l), c.groups[l].Addr()
	}
	out, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	c.fwd.Set("c4", out)
	if out.Replicating() {
		t.Fatal("a server in no configuration says it replicates the group")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for seq := 1; seq <= 3; seq++ {
		_, born, _ := fsm.Progress()
		r, err := out.Exec(ctx, encodeAdd(add{origin: "c4", seq: uint64(seq), born: born, delta: 1}), true)
		if err != nil {
			t.Fatalf("add %d through the outsider: %v", seq, err)
		}
		if r.retry || r.text != "" || r.value < uint64(seq) {
			t.Fatalf("add %d answered %+v", seq, r)
		}
	}
	if applied, _, _ := fsm.Progress(); applied != 0 {
		t.Fatalf("the outsider's replica applied up to %d; want nothing", applied)
	}
	if err := out.BeforeRead(ctx); !errors.Is(err, ErrNotReplica) {
		t.Fatalf("BeforeRead on the outsider: %v; want ErrNotReplica", err)
	}

	if err := c.groups[l].AddNonvoter(ctx, "c4", out.Addr()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !out.Replicating() {
		if time.Now().After(deadline) {
			t.Fatal("the added server does not replicate the group after 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling: Raft reports contact, not an event
	}
	if err := out.BeforeRead(ctx); err != nil {
		t.Fatalf("BeforeRead once a member: %v", err)
	}
	if applied, _, _ := fsm.Progress(); applied == 0 {
		t.Fatal("the member's replica applied nothing after BeforeRead")
	}
}
