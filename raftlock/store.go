package raftlock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	bolt "go.etcd.io/bbolt"
)

// Server is raft.Server: a member of the cluster configuration, as
// Bootstrap takes it.
type Server = raft.Server

// Forwarder carries a batch of commands from a follower to the leader.
// Forward must deliver batch to the Store named leader (at its Raft
// address leaderAddr; a transport maps that to its own address) and return
// what that Store's HandleForward returned: its bytes, or an error. Any
// error means the outcome is unknown; the caller retries the same commands
// (which are deduplicated) until its context ends. Forward is called from
// the Store's committer goroutine, one call at a time, with a context that
// is cancelled when the Store closes.
type Forwarder interface {
	Forward(ctx context.Context, leader raft.ServerID, leaderAddr raft.ServerAddress, batch []byte) ([]byte, error)
}

// Store is one node's member of the Raft group: a lock.Coordinator and a
// journal.Journal backed by the replicated state machine. See the package
// documentation for what it guarantees and who owns which state.
type Store struct {
	cfg    Config
	log    *slog.Logger
	origin string        // command id origin: node id and a random nonce
	seq    atomic.Uint64 // last command id number issued
	// lastWrite is the highest log index of a journal write this node
	// committed without waiting for its own replica (see execEncoded);
	// reads wait until the replica has applied it.
	lastWrite atomic.Uint64
	// office is this node's clock while it leads (see stamp); nil otherwise.
	office atomic.Pointer[officeClock]
	// monotonic reads Config.Monotonic, or Now's elapsed time.
	monotonic func() time.Duration

	fsm       *fsm
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	trans     raft.Transport
	ownTrans  *raft.NetworkTransport // the TCP transport Open made, closed by Close
	hasState  bool
	gate      *voteGate // nil without Config.VoteGate
	observer  *raft.Observer
	notifyCh  chan bool
	observeCh chan raft.Observation

	// The committer's queue, guarded by mu.
	mu     sync.Mutex
	queue  []*call
	closed bool
	wake   chan struct{} // buffered(1): the queue became non-empty, or closed was set

	// Leadership, guarded by lmu: whether this node is the leader and has
	// finished its leader-start (ready), and a channel closed on every
	// change of either or of the known leader.
	lmu        sync.Mutex
	ready      bool
	leaderGen  uint64
	leaderStop context.CancelFunc // stops the current leadership goroutine
	changed    chan struct{}
	// routeCtx is cancelled, and replaced, with every close of changed:
	// forwards sent to the leader known before a change end with it.
	routeCtx    context.Context
	routeCancel context.CancelFunc

	failures    atomic.Int32       // consecutive failed sends, for the retry backoff
	closing     chan struct{}      // closed when Close starts
	ctx         context.Context    // cancelled by Close: Forward calls and leadership goroutines use it
	cancel      context.CancelFunc //
	committerWG sync.WaitGroup     // the committer goroutine
	bgWG        sync.WaitGroup     // the leadership watcher and leadership goroutines
	closeOnce   sync.Once
	closeErr    error

	stats struct {
		batches   atomic.Uint64 // Raft entries this node applied as leader
		commands  atomic.Uint64 // commands carried by them
		forwards  atomic.Uint64 // forward requests sent
		forwarded atomic.Uint64 // commands sent in them
		retries   atomic.Uint64 // batch sends that failed and were retried
		nudges    atomic.Uint64 // empty forward requests sent to make the leader append a Barrier
	}
}

var (
	_ lock.Coordinator = (*Store)(nil)
	_ journal.Journal  = (*Store)(nil)
)

