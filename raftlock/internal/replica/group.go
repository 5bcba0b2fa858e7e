package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Forwarder carries a forward request from a follower to the leader.
// Forward must deliver batch to the Group named leader (at its Raft
// address leaderAddr; a transport maps that to its own address) and return
// what that Group's HandleForward returned: its bytes, or an error. Any
// error means the outcome is unknown; the committer sends the same
// commands again, flagged as retries, until their callers' contexts end.
type Forwarder interface {
	Forward(ctx context.Context, leader raft.ServerID, leaderAddr raft.ServerAddress, batch []byte) ([]byte, error)
}

// FSM is the state machine a Group replicates. Raft calls its ApplyBatch,
// Snapshot and Restore; ApplyBatch answers each command entry (a batch,
// Wire.EncodeBatch) with a Response. The Group reads its progress, waits
// for it, and closes it last in Close.
type FSM interface {
	raft.BatchingFSM
	// Progress returns the index of the last entry applied, the state
	// machine's clock (the largest stamp applied, UnixNano) and the
	// failure that stopped it from applying, if any.
	Progress() (applied uint64, clock int64, failed error)
	// WaitApplied blocks until index has been applied (nil), ctx ends
	// (ctx.Err()), stop is closed (an error matching Errors.Closed) or the
	// state machine fails (its failure, matching Errors.StateMachine).
	WaitApplied(ctx context.Context, index uint64, stop <-chan struct{}) error
	// Close closes the state machine. Raft has shut down.
	Close() error
}

// Response is what an FSM's ApplyBatch answers a command entry with, and
// so what the leader's ApplyFuture.Response holds: the entry's index and
// one result per command, in order, or the error that kept the whole entry
// from being applied.
type Response[R any] interface {
	Outcome() (index uint64, results []R, err error)
}

// Codec is what a Group needs to know of its user's commands and results,
// which are otherwise opaque bytes and values to it.
type Codec[R any] interface {
	// Name names the encoded command cmd in error messages ("append").
	Name(cmd []byte) string
	// MarkRetry flags cmd, in place, as a copy that may not be the first
	// to reach the log (the committer sends the same bytes again, flagged,
	// after an attempt whose outcome is unknown); a command the state
	// machine does not deduplicate stays as it is.
	MarkRetry(cmd []byte)
	// EncodeResult and DecodeResult are a result's form in a forward
	// response.
	EncodeResult(R) []byte
	DecodeResult([]byte) (R, error)
	// Retry is the result with which a node answers a forwarded command
	// it did not commit because it is not the leader (any more), text
	// saying so; IsRetry recognises it, and the follower sends the
	// command again.
	Retry(text string) R
	IsRetry(R) bool
}

// Sentinel errors a Group's errors wrap when Config.Errors leaves them
// nil.
var (
	ErrClosed         = errors.New("replica: closed")
	ErrNotLeader      = errors.New("replica: not the leader")
	ErrUnknownOutcome = errors.New("replica: outcome unknown")
	ErrStateMachine   = errors.New("replica: state machine failed")
	ErrNotReplica     = errors.New("replica: this node does not replicate the group")
)

// Errors are the sentinels a Group's errors wrap, its user's own, so that
// its user's callers test one set of sentinels whichever layer failed.
type Errors struct {
	// Closed: every method after Close; also what FSM.WaitApplied returns
	// once its stop channel is closed.
	Closed error
	// NotLeader: HandleForward, AddVoter, AddNonvoter and RemoveServer on
	// a node that is not the leader (or has not taken office). No effect.
	NotLeader error
	// UnknownOutcome: a command was handed to Raft or to the leader, and
	// its caller's context ended or the Group closed before its outcome
	// was known.
	UnknownOutcome error
	// StateMachine: the FSM failed, or answered an entry with something
	// that is not a Response of its commands; its failures wrap it too.
	StateMachine error
	// NotReplica: BeforeRead on a Partial node that does not replicate the
	// group (Replicating is false). No effect.
	NotReplica error
}

func (e Errors) orDefaults() Errors {
	for _, f := range []struct {
		p   *error
		def error
	}{{&e.Closed, ErrClosed}, {&e.NotLeader, ErrNotLeader}, {&e.UnknownOutcome, ErrUnknownOutcome}, {&e.StateMachine, ErrStateMachine}, {&e.NotReplica, ErrNotReplica}} {
		if *f.p == nil {
			*f.p = f.def
		}
	}
	return e
}

