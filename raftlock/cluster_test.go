package raftlock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
)

func entry(p string) []journal.Entry {
	return []journal.Entry{{Kind: journal.KindInvocation, Method: "m", Payload: []byte(p)}}
}

// wantReplica checks that node s holds exactly want (payloads in seq order)
// for actor, polling until it does: a replica that is not the writer may
// lag.
func wantReplica(t *testing.T, s *Store, actor string, want []string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s has %d entries of %s", s.LocalID(), len(want), actor), func() error {
		es, err := s.Read(t.Context(), actor, 0)
		if err != nil {
			return err
		}
		got := make([]string, len(es))
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				return fmt.Errorf("entry %d has seq %d", i, e.Seq)
			}
			got[i] = string(e.Payload)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("log is %q, want %q", got, want)
		}
		return nil
	})
}

// TestClusterReplicationFailover: appends through a follower reach every
// replica; the leader is killed while writers on the other nodes keep
// appending, a new leader takes over and no acknowledged append is lost or
// doubled; the old leader restarts on its data dir and catches up.
func TestClusterReplicationFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	ctx := t.Context()

	// Through a follower, visible everywhere.
	f := c.follower()
	var want []string
	for i := range 5 {
		p := fmt.Sprintf("f-%d", i)
		tail, err := c.nodes[f].Append(ctx, "t/via-follower", 1, uint64(i), entry(p))
		if err != nil || tail != uint64(i+1) {
			t.Fatalf("Append %d through follower %s = %d, %v", i, nodeID(f), tail, err)
		}
		want = append(want, p)
		// Read-your-writes on the follower itself: the append is applied
		// here when it returns.
		if tl, err := c.nodes[f].Tail(ctx, "t/via-follower"); err != nil || tl.Seq != tail {
			t.Fatalf("Tail on the writing follower right after Append = %+v, %v; want seq %d", tl, err, tail)
		}
	}
	for _, s := range c.nodes {
		wantReplica(t, s, "t/via-follower", want)
	}

	// Writers on the two nodes that are not the leader keep appending while
	// the leader is killed.
	l := c.leader()
	var writers []int
	for i := range c.nodes {
		if i != l {
			writers = append(writers, i)
		}
	}
	const perWriter = 40
	var (
		mu    sync.Mutex
		acked = map[string][]string{} // actor -> acknowledged payloads in seq order
		wg    sync.WaitGroup
		errs  = make(chan error, len(writers))
		half  sync.WaitGroup
	)
	half.Add(len(writers))
	for _, w := range writers {
		wg.Go(func() {
			s := c.nodes[w]
			actor := fmt.Sprintf("t/writer-%d", w)
			for i := range perWriter {
				if i == perWriter/4 {
					half.Done()
				}
				p := fmt.Sprintf("%s-%d", actor, i)
				actx, cancel := context.WithTimeout(ctx, 15*time.Second)
				tail, err := s.Append(actx, actor, 1, uint64(i), entry(p))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("%s: append %d: %w", actor, i, err)
					return
				}
				if tail != uint64(i+1) {
					errs <- fmt.Errorf("%s: append %d returned tail %d", actor, i, tail)
					return
				}
				mu.Lock()
				acked[actor] = append(acked[actor], p)
				mu.Unlock()
			}
		})
	}
	half.Wait()
	c.stop(l)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	nl := c.leader()
	if nl == l {
		t.Fatalf("leader %s was stopped but is still the leader", nodeID(l))
	}
	for actor, ps := range acked {
		if len(ps) != perWriter {
			t.Fatalf("%s: %d appends acknowledged, want %d", actor, len(ps), perWriter)
		}
		for _, i := range writers {
			wantReplica(t, c.nodes[i], actor, ps)
		}
	}

	// The old leader restarts on its data dir and catches up.
	s := c.restart(l)
	for actor, ps := range acked {
		wantReplica(t, s, actor, ps)
	}
	wantReplica(t, s, "t/via-follower", want)
	// And it serves writes again (as a follower now, most likely).
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.Append(sctx, "t/via-follower", 1, 5, entry("after-restart")); err != nil {
		t.Fatalf("Append through the restarted node: %v", err)
	}
	for _, n := range c.nodes {
		wantReplica(t, n, "t/via-follower", append(want, "after-restart"))
	}
}

