package raftlock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
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
	origin string        // command id origin: node id and a random nonce
	seq    atomic.Uint64 // last command id number issued
	fsm    *fsm
	// rep replicates the commands for fsm: the committer, forwarding,
	// leadership and the office clock, Raft and membership.
	rep *replica.Group[result]
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
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	s := &Store{cfg: cfg, origin: string(cfg.NodeID) + "/" + hex.EncodeToString(nonce[:])}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("raftlock", string(cfg.NodeID))
	dir, name := groupDir(cfg.DataDir, cfg.Group), "raftlock"
	if cfg.Group > 0 {
		name += "/g" + strconv.Itoa(cfg.Group)
		log = log.With("group", cfg.Group)
	}
	rc := raft.DefaultConfig()
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	rep, err := replica.Open(replica.Config[result]{
		Name:                name,
		NodeID:              cfg.NodeID,
		PerDirServerID:      cfg.PerDirServerID,
		VoteGate:            cfg.VoteGate,
		Dir:                 dir,
		LogStore:            cfg.LogStore,
		WALSegmentSize:      cfg.WALSegmentSize,
		BindAddr:            cfg.BindAddr,
		AdvertiseAddr:       cfg.AdvertiseAddr,
		Transport:           cfg.Transport,
		TransportMaxPool:    cfg.TransportMaxPool,
		TransportTimeout:    cfg.TransportTimeout,
		AcceptTimeout:       cfg.acceptTimeout,
		Forwarder:           cfg.Forwarder,
		LeaderHint:          cfg.LeaderHint,
		Partial:             cfg.Partial,
		Now:                 cfg.Now,
		Monotonic:           cfg.Monotonic,
		Logger:              log,
		HCLogger:            NewHCLogger(log),
		Raft:                *rc,
		SnapshotRetain:      cfg.SnapshotRetain,
		MaxBatch:            cfg.MaxBatch,
		MaxBatchBytes:       cfg.MaxBatchBytes,
		MaxInFlight:         cfg.MaxInFlight,
		MaxForwardsInFlight: cfg.MaxForwardsInFlight,
		ForwardTimeout:      cfg.ForwardTimeout,
		BeforeSync:          cfg.BeforeSync,
		OpenFSM: func(log *slog.Logger) (replica.FSM, error) {
			f, err := openFSM(filepath.Join(dir, "fsm.db"), log)
			if err != nil {
				return nil, err
			}
			f.queueRetention = cfg.MessageIDRetention
			s.fsm = f
			return f, nil
		},
		Codec:        codec{},
		Wire:         wire,
		Errors:       replica.Errors{Closed: errClosed, NotLeader: ErrNotLeader, UnknownOutcome: ErrUnknownOutcome, StateMachine: ErrStateMachine, NotReplica: ErrNotReplica},
		TakeOffice:   takeOffice,
		WhileLeading: s.reap,
	})
	if err != nil {
		return nil, err
	}
	s.rep = rep
	s.cfg.NodeID = rep.LocalID()
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
func (s *Store) Close() error { return s.rep.Close() }

// --- membership and introspection ---

// CaughtUp reports whether this server, a follower, has applied the log
// up to about the leader's commit index as the leader last told it (within
// MaxAppendEntries entries), and heard from the leader within an election
// timeout: it could vote and acknowledge without first replaying a
// backlog. The leader reports true.
func (s *Store) CaughtUp() bool { return s.rep.CaughtUp() }

// LocalID is this node's Raft server id.
func (s *Store) LocalID() raft.ServerID { return s.rep.LocalID() }

// Addr is the Raft address peers reach this node at (the TCP listener's
// address, or the advertised one).
func (s *Store) Addr() raft.ServerAddress { return s.rep.Addr() }

// LocalServer describes this node as a voter, for Bootstrap.
func (s *Store) LocalServer() raft.Server { return s.rep.LocalServer() }