// Config configures a Group. Open does not validate the settings (its
// user does: raftlock.Config.Validate); Raft validates its own.
type Config[R any] struct {
	// Name prefixes the Group's error messages and log lines ("raftlock").
	Name string
	// NodeID is the Raft server id (with PerDirServerID: the node's name,
	// from which the data dir's server id is made; see NodeOf).
	NodeID         raft.ServerID
	PerDirServerID bool
	// VoteGate, if not nil, decides whether this server may vote while it
	// is not in its own latest configuration (see votegate.go).
	VoteGate func() bool
	// Dir holds the Group's files: the Raft log and stable store (raft.db,
	// or wal/ with LogStore LogStoreWAL), snapshots/, server-id, and
	// whatever OpenFSM puts there.
	Dir string
	// LogStore is the Raft log and stable store: LogStoreBolt,
	// raft-boltdb/v2, or LogStoreWAL, hashicorp/raft-wal; LogStoreAuto
	// ("" too) is the kind Dir holds, raft-wal for a new one. A Dir keeps
	// the kind it was made with: opening it with the other is an error.
	LogStore string
	// WALSegmentSize is the size at which raft-wal starts a new segment
	// file (0: raft-wal's default, 64 MiB). Old entries are deleted a
	// whole segment at a time.
	WALSegmentSize int
	// BindAddr and AdvertiseAddr are the TCP transport's, when Transport
	// is nil; TransportMaxPool and TransportTimeout configure it.
	// TransportTimeout also bounds how long Close waits for a forward
	// request in flight.
	BindAddr         string
	AdvertiseAddr    string
	Transport        raft.Transport // owned by the caller: Close does not close it
	TransportMaxPool int
	TransportTimeout time.Duration
	// AcceptTimeout bounds the silence of a connection the TCP transport
	// accepted, up to its first request (see the constant AcceptTimeout,
	// which 0 means).
	AcceptTimeout time.Duration
	// Forwarder carries commands to the leader; nil fails them on a
	// follower (no effect).
	Forwarder Forwarder
	// LeaderHint, if not nil, names the leader when Raft knows none here
	// (a node outside the group hears from no leader): the committer
	// forwards there. A wrong hint costs a refused forward and a retry.
	LeaderHint func() (raft.ServerID, raft.ServerAddress)
	// Partial says the group runs on some of the nodes, and this node may
	// be outside it. While the node does not replicate the group
	// (Replicating is false), Exec does not wait for its replica to apply
	// a command (the leader's answer is the result) and BeforeRead refuses
	// with Errors.NotReplica.
	Partial bool
	// Now is the wall clock a new leader's office clock starts from;
	// Monotonic (nil: Now's elapsed time) is what it advances by.
	Now       func() time.Time
	Monotonic func() time.Duration
	// Logger receives the Group's logs (nil discards them), HCLogger
	// Raft's (nil discards them).
	Logger   *slog.Logger
	HCLogger hclog.Logger
	// Raft is Raft's configuration (timeouts, snapshots); Open sets its
	// LocalID, Logger and NotifyCh. CommitTimeout, ElectionTimeout and
	// MaxAppendEntries are the Group's too (nudges, CaughtUp).
	Raft           raft.Config
	SnapshotRetain int
	// MaxBatch and MaxBatchBytes bound one batch; MaxInFlight bounds the
	// batches committed to Raft at once, MaxForwardsInFlight those
	// forwarded to the leader. ForwardTimeout bounds one forward request.
	MaxBatch            int
	MaxBatchBytes       int
	MaxInFlight         int
	MaxForwardsInFlight int
	ForwardTimeout      time.Duration
	// BeforeSync, if not nil, is called before every write to the Raft
	// log store; an error fails the write (a failpoint).
	BeforeSync func() error

	// OpenFSM opens the state machine, after the log store has locked Dir
	// and before Raft starts; log is the Group's logger.
	OpenFSM func(log *slog.Logger) (FSM, error)
	Codec   Codec[R]
	Wire    Wire
	Errors  Errors
	// TakeOffice, if not nil, runs on a new leader once a Barrier has
	// applied every entry of earlier terms here and its office clock is
	// set, before the committer uses the node as the leader: commit
	// appends cmds as one entry of their own, stamped with the office
	// clock, and returns their results once applied here (if the state
	// machine fails to apply it, the node hands leadership to another).
	// An error leaves the node leader but not in office until the next
	// election.
	TakeOffice func(ctx context.Context, commit func(cmds ...[]byte) ([]R, error)) error
	// WhileLeading, if not nil, runs once the node has taken office,
	// until ctx ends with its leadership (or Close).
	WhileLeading func(ctx context.Context, g *Group[R])
}