// TestFollowerCatchesUpFromSnapshot: a node that was down while the leader
// snapshotted and truncated its log receives the snapshot (Restore at
// run time) and then the rest of the log.
func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 3, nil, func(cfg *Config) {
		cfg.TrailingLogs = 4
		cfg.WALSegmentSize = 1 << 10 // raft-wal deletes whole segments: a few entries each
	})
	ctx := t.Context()
	f := c.follower()
	c.stop(f)
	l := c.leader()
	var want []string
	for i := range 30 {
		p := fmt.Sprintf("p-%d", i)
		if _, err := c.nodes[l].Append(ctx, "t/snap", 1, uint64(i), entry(p)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		want = append(want, p)
	}
	// Snapshot on every running node, and compact the log past what the
	// stopped follower has.
	for _, s := range c.nodes {
		if s != nil {
			if err := s.Snapshot(); err != nil {
				t.Fatalf("Snapshot on %s: %v", s.LocalID(), err)
			}
		}
	}
	for i := range 5 {
		p := fmt.Sprintf("q-%d", i)
		if _, err := c.nodes[l].Append(ctx, "t/snap", 1, uint64(30+i), entry(p)); err != nil {
			t.Fatalf("Append after snapshot: %v", err)
		}
		want = append(want, p)
	}
	s := c.restart(f)
	wantReplica(t, s, "t/snap", want)
	if st := s.Stats(); st["last_snapshot_index"] == "0" {
		t.Logf("stats: %v", st)
		t.Errorf("the restarted follower caught up without a snapshot; the test did not exercise Restore")
	}
}

// TestRestartFromSnapshotAndLog: a single node restarts from its latest
// snapshot plus the log after it, with locks and sessions intact.
func TestRestartFromSnapshotAndLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSingle(t, dir, "127.0.0.1:0", nil)
	addr := string(s.Addr())
	ctx := t.Context()
	sid, err := s.CreateSession(ctx, "node-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Acquire(ctx, sid, "t/a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := s.Append(ctx, "t/a", tok, uint64(i), entry(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveSnapshot(ctx, "t/a", tok, journal.Snapshot{Seq: 5, Data: []byte("five")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := s.Truncate(ctx, "t/a", tok, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "t/a", tok, 10, entry("10")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSingle(t, dir, addr, nil)
	defer s.Close()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantTail := journal.Tail{Seq: 11, Token: tok}
	if got, err := s.Tail(ctx, "t/a"); err != nil || got != wantTail {
		t.Fatalf("Tail after restart = %+v, %v; want %+v", got, err, wantTail)
	}
	es, err := s.Read(ctx, "t/a", 0)
	if err != nil || len(es) != 6 || es[0].Seq != 6 || string(es[5].Payload) != "10" {
		t.Fatalf("Read after restart = %d entries (%v), want seqs 6..11", len(es), err)
	}
	if snap, ok, err := s.LoadSnapshot(ctx, "t/a"); err != nil || !ok || string(snap.Data) != "five" {
		t.Fatalf("LoadSnapshot after restart = %+v, %v, %v", snap, ok, err)
	}
	info, ok, err := s.Holder(ctx, "t/a")
	if err != nil || !ok || info.Session != sid || info.Token != tok {
		t.Fatalf("Holder after restart = %+v, %v, %v; want session %s token %d", info, ok, err, sid, tok)
	}
	if again, err := s.Acquire(ctx, sid, "t/a"); err != nil || again != tok {
		t.Fatalf("re-Acquire after restart = %d, %v; want %d", again, err, tok)
	}
}