// Open starts a node: it opens (or creates) the Raft state under
// cfg.DataDir/raft, discards any old fsm.db (Raft restores the latest
// snapshot into a fresh one and replays the log after it), and starts Raft
// and the Store's goroutines. A node with no Raft state does nothing until
// it is bootstrapped (Bootstrap) or added to a cluster by its leader
// (AddVoter, AddNonvoter); a node with state rejoins its cluster.
//
// Writes wait for a leader; reads see the local replica as it is (use Sync
// after Open to see everything committed).
func Open(cfg Config) (s *Store, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	s = &Store{
		cfg:       cfg,
		log:       cfg.Logger,
		origin:    string(cfg.NodeID) + "/" + hex.EncodeToString(nonce[:]),
		wake:      make(chan struct{}, 1),
		changed:   make(chan struct{}),
		closing:   make(chan struct{}),
		notifyCh:  make(chan bool, 16),
		observeCh: make(chan raft.Observation, 16),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.monotonic = cfg.Monotonic
	if s.monotonic == nil {
		origin := cfg.Now()
		s.monotonic = func() time.Duration { return cfg.Now().Sub(origin) }
	}
	s.log = s.log.With("raftlock", string(cfg.NodeID))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routeCtx, s.routeCancel = context.WithCancel(s.ctx)
	hlog := NewHCLogger(s.log)

	// On failure: the named result s is nil by the time this runs.
	cancel := s.cancel
	var closers []func() error
	defer func() {
		if err != nil {
			cancel()
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftlock: create %s: %w", dir, err)
	}
	// The log store first: its file lock keeps a second process off this
	// directory before anything in it is touched.
	s.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true},
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("raftlock: open %s: locked by another process (is another node using data dir %s?): %w", filepath.Join(dir, "raft.db"), cfg.DataDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("raftlock: open %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	closers = append(closers, s.logStore.Close)
	var logStore raft.LogStore = s.logStore
	if cfg.BeforeSync != nil {
		logStore = failpointLogStore{LogStore: s.logStore, before: cfg.BeforeSync}
	}
	logs, err := raft.NewLogCache(512, logStore)
	if err != nil {
		return nil, fmt.Errorf("raftlock: log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hlog.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("raftlock: snapshot store: %w", err)
	}
	s.fsm, err = openFSM(filepath.Join(dir, "fsm.db"), s.log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, s.fsm.close)

	s.trans = cfg.Transport
	if s.trans == nil {
		var advertise net.Addr
		if cfg.AdvertiseAddr != "" {
			if advertise, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
				return nil, fmt.Errorf("raftlock: AdvertiseAddr: %w", err)
			}
		}
		s.ownTrans, err = raft.NewTCPTransportWithConfig(cfg.BindAddr, advertise, transportConfig(cfg, nil, hlog))
		if err != nil {
			return nil, fmt.Errorf("raftlock: listen on %s: %w", cfg.BindAddr, err)
		}
		s.trans = s.ownTrans
		closers = append(closers, s.ownTrans.Close)
	}

	if s.hasState, err = raft.HasExistingState(logs, s.logStore, snaps); err != nil {
		return nil, fmt.Errorf("raftlock: read raft state: %w", err)
	}
	if cfg.PerDirServerID {
		if s.cfg.NodeID, err = resolveServerID(dir, cfg.NodeID, s.hasState); err != nil {
			return nil, err
		}
		s.log = s.log.With("serverID", string(s.cfg.NodeID))
	}
	rc := raft.DefaultConfig()
	rc.LocalID = s.cfg.NodeID
	rc.Logger = hlog.Named("raft")
	rc.NotifyCh = s.notifyCh
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftlock: raft config: %w", err)
	}
	var trans raft.Transport = s.trans
	var gate *voteGate
	if cfg.VoteGate != nil {
		if gate, err = newVoteGate(s.trans, s.cfg.NodeID, cfg.VoteGate, s.ctx.Done()); err != nil {
			return nil, err
		}
		trans = gate
		s.bgWG.Add(1)
		go func() {
			defer s.bgWG.Done()
			gate.run()
		}()
	}
	if s.raft, err = raft.NewRaft(rc, s.fsm, logs, s.logStore, snaps, trans); err != nil {
		return nil, fmt.Errorf("raftlock: start raft: %w", err)
	}
	if gate != nil {
		gate.r.Store(s.raft)
		s.gate = gate
	}
	s.observer = raft.NewObserver(s.observeCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(s.observer)

	s.bgWG.Add(1)
	go s.watchLeadership()
	s.committerWG.Add(1)
	go s.commitLoop()
	return s, nil
}

// Close stops the node: new operations fail with ErrClosed (journal's and
// lock's), the committer waits for the batch in flight to be answered (a
// forward request is cancelled after TransportTimeout) and fails what is
// still queued (with ErrClosed if it was never sent, ErrUnknownOutcome if
// an attempt was), Raft shuts down, in-flight reads finish, and the
// files and the TCP transport are closed. Sessions are not destroyed.
// Close may be called more than once; later calls wait for the first and
// return nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		s.signalWake()
		// The committer returns once the batch in flight is answered. A
		// forward request gets TransportTimeout to answer before it is
		// cancelled (its commands' outcome is then unknown).
		committed := make(chan struct{})
		go func() { s.committerWG.Wait(); close(committed) }()
		grace := time.NewTimer(s.cfg.TransportTimeout)
		select {
		case <-committed:
		case <-grace.C:
		}
		grace.Stop()
		s.cancel() // stops any Forward still in flight, and the leadership goroutines
		<-committed
		var errs []error
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftlock: raft shutdown: %w", err))
		}
		s.raft.DeregisterObserver(s.observer)
		s.bgWG.Wait()
		if nt, ok := s.trans.(*raft.NetworkTransport); ok {
			// The transport's Close (Shutdown called it) only stops
			// listening: the connections it pooled to other nodes stay
			// open, and so do the goroutines that serve them there,
			// until the garbage collector finalizes them. Close them now.
			nt.CloseStreams()
		}
		if s.ownTrans != nil {
			if err := s.ownTrans.Close(); err != nil {
				errs = append(errs, fmt.Errorf("raftlock: close transport: %w", err))
			}
		}
		if err := s.fsm.close(); err != nil {
			errs = append(errs, fmt.Errorf("raftlock: close state machine: %w", err))
		}
		if err := s.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftlock: close log: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	if first {
		return s.closeErr
	}
	return nil
}

// --- membership and introspection ---

// CaughtUp reports whether this server, a follower, has applied the log
// up to about the leader's commit index as the leader last told it (within
// MaxAppendEntries entries), and heard from the leader within an election
// timeout: it could vote and acknowledge without first replaying a
// backlog. The leader reports true.
func (s *Store) CaughtUp() bool {
	switch s.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
	default:
		return false
	}
	commit := s.raft.CommitIndex()
	if commit == 0 || time.Since(s.raft.LastContact()) > s.cfg.ElectionTimeout {
		return false
	}
	return s.raft.AppliedIndex()+uint64(max(s.cfg.MaxAppendEntries, 1)) >= commit
}