// Group is one node's member of a Raft group that commits commands of its
// user's for a state machine (FSM): group commit, forwarding to the
// leader, retries, the leader's office clock and membership. See the
// package documentation for what it guarantees and who owns which state.
type Group[R any] struct {
	cfg   Config[R]
	name  string        // Config.Name
	id    raft.ServerID // the Raft server id: NodeID, or the data dir's
	log   *slog.Logger
	codec Codec[R]
	wire  Wire
	errs  Errors
	// lastWrite is the highest log index of a command this node committed
	// without waiting for its own replica (Exec without wait); reads wait
	// until the replica has applied it (BeforeRead).
	lastWrite atomic.Uint64
	// office is this node's clock while it leads (see Stamp); nil otherwise.
	office atomic.Pointer[officeClock]
	// monotonic reads Config.Monotonic, or Now's elapsed time.
	monotonic func() time.Duration

	fsm       FSM
	raft      *raft.Raft
	logStore  logStore
	stable    *closingStable // logStore as Raft's stable store (stable.go)
	trans     raft.Transport
	ownTrans  *raft.NetworkTransport // the TCP transport Open made, closed by Close
	hasState  bool
	gate      *voteGate // nil without Config.VoteGate
	observer  *raft.Observer
	notifyCh  chan bool
	observeCh chan raft.Observation

	// The committer's queue, guarded by mu.
	mu     sync.Mutex
	queue  []*call[R]
	closed bool
	wake   chan struct{} // buffered(1): the queue became non-empty, or closed was set

	// Leadership, guarded by lmu: whether this node is the leader and has
	// taken office (ready), and a channel closed on every change of
	// either or of the known leader.
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
	bgWG        sync.WaitGroup     // the leadership watcher, leadership goroutines, the vote gate
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

// Open starts a node of the group: it opens (or creates) the Raft state in
// cfg.Dir (the log store first: its file lock keeps a second process off
// the directory), opens the state machine (OpenFSM), the transport, and
// starts Raft and the Group's goroutines. A node with no Raft state does
// nothing until it is bootstrapped (Bootstrap) or added to a cluster by
// its leader (AddVoter, AddNonvoter); a node with state rejoins its
// cluster.
func Open[R any](cfg Config[R]) (g *Group[R], err error) {
	if cfg.OpenFSM == nil || cfg.Codec == nil || cfg.Now == nil {
		return nil, errors.New("replica: Config needs OpenFSM, Codec and Now")
	}
	g = &Group[R]{
		cfg:       cfg,
		name:      cfg.Name,
		id:        cfg.NodeID,
		log:       cfg.Logger,
		codec:     cfg.Codec,
		wire:      cfg.Wire,
		errs:      cfg.Errors.orDefaults(),
		wake:      make(chan struct{}, 1),
		changed:   make(chan struct{}),
		closing:   make(chan struct{}),
		notifyCh:  make(chan bool, 16),
		observeCh: make(chan raft.Observation, 16),
	}
	if g.name == "" {
		g.name = "replica"
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	hlog := cfg.HCLogger
	if hlog == nil {
		hlog = hclog.NewNullLogger()
	}
	g.monotonic = cfg.Monotonic
	if g.monotonic == nil {
		origin := cfg.Now()
		g.monotonic = func() time.Duration { return cfg.Now().Sub(origin) }
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.routeCtx, g.routeCancel = context.WithCancel(g.ctx)

	// On failure: the named result g is nil by the time this runs.
	cancel := g.cancel
	var closers []func() error
	defer func() {
		if err != nil {
			cancel()
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	dir := cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: create %s: %w", g.name, dir, err)
	}
	// The log store first: its file lock keeps a second process off this
	// directory before anything in it is touched.
	if g.logStore, err = openLogStore(dir, cfg.LogStore, cfg.WALSegmentSize, hlog.Named("wal")); err != nil {
		return nil, fmt.Errorf("%s: %w", g.name, err)
	}
	closers = append(closers, g.logStore.Close)
	var logStore raft.LogStore = g.logStore
	if cfg.BeforeSync != nil {
		logStore = failpointLogStore{LogStore: g.logStore, before: cfg.BeforeSync}
	}
	logs, err := raft.NewLogCache(512, logStore)
	if err != nil {
		return nil, fmt.Errorf("%s: log cache: %w", g.name, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hlog.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot store: %w", g.name, err)
	}
	if g.fsm, err = cfg.OpenFSM(g.log); err != nil {
		return nil, err
	}
	closers = append(closers, g.fsm.Close)

	g.trans = cfg.Transport
	if g.trans == nil {
		var advertise net.Addr
		if cfg.AdvertiseAddr != "" {
			if advertise, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
				return nil, fmt.Errorf("%s: AdvertiseAddr: %w", g.name, err)
			}
		}
		acceptTimeout := cfg.AcceptTimeout
		if acceptTimeout <= 0 {
			acceptTimeout = AcceptTimeout
		}
		g.ownTrans, err = newTCPTransport(cfg.BindAddr, advertise, acceptTimeout, TransportConfig(nil, cfg.TransportMaxPool, cfg.TransportTimeout, hlog))
		if err != nil {
			return nil, fmt.Errorf("%s: listen on %s: %w", g.name, cfg.BindAddr, err)
		}
		g.trans = g.ownTrans
		closers = append(closers, g.ownTrans.Close)
	}

	if g.hasState, err = raft.HasExistingState(logs, g.logStore, snaps); err != nil {
		return nil, fmt.Errorf("%s: read raft state: %w", g.name, err)
	}
	if cfg.PerDirServerID {
		if g.id, err = resolveServerID(dir, cfg.NodeID, g.hasState); err != nil {
			return nil, fmt.Errorf("%s: %w", g.name, err)
		}
		g.log = g.log.With("serverID", string(g.id))
	}
	rc := cfg.Raft
	rc.LocalID = g.id
	rc.Logger = hlog.Named("raft")
	rc.NotifyCh = g.notifyCh
	if err := raft.ValidateConfig(&rc); err != nil {
		return nil, fmt.Errorf("%s: raft config: %w", g.name, err)
	}
	var trans raft.Transport = g.trans
	var gate *voteGate
	if cfg.VoteGate != nil {
		if gate, err = newVoteGate(g.trans, g.id, cfg.VoteGate, g.ctx.Done()); err != nil {
			return nil, fmt.Errorf("%s: %w", g.name, err)
		}
		trans = gate
		g.bgWG.Go(gate.run)
	}
	g.stable = &closingStable{StableStore: g.logStore}
	if g.raft, err = raft.NewRaft(&rc, g.fsm, logs, g.stable, snaps, trans); err != nil {
		return nil, fmt.Errorf("%s: start raft: %w", g.name, err)
	}
	if gate != nil {
		gate.r.Store(g.raft)
		g.gate = gate
	}
	g.observer = raft.NewObserver(g.observeCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	g.raft.RegisterObserver(g.observer)

	g.bgWG.Add(1)
	go g.watchLeadership()
	g.committerWG.Add(1)
	go g.commitLoop()
	return g, nil
}

// Close stops the node: new operations fail with Errors.Closed, the
// committer waits for the batch in flight to be answered (a forward
// request is cancelled after TransportTimeout) and fails what is still
// queued (with Errors.Closed if it was never sent, Errors.UnknownOutcome
// if an attempt was), Raft shuts down, and the transport's connections,
// the TCP transport Open made, the state machine and the log store are
// closed. Close may be called more than once; later calls wait for the
// first and return nil.
func (g *Group[R]) Close() error {
	first := false
	g.closeOnce.Do(func() {
		first = true
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		close(g.closing)
		g.signalWake()
		// The committer returns once the batch in flight is answered. A
		// forward request gets TransportTimeout to answer before it is
		// cancelled (its commands' outcome is then unknown).
		committed := make(chan struct{})
		go func() { g.committerWG.Wait(); close(committed) }()
		grace := time.NewTimer(g.cfg.TransportTimeout)
		select {
		case <-committed:
		case <-grace.C:
		}
		grace.Stop()
		g.cancel() // stops any Forward still in flight, and the leadership goroutines
		<-committed
		var errs []error
		if err := g.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("%s: raft shutdown: %w", g.name, err))
		}
		g.raft.DeregisterObserver(g.observer)
		g.bgWG.Wait()
		if nt, ok := g.trans.(*raft.NetworkTransport); ok {
			// The transport's Close (Shutdown called it) only stops
			// listening: the connections it pooled to other nodes stay
			// open, and so do the goroutines that serve them there,
			// until the garbage collector finalizes them. Close them now.
			nt.CloseStreams()
		}
		if g.ownTrans != nil {
			if err := g.ownTrans.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: close transport: %w", g.name, err))
			}
		}
		if err := g.fsm.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close state machine: %w", g.name, err))
		}
		g.stable.close() // a heartbeat may still be running (stable.go)
		if err := g.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close log: %w", g.name, err))
		}
		g.closeErr = errors.Join(errs...)
	})
	if first {
		return g.closeErr
	}
	return nil
}

func (g *Group[R]) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Logger is the logger the Group logs to: Config.Logger, with the server
// id when it is the data dir's.
func (g *Group[R]) Logger() *slog.Logger { return g.log }