// HasState reports whether the node had Raft state (a log, a snapshot or a
// term) when it was opened: such a node must not be bootstrapped again; it
// rejoins its cluster on its own.
func (s *Store) HasState() bool { return s.rep.HasState() }

// Bootstrap creates a new cluster whose configuration is servers (which
// should include this node). Call it on one node only, or on every node
// with the same servers. It fails (wrapping raft.ErrCantBootstrap) if the
// node has state already.
func (s *Store) Bootstrap(servers []raft.Server) error { return s.rep.Bootstrap(servers) }

// AddVoter adds (or promotes) a voting server. Leader only: elsewhere it
// fails with ErrNotLeader. It waits until the change is committed or Raft
// gives up (leadership lost, shutdown); ctx's deadline bounds the wait for
// Raft to take the change.
func (s *Store) AddVoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return s.rep.AddVoter(ctx, id, addr)
}

// AddNonvoter adds a server that receives the log but does not vote. Leader
// only, like AddVoter.
func (s *Store) AddNonvoter(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return s.rep.AddNonvoter(ctx, id, addr)
}

// RemoveServer removes a server from the cluster. Leader only, like
// AddVoter.
func (s *Store) RemoveServer(ctx context.Context, id raft.ServerID) error {
	return s.rep.RemoveServer(ctx, id)
}

// TransferLeadership hands this node's leadership of its group to the
// voter id at addr, and returns once that server has won an election, or
// with ErrNotLeader on a node that does not lead.
func (s *Store) TransferLeadership(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return s.rep.TransferLeadership(ctx, id, addr)
}

// Leader returns the id and address of the leader this node knows of;
// empty if none.
func (s *Store) Leader() (raft.ServerID, raft.ServerAddress) { return s.rep.Leader() }

// LeaderChanged returns a channel that is closed the next time the
// leader this node knows of changes, or this node takes or leaves office.
func (s *Store) LeaderChanged() <-chan struct{} { return s.rep.LeaderChanged() }

// State is this node's Raft state (Follower, Candidate, Leader, Shutdown).
func (s *Store) State() raft.RaftState { return s.rep.State() }

// IsLeader reports whether this node is the leader and has finished taking
// office (its leader-start command is applied), so that it commits
// commands itself instead of forwarding them.
func (s *Store) IsLeader() bool { return s.rep.IsLeader() }

// Configuration returns the latest cluster configuration (servers and
// their suffrage).
func (s *Store) Configuration() (raft.Configuration, error) { return s.rep.Configuration() }

// Stats returns Raft's statistics (raft.Raft.Stats) plus the Store's:
// fsm_applied_index, fsm_clock (the state machine's clock, RFC 3339),
// fsm_flushes (write-behind flushes of the state machine committed),
// batches and batch_commands (Raft entries this node committed as leader
// and the commands in them), forwards and forwarded_commands (requests this
// node sent to the leader and the commands in them), nudges (see
// HandleForward) and send_retries.
func (s *Store) Stats() map[string]string {
	st := s.rep.Stats()
	st["fsm_flushes"] = strconv.FormatUint(s.fsm.flushes.Load(), 10)
	return st
}

// AppliedIndex is the index of the last Raft entry applied to this node's
// state machine.
func (s *Store) AppliedIndex() uint64 { return s.rep.AppliedIndex() }

// Snapshot asks Raft to snapshot the state machine now (and truncate the
// log), instead of waiting for SnapshotInterval and SnapshotThreshold.
func (s *Store) Snapshot() error { return s.rep.Snapshot() }

// VotesRefused is how many vote and pre-vote requests this server refused
// because it was not in its own configuration (see Config.VoteGate).
func (s *Store) VotesRefused() uint64 { return s.rep.VotesRefused() }

// NodeOf is the node a Raft server id belongs to: the id without the
// per-data-dir suffix Config.PerDirServerID adds, or the id itself when it
// has none (a server id made by an earlier release, or a test's).
func NodeOf(id raft.ServerID) string { return replica.NodeOf(id) }