// LocalID is this node's Raft server id.
func (s *Store) LocalID() raft.ServerID { return s.cfg.NodeID }

// Addr is the Raft address peers reach this node at (the TCP listener's
// address, or the advertised one).
func (s *Store) Addr() raft.ServerAddress { return s.trans.LocalAddr() }

// LocalServer describes this node as a voter, for Bootstrap.
func (s *Store) LocalServer() raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: s.cfg.NodeID, Address: s.Addr()}
}

// HasState reports whether the node had Raft state (a log, a snapshot or a
// term) when it was opened: such a node must not be bootstrapped again; it
// rejoins its cluster on its own.
func (s *Store) HasState() bool { return s.hasState }

// Bootstrap creates a new cluster whose configuration is servers (which
// should include this node). Call it on one node only, or on every node
// with the same servers. It fails (wrapping raft.ErrCantBootstrap) if the
// node has state already.
func (s *Store) Bootstrap(servers []raft.Server) error {
	if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return fmt.Errorf("raftlock: bootstrap: %w", err)
	}
	return nil
}

// AddVoter adds (or promotes) a voting server. Leader only: elsewhere it
// fails with ErrNotLeader. It waits until the change is committed or Raft
// gives up (leadership lost, shutdown); ctx's deadline bounds the wait for
// Raft to take the change.
func (s *Store) AddVoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return s.membership(ctx, "add voter "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return s.raft.AddVoter(id, addr, 0, timeout)
	})
}

