package raftlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// MaxGroups bounds the number of Raft groups a node's Groups may have.
const MaxGroups = 64

// groupsFile, under DataDir/raft, records how many groups the data dir
// was made with: an actor's group is a function of that number, so it
// never changes.
const groupsFile = "groups"

// Groups is one node's member of K Raft groups, each a Store: group g
// keeps the locks and journals of the keys GroupOf maps to g, so K
// leaders share the durable writes instead of one. Groups implements
// lock.Coordinator and journal.Journal by handing each call to the
// group of its key (a lock's key, a journal's actor), and the calls that
// concern every key (sessions, Sync, Close) to all of them.
//
// A session is one id in every group: group 0 issues it and the others
// create a session with that id (CreateSession), renewed, ended and
// lapsed in each group by that group's rules and clock. A lock lives in
// its key's group, and a grant's fencing token comes from that group's
// counter: tokens strictly increase per key, which is the order fencing
// compares, but not across keys of different groups.
type Groups struct {
	stores []*Store

	// The relays of messages sent across groups (groups_queue.go).
	notify atomic.Pointer[func(actor string, at time.Time)]
	// remoteDead lists the dead letters of a group this node is outside
	// of (GroupQueues.SetRemoteDead).
	remoteDead atomic.Pointer[func(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error)]
	relays     []*relay
	relayMu    [64]sync.Mutex // one relay at a time per receiver (by hash) and node
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

var (
	_ lock.Coordinator = (*Groups)(nil)
	_ journal.Journal  = (*Groups)(nil)
)

// GroupOf is the group, among k, of key (placement.GroupOf): the
// group whose Store keeps key's lock and journal.
func GroupOf(key string, k int) int { return placement.GroupOf(key, k) }

// OpenGroups opens this node's member of k groups. Group 0 is opened
// with cfg as Open would (a data dir of one group is a data dir of
// Open's); group g > 0 with cfg.Group = g, under DataDir/raft/g<g>, with
// the server id group 0 has (so a node is one server in every group).
// config, if not nil, adjusts each group's Config before it is opened:
// its Transport and Forwarder, which are the group's own.
//
// k is the same on every node and for the life of the data dir: it is
// recorded there, and opening with another k fails.
func OpenGroups(cfg Config, k int, config func(g int, c *Config)) (*Groups, error) {
	if k < 1 || k > MaxGroups {
		return nil, fmt.Errorf("raftlock: %d groups is not in [1, %d]", k, MaxGroups)
	}
	if err := recordGroups(cfg.DataDir, k); err != nil {
		return nil, err
	}
	gs := &Groups{}
	fresh := make([]bool, k) // no log store in the group's directory before this open
	for g := range k {
		fresh[g] = !replica.HasLogStore(groupDir(cfg.DataDir, g))
		c := cfg
		c.Group = g
		if g > 0 {
			c.NodeID, c.PerDirServerID = gs.stores[0].LocalID(), false
		}
		if config != nil {
			config(g, &c)
		}
		s, err := Open(c)
		if err != nil {
			_ = gs.Close()
			return nil, fmt.Errorf("raftlock: group %d: %w", g, err)
		}
		gs.stores = append(gs.stores, s)
	}
	if err := checkWholeDataDir(cfg.DataDir, gs.stores, fresh); err != nil {
		_ = gs.Close()
		return nil, err
	}
	if k > 1 {
		gs.startRelays()
	}
	return gs, nil
}

// ErrDamagedDataDir: some of a data dir's Raft groups have state and
// another group's directory is gone. Every group of a node votes under
// the one server id its data dir was given, so a group that came back
// empty would vote as the server that had its log; the node refuses to
// start instead. Remove the whole data dir to rejoin as a new server.
var ErrDamagedDataDir = errors.New("raftlock: damaged data dir")

// groupDir is the directory of group g's log, stable store and state
// machine under dataDir.
func groupDir(dataDir string, g int) string {
	dir := filepath.Join(dataDir, "raft")
	if g > 0 {
		dir = filepath.Join(dir, "g"+strconv.Itoa(g))
	}
	return dir
}

// checkWholeDataDir fails with ErrDamagedDataDir when a group's log store
// was made by this open (fresh) while another group had Raft state: its
// directory was removed or lost since the node last ran. (All of a data
// dir's groups are made by its first open, before any of them has state.)
func checkWholeDataDir(dataDir string, stores []*Store, fresh []bool) error {
	var lost []string
	withState := -1
	for g, s := range stores {
		if fresh[g] {
			lost = append(lost, groupDir(dataDir, g))
		} else if s.HasState() && withState < 0 {
			withState = g
		}
	}
	if len(lost) == 0 || withState < 0 {
		return nil
	}
	return fmt.Errorf("%w: Raft group %d has state in %s, but %s held no Raft log before this start: "+
		"a group that came back empty would vote as the server that had its log; remove the whole data dir %s to rejoin as a new server",
		ErrDamagedDataDir, withState, groupDir(dataDir, withState), strings.Join(lost, ", "), dataDir)
}

// recordGroups fails if the data dir was made with a number of groups
// other than k, and records k in a new one. A data dir with Raft state
// and no record was made with one group.
func recordGroups(dataDir string, k int) error {
	dir := filepath.Join(dataDir, "raft")
	file := filepath.Join(dir, groupsFile)
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		made, err := strconv.Atoi(strings.TrimSpace(string(b)))
		switch {
		case err != nil:
			return fmt.Errorf("raftlock: %s: %w", file, err)
		case made != k:
			return fmt.Errorf("raftlock: the data dir %s was made with %d Raft groups, not %d", dataDir, made, k)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("raftlock: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raftlock: %w", err)
	}
	if len(entries) > 0 && k != 1 {
		return fmt.Errorf("raftlock: the data dir %s was made with 1 Raft group, not %d", dataDir, k)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("raftlock: %w", err)
	}
	if err := os.WriteFile(file, []byte(strconv.Itoa(k)+"\n"), 0o644); err != nil {
		return fmt.Errorf("raftlock: %w", err)
	}
	return nil
}

// Len is the number of groups.
func (gs *Groups) Len() int { return len(gs.stores) }

// Group is this node's member of group g, for its membership and state.
func (gs *Groups) Group(g int) *Store { return gs.stores[g] }

// Of is this node's member of key's group.
func (gs *Groups) Of(key string) *Store { return gs.stores[GroupOf(key, len(gs.stores))] }

// HandleForward applies a forward request for group (see
// Store.HandleForward); a group this node does not have is an error.
func (gs *Groups) HandleForward(ctx context.Context, group int, batch []byte) ([]byte, error) {
	if group < 0 || group >= len(gs.stores) {
		return nil, fmt.Errorf("raftlock: a forward request for Raft group %d, of %d", group, len(gs.stores))
	}
	return gs.stores[group].HandleForward(ctx, batch)
}

// each calls fn on every group at once and joins their errors.
func (gs *Groups) each(fn func(s *Store) error) error {
	if len(gs.stores) == 1 {
		return fn(gs.stores[0])
	}
	errs := make([]error, len(gs.stores))
	var wg sync.WaitGroup
	for i, s := range gs.stores {
		wg.Go(func() { errs[i] = fn(s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops the relays and closes every group (see Store.Close).
func (gs *Groups) Close() error {
	if gs.stop != nil {
		gs.stop()
		gs.wg.Wait()
	}
	return gs.each(func(s *Store) error { return s.Close() })
}

// Sync waits until every group's replica has applied everything
// committed in it before the call.
func (gs *Groups) Sync(ctx context.Context) error {
	return gs.each(func(s *Store) error { return s.Sync(ctx) })
}

// --- lock.Coordinator ---

// CreateSession opens a session in group 0 and one with the same id in
// every other group. If a group fails, the session is destroyed where it
// may have been made, and the error returned.
func (gs *Groups) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	id, err := gs.stores[0].CreateSession(ctx, owner, ttl)
	if err != nil || len(gs.stores) == 1 {
		return id, err
	}
	err = gs.each(func(s *Store) error {
		if s == gs.stores[0] {
			return nil
		}
		_, err := s.createSession(ctx, owner, ttl, id)
		return err
	})
	if err == nil {
		return id, nil
	}
	// Its TTL would end it anyway; ending it now keeps it from living on
	// in some groups only. (It holds nothing yet; ending a session a
	// group never made is a no-op.)
	end, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
	defer cancel()
	_ = gs.DestroySession(end, id)
	return "", err
}

// Renew renews the session in every group; an error from any group is
// the error (lock.ErrSessionExpired if it lapsed in one).
func (gs *Groups) Renew(ctx context.Context, id lock.SessionID) error {
	return gs.each(func(s *Store) error { return s.Renew(ctx, id) })
}

// DestroySession ends the session in every group, freeing its locks.
func (gs *Groups) DestroySession(ctx context.Context, id lock.SessionID) error {
	return gs.each(func(s *Store) error { return s.DestroySession(ctx, id) })
}

// EndSessionsOf ends owner's sessions but keep in every group (see
// Store.EndSessionsOf) and returns the most one group ended.
func (gs *Groups) EndSessionsOf(ctx context.Context, owner string, keep lock.SessionID) (int, error) {
	var mu sync.Mutex
	most := 0
	err := gs.each(func(s *Store) error {
		n, err := s.EndSessionsOf(ctx, owner, keep)
		mu.Lock()
		most = max(most, n)
		mu.Unlock()
		return err
	})
	return most, err
}

// Acquire takes key's lock in key's group (see Store.Acquire).
func (gs *Groups) Acquire(ctx context.Context, id lock.SessionID, key string) (uint64, error) {
	return gs.Of(key).Acquire(ctx, id, key)
}

// Release frees key's lock in key's group.
func (gs *Groups) Release(ctx context.Context, id lock.SessionID, key string) error {
	return gs.Of(key).Release(ctx, id, key)
}

// Holder reports key's lock from key's group.
func (gs *Groups) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	return gs.Of(key).Holder(ctx, key)
}

// --- journal.Journal ---

// Append appends to actor's journal in actor's group. The messages its
// KindMessageSend entries send to actors of other groups are relayed to
// their groups before it returns, or by the group's leader if that
// fails (see GroupQueues).
func (gs *Groups) Append(ctx context.Context, actor string, token uint64, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	g := GroupOf(actor, len(gs.stores))
	tail, err := gs.stores[g].Append(ctx, actor, token, expectedSeq, entries)
	if err == nil && len(gs.stores) > 1 {
		gs.relaySends(ctx, g, entries)
	}
	return tail, err
}

// SaveSnapshot saves actor's snapshot in actor's group.
func (gs *Groups) SaveSnapshot(ctx context.Context, actor string, token uint64, snap journal.Snapshot) error {
	return gs.Of(actor).SaveSnapshot(ctx, actor, token, snap)
}

// Truncate truncates actor's journal in actor's group.
func (gs *Groups) Truncate(ctx context.Context, actor string, token uint64, throughSeq uint64) error {
	return gs.Of(actor).Truncate(ctx, actor, token, throughSeq)
}

// Read reads actor's journal from actor's group.
func (gs *Groups) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	return gs.Of(actor).Read(ctx, actor, fromSeq)
}

// Tail reads actor's journal tail from actor's group.
func (gs *Groups) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	return gs.Of(actor).Tail(ctx, actor)
}

// LoadSnapshot loads actor's snapshot from actor's group.
func (gs *Groups) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	return gs.Of(actor).LoadSnapshot(ctx, actor)
}