// AddNonvoter adds a server that receives the log but does not vote. Leader
// only, like AddVoter.
func (s *Store) AddNonvoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return s.membership(ctx, "add nonvoter "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return s.raft.AddNonvoter(id, addr, 0, timeout)
	})
}

// RemoveServer removes a server from the cluster. Leader only, like
// AddVoter.
func (s *Store) RemoveServer(ctx context.Context, id raft.ServerID) error {
	return s.membership(ctx, "remove server "+string(id), func(timeout time.Duration) raft.IndexFuture {
		return s.raft.RemoveServer(id, 0, timeout)
	})
}

func (s *Store) membership(ctx context.Context, what string, change func(timeout time.Duration) raft.IndexFuture) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.isClosed() {
		return errClosed
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	// Raft answers within a few round trips, or fails once it loses
	// leadership or shuts down; the deadline bounds the wait to enqueue.
	if err := change(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			id, addr := s.Leader()
			return fmt.Errorf("raftlock: %s: %w (leader is %q at %q): %w", what, ErrNotLeader, id, addr, err)
		}
		return fmt.Errorf("raftlock: %s: %w", what, err)
	}
	return nil
}

// Leader returns the id and address of the leader this node knows of;
// empty if none.
func (s *Store) Leader() (raft.ServerID, raft.ServerAddress) {
	addr, id := s.raft.LeaderWithID()
	return id, addr
}

// State is this node's Raft state (Follower, Candidate, Leader, Shutdown).
func (s *Store) State() raft.RaftState { return s.raft.State() }

// IsLeader reports whether this node is the leader and has finished taking
// office (its leader-start command is applied), so that it commits
// commands itself instead of forwarding them.
func (s *Store) IsLeader() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.ready
}

// Configuration returns the latest cluster configuration (servers and
// their suffrage).
func (s *Store) Configuration() (raft.Configuration, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("raftlock: configuration: %w", err)
	}
	return f.Configuration(), nil
}

// Stats returns Raft's statistics (raft.Raft.Stats) plus the Store's:
// fsm_applied_index, fsm_clock (the state machine's clock, RFC 3339),
// fsm_flushes (write-behind flushes of the state machine committed),
// batches and batch_commands (Raft entries this node committed as leader
// and the commands in them), forwards and forwarded_commands (requests this
// node sent to the leader and the commands in them), nudges (see
// HandleForward) and send_retries.
func (s *Store) Stats() map[string]string {
	st := maps.Clone(s.raft.Stats())
	applied, clock, failed := s.fsm.progress()
	st["fsm_applied_index"] = strconv.FormatUint(applied, 10)
	st["fsm_clock"] = time.Unix(0, clock).UTC().Format(time.RFC3339Nano)
	st["fsm_flushes"] = strconv.FormatUint(s.fsm.flushes.Load(), 10)
	if failed != nil {
		st["fsm_error"] = failed.Error()
	}
	st["batches"] = strconv.FormatUint(s.stats.batches.Load(), 10)
	st["batch_commands"] = strconv.FormatUint(s.stats.commands.Load(), 10)
	st["forwards"] = strconv.FormatUint(s.stats.forwards.Load(), 10)
	st["forwarded_commands"] = strconv.FormatUint(s.stats.forwarded.Load(), 10)
	st["send_retries"] = strconv.FormatUint(s.stats.retries.Load(), 10)
	st["nudges"] = strconv.FormatUint(s.stats.nudges.Load(), 10)
	return st
}

// AppliedIndex is the index of the last Raft entry applied to this node's
// state machine.
func (s *Store) AppliedIndex() uint64 {
	applied, _, _ := s.fsm.progress()
	return applied
}

// Snapshot asks Raft to snapshot the state machine now (and truncate the
// log), instead of waiting for SnapshotInterval and SnapshotThreshold.
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftlock: snapshot: %w", err)
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
