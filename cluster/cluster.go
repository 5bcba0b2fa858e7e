package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// Sentinel errors. Every error this package returns that matches one of
// these wraps it; check with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate found a problem.
	ErrInvalidConfig = errors.New("cluster: invalid config")
	// ErrMetaTooLarge: the encoded Meta does not fit memberlist's
	// MaxMetaSize bytes.
	ErrMetaTooLarge = errors.New("cluster: meta too large")
	// ErrJoinFailed: Start could not join through any seed within
	// JoinTimeout (or before its context ended). The error is a
	// *JoinError.
	ErrJoinFailed = errors.New("cluster: join failed")
	// ErrDuplicateID: another live node already uses this node's id.
	ErrDuplicateID = errors.New("cluster: duplicate node id")
	// ErrNotStarted: the call needs a started Cluster.
	ErrNotStarted = errors.New("cluster: not started")
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("cluster: already started")
	// ErrClosed: the Cluster has stopped (Leave, Close, or a failed
	// Start); it cannot be started again. Build a new one.
	ErrClosed = errors.New("cluster: closed")
	// ErrPortInUse: the gossip listener could not bind its port, which
	// another socket holds.
	ErrPortInUse = errors.New("cluster: gossip port in use")
)

// JoinError is returned by Start when no seed answered. It wraps
// ErrJoinFailed and the last attempt's error (which wraps ErrDuplicateID if
// the seeds kept reporting this node's id at another address, and the
// context's error if Start's context ended).
type JoinError struct {
	Seeds    []string
	Attempts int
	Elapsed  time.Duration
	Err      error
}

func (e *JoinError) Error() string {
	return fmt.Sprintf("cluster: could not join any of %v: %d attempt(s) in %v: %v",
		e.Seeds, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Err)
}

func (e *JoinError) Unwrap() []error { return []error{ErrJoinFailed, e.Err} }

type lifecycle int

const (
	lifeNew lifecycle = iota
	lifeRunning
	lifeStopped
)

// Cluster is this node's membership in the cluster. Build it with New, then
// Start it; Leave or Close it when done. All methods are safe for
// concurrent use.
type Cluster struct {
	cfg   Config
	log   *slog.Logger // this package's logs
	mlLog *slog.Logger // memberlist's
	seeds []string     // Config.Seeds, de-duplicated
	d     *delegate

	metaBytes atomic.Pointer[[]byte] // what NodeMeta returns

	// lifeMu serialises Start, Leave, UpdateMeta and Close, and guards
	// life, ml and the rejoin loop's channels. It is never taken while mu
	// is held, nor from a memberlist callback.
	lifeMu   sync.Mutex
	life     lifecycle
	ml       *memberlist.Memberlist
	stopLoop chan struct{} // closed to stop the rejoin loop
	loopDone chan struct{} // closed when the rejoin loop has returned

	kr atomic.Pointer[memberlist.Keyring] // the gossip keyring; nil without keys or before Start

	closing   chan struct{} // closed when Close begins; aborts Start's retries
	closeOnce sync.Once
	closeErr  error

	// mu guards the member registry, the subscribers, the local Meta and
	// the join-conflict record. memberlist's callbacks take it (while
	// memberlist holds its own node lock), so nothing here calls into
	// memberlist while holding mu.
	mu         sync.Mutex
	meta       Meta
	members    map[string]*entry
	subs       map[*subscriber]struct{}
	subsClosed bool
	joining    bool
	conflict   string // address of a live member with our id seen while joining
}

// entry is the registry's record of one member.
type entry struct {
	m       Member
	leaving bool // the member announced a graceful leave
}

// New checks cfg and builds a Cluster. It starts nothing: no socket, no
// goroutine.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Seeds = slices.Clone(cfg.Seeds)
	meta := cfg.Meta
	meta.NodeID = cfg.NodeID
	b, err := encodeMeta(meta, false)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		cfg:     cfg,
		log:     logger.With("node", cfg.NodeID, "component", "cluster"),
		mlLog:   logger.With("node", cfg.NodeID, "component", "memberlist"),
		seeds:   dedupe(cfg.Seeds),
		closing: make(chan struct{}),
		meta:    meta,
		members: make(map[string]*entry),
		subs:    make(map[*subscriber]struct{}),
	}
	c.d = &delegate{c: c}
	c.metaBytes.Store(&b)
	return c, nil
}

// Start creates the memberlist (binding the gossip port) and, if there are
// seeds other than this node, joins the cluster through them. Each attempt
// tries every seed in parallel; attempts are retried with backoff until one
// seed answers, JoinTimeout passes, ctx ends or Close is called. Then Start
// fails with a *JoinError (wrapping ErrJoinFailed) naming the seeds. A join
// attempt in flight is not interrupted, so Start may return up to
// TCPTimeout late.
//
// If a seed's cluster has a live member with this node's id at another
// address that answers a ping, Start fails at once with an error wrapping
// ErrDuplicateID; the other member is not disturbed. (If that address does
// not answer, the record is taken to be a previous incarnation of this node
// that failure detection has not yet removed, and Start keeps retrying.)
//
// On success Start launches the rejoin loop and returns. On failure the
// Cluster is stopped; Close is still safe to call. Start may be called once.
func (c *Cluster) Start(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.life {
	case lifeRunning:
		return ErrAlreadyStarted
	case lifeStopped:
		return ErrClosed
	}
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	c.life = lifeStopped // until Start succeeds

	mc := c.cfg.memberlistConfig(c.d, c.mlLog)
	if mc.Keyring != nil {
		c.kr.Store(mc.Keyring)
	}
	ml, err := memberlist.Create(mc)
	if err := startError(err); err != nil {
		return err
	}
	local := ml.LocalNode()
	c.log.Info("gossip started", "addr", local.Address())

	seeds := c.seedsExceptSelf(local)
	if len(seeds) > 0 {
		if err := c.join(ctx, ml, seeds); err != nil {
			_ = ml.Shutdown()
			c.log.Error("start failed", "err", err)
			return err
		}
	} else if len(c.seeds) > 0 {
		c.log.Info("every seed is this node; starting alone")
	}

	c.ml = ml
	c.life = lifeRunning
	c.stopLoop = make(chan struct{})
	c.loopDone = make(chan struct{})
	go c.rejoinLoop(ml, seeds, c.stopLoop, c.loopDone)
	return nil
}

const (
	joinBackoffMin = 100 * time.Millisecond
	joinBackoffMax = 5 * time.Second
	// maxParallelJoins bounds the joins one attempt runs at once.
	maxParallelJoins = 8
)

// join runs Start's retry loop.
func (c *Cluster) join(ctx context.Context, ml *memberlist.Memberlist, seeds []string) error {
	begin := time.Now()
	jctx, cancel := context.WithTimeout(ctx, c.cfg.JoinTimeout)
	defer cancel()
	c.setJoining(true)
	defer c.setJoining(false)

	backoff := joinBackoffMin
	var lastErr error
	for attempt := 1; ; attempt++ {
		n, err := c.joinAll(ml, seeds)
		if addr := c.takeConflict(); addr != "" {
			if c.answers(ml, addr) {
				return fmt.Errorf("cluster: node id %q is already used by a live member at %s: %w",
					c.cfg.NodeID, addr, ErrDuplicateID)
			}
			c.log.Warn("a seed lists this node id at another address that does not answer; "+
				"assuming it is a previous incarnation and retrying", "other", addr)
			if n == 0 {
				err = fmt.Errorf("node id %q is still listed as alive at %s, which does not answer: %w",
					c.cfg.NodeID, addr, ErrDuplicateID)
			}
		}
		if n > 0 || ml.NumMembers() > 1 {
			c.log.Info("joined the cluster", "seeds", seeds, "answered", n, "members", ml.NumMembers(),
				"attempts", attempt, "elapsed", time.Since(begin).Round(time.Millisecond))
			return nil
		}
		lastErr = err
		c.log.Debug("join attempt failed", "attempt", attempt, "err", err)

		wait := jitter(backoff)
		backoff = min(2*backoff, joinBackoffMax)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			continue
		case <-jctx.Done():
		case <-c.closing:
			lastErr = fmt.Errorf("%w (%w)", lastErr, ErrClosed)
		}
		t.Stop()
		if ctx.Err() != nil {
			lastErr = fmt.Errorf("%w (%w)", lastErr, ctx.Err())
		}
		return &JoinError{Seeds: seeds, Attempts: attempt, Elapsed: time.Since(begin), Err: lastErr}
	}
}

// joinAll joins through every address in parallel (at most
// maxParallelJoins at once) and waits for all of them. It returns how many
// answered and, if none did, what went wrong with each.
func (c *Cluster) joinAll(ml *memberlist.Memberlist, addrs []string) (int, error) {
	errs := make([]error, len(addrs))
	sem := make(chan struct{}, maxParallelJoins)
	var wg sync.WaitGroup
	for i, a := range addrs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := ml.Join([]string{a}); err != nil {
				errs[i] = flattenJoinError(a, err)
			}
		})
	}
	wg.Wait()
	n := 0
	var failed []error
	for _, err := range errs {
		if err == nil {
			n++
		} else {
			failed = append(failed, err)
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, joinErrors(failed)
}

// flattenJoinError turns memberlist's multi-line multierror into one line.
func flattenJoinError(addr string, err error) error {
	var multi interface{ WrappedErrors() []error }
	if errors.As(err, &multi) {
		if inner := multi.WrappedErrors(); len(inner) == 1 {
			return inner[0]
		} else if len(inner) > 1 {
			return joinErrors(inner)
		}
	}
	return fmt.Errorf("failed to join %s: %w", addr, err)
}

// joinErrors is errors.Join on one line.
type joinErrors []error

func (e joinErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e joinErrors) Unwrap() []error { return e }

// answers reports whether a memberlist node named with this node's id
// answers pings at addr.
func (c *Cluster) answers(ml *memberlist.Memberlist, addr string) bool {
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return false
	}
	for range 3 {
		if _, err := ml.Ping(c.cfg.NodeID, udp); err == nil {
			return true
		}
	}
	return false
}

func (c *Cluster) setJoining(v bool) {
	c.mu.Lock()
	c.joining = v
	c.conflict = ""
	c.mu.Unlock()
}

func (c *Cluster) takeConflict() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.conflict
	c.conflict = ""
	return a
}

// seedsExceptSelf returns the seeds that are not this node's own address.
func (c *Cluster) seedsExceptSelf(local *memberlist.Node) []string {
	self := map[string]bool{local.Address(): true}
	port := strconv.Itoa(int(local.Port))
	self[net.JoinHostPort(c.cfg.BindAddr, port)] = true
	if local.Addr.IsLoopback() {
		self[net.JoinHostPort("localhost", port)] = true
	}
	var out []string
	for _, s := range c.seeds {
		if !self[canonicalHostPort(s)] {
			out = append(out, s)
		}
	}
	return out
}

// canonicalHostPort writes IP literals in their canonical form so that
// "127.000.0.1:1" or "[::1]:1" compare equal to memberlist's addresses.
func canonicalHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// jitter returns d ± 10%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/10 + rand.N(d/5+1)
}

// rejoinLoop joins, every RejoinInterval, the seeds (other than this node)
// and the last known addresses of dead members, so that a
// partition heals once the network does, however long it lasted. It also
// drops dead and left members older than ReconnectTimeout from the registry.
func (c *Cluster) rejoinLoop(ml *memberlist.Memberlist, seeds []string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(jitter(c.cfg.RejoinInterval))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c.reap(time.Now())
		if targets := c.rejoinTargets(seeds); len(targets) > 0 {
			before := c.NumAlive()
			n, err := c.joinAll(ml, targets)
			switch after := c.NumAlive(); {
			case after > before:
				c.log.Info("rejoin: reconnected", "targets", targets, "answered", n, "alive", after, "was", before)
			case n > 0:
				c.log.Debug("rejoin: nothing new", "targets", targets, "answered", n)
			default:
				c.log.Debug("rejoin: nobody answered", "targets", targets, "err", err)
			}
		}
		t.Reset(jitter(c.cfg.RejoinInterval))
	}
}

// rejoinTargets: the seeds other than this node, plus the last known
// addresses of dead members. Seeds are joined even when they are alive
// members: the push/pull exchange repairs one-sided views, such as a member
// that restarted at a new address while others still held its old one.
func (c *Cluster) rejoinTargets(seeds []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(seeds)
	add := func(a string) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	ids := make([]string, 0, len(c.members))
	for id := range c.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if e := c.members[id]; e.m.State == StateDead && id != c.cfg.NodeID && e.m.Addr != "" {
			add(e.m.Addr)
		}
	}
	return out
}

// reap forgets dead and left members that have been so for longer than
// ReconnectTimeout.
func (c *Cluster) reap(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.members {
		if id != c.cfg.NodeID && (e.m.State == StateDead || e.m.State == StateLeft) &&
			now.Sub(e.m.Since) > c.cfg.ReconnectTimeout {
			delete(c.members, id)
		}
	}
}

// stopRejoinLoopLocked stops the rejoin loop and waits for it (at most one
// join attempt, bounded by TCPTimeout). lifeMu must be held.
func (c *Cluster) stopRejoinLoopLocked() {
	if c.stopLoop != nil {
		close(c.stopLoop)
		<-c.loopDone
		c.stopLoop = nil
	}
}

// Leave leaves the cluster gracefully and shuts the memberlist down: it
// gossips a leave intent (so other nodes record StateLeft rather than
// StateDead), then memberlist's leave message, waiting for each to be sent
// until ctx's deadline (LeaveTimeout if ctx has none), then stops. The
// leave is best effort: a node that misses the intent sees the member as
// dead. Leave waits for a Start in progress (Close aborts one instead). It
// returns ErrNotStarted before Start and nil if the Cluster has already
// stopped. Errors say what could not be confirmed; the Cluster
// is stopped either way.
func (c *Cluster) Leave(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.life {
	case lifeNew:
		return ErrNotStarted
	case lifeStopped:
		return nil
	}
	return c.leaveLocked(ctx)
}

func (c *Cluster) leaveLocked(ctx context.Context) error {
	c.stopRejoinLoopLocked()
	deadline := time.Now().Add(c.cfg.LeaveTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	remaining := func(frac float64) time.Duration {
		// memberlist treats a timeout <= 0 as "wait forever".
		return max(time.Duration(float64(time.Until(deadline))*frac), time.Millisecond)
	}

	var errs []error
	c.mu.Lock()
	b, err := encodeMeta(c.meta, true)
	c.mu.Unlock()
	if err == nil {
		c.metaBytes.Store(&b)
		if err := c.ml.UpdateNode(remaining(0.5)); err != nil {
			errs = append(errs, fmt.Errorf("announce leave: %w", err))
		}
	}
	if err := c.ml.Leave(remaining(1)); err != nil {
		errs = append(errs, fmt.Errorf("leave: %w", err))
	}
	if err := c.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	c.life = lifeStopped
	c.log.Info("left the cluster")
	if len(errs) > 0 {
		return fmt.Errorf("cluster: leave: %w", errors.Join(errs...))
	}
	return nil
}

// Halt stops gossiping at once without leaving, as a crash would: no
// leave intent, no leave message, the memberlist shut down. The other
// members find this node dead by failure detection (StateDead, not
// StateLeft). It does nothing before Start or once the Cluster has
// stopped. Close must still be called after it, to close the
// subscriptions.
func (c *Cluster) Halt() {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.life == lifeRunning {
		c.stopRejoinLoopLocked()
		_ = c.ml.Shutdown()
		c.life = lifeStopped
		c.log.Info("halted without leaving")
	}
}

// Close leaves gracefully if the Cluster is running (bounded by
// LeaveTimeout), closes every subscription channel and waits for the
// Cluster's goroutines. It is idempotent: later calls wait for the first and
// return its result. Close also aborts a Start that is still retrying its
// seeds.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.lifeMu.Lock()
		if c.life == lifeRunning {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LeaveTimeout)
			c.closeErr = c.leaveLocked(ctx)
			cancel()
		}
		c.life = lifeStopped
		c.lifeMu.Unlock()
		c.closeSubscribers()
	})
	return c.closeErr
}

// UpdateMeta replaces this node's Meta and gossips it; other nodes see an
// EventUpdate. m.NodeID may be empty (meaning NodeID) and must otherwise
// equal it. It waits until the update has been gossiped or ctx's deadline
// (LeaveTimeout if none) passes; on a timeout the new Meta is still in
// effect locally and spreads with later gossip.
func (c *Cluster) UpdateMeta(ctx context.Context, m Meta) error {
	if m.NodeID == "" {
		m.NodeID = c.cfg.NodeID
	}
	if m.NodeID != c.cfg.NodeID {
		return fmt.Errorf("%w: Meta.NodeID %q differs from NodeID %q", ErrInvalidConfig, m.NodeID, c.cfg.NodeID)
	}
	if err := checkMetaSize(m); err != nil {
		return err
	}
	b, err := encodeMeta(m, false)
	if err != nil {
		return err
	}
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.life {
	case lifeNew:
		return ErrNotStarted
	case lifeStopped:
		return ErrClosed
	}
	c.mu.Lock()
	c.meta = m
	c.mu.Unlock()
	c.metaBytes.Store(&b)
	timeout := c.cfg.LeaveTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if err := c.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("cluster: update meta: %w", err)
	}
	return nil
}

// Members returns every member this node knows, in every state, sorted by
// NodeID. Dead and left members stay for ReconnectTimeout.
func (c *Cluster) Members() []Member {
	return c.collect(func(Member) bool { return true })
}

// Alive returns the alive members, this node included, sorted by NodeID.
func (c *Cluster) Alive() []Member {
	return c.collect(func(m Member) bool { return m.State == StateAlive })
}

// NumAlive returns the number of alive members, this node included.
func (c *Cluster) NumAlive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.members {
		if e.m.State == StateAlive {
			n++
		}
	}
	return n
}

// LocalNode returns this node as the cluster sees it. Before Start, Addr is
// empty.
func (c *Cluster) LocalNode() Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.members[c.cfg.NodeID]; ok {
		return e.m
	}
	return Member{NodeID: c.cfg.NodeID, Meta: c.meta, State: StateAlive}
}

func (c *Cluster) collect(keep func(Member) bool) []Member {
	c.mu.Lock()
	out := make([]Member, 0, len(c.members))
	for _, e := range c.members {
		if keep(e.m) {
			out = append(out, e.m)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

// NewNetTransport binds memberlist's network transport on cfg's
// BindAddr:BindPort, for a caller that wraps it and passes the wrapper
// as cfg.Transport. A port another socket holds is ErrPortInUse.
func NewNetTransport(cfg Config) (*memberlist.NetTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{cfg.BindAddr},
		BindPort:  cfg.BindPort,
		Logger:    NewMemberlistLogger(cfg.Logger),
	})
	if err := startError(err); err != nil {
		return nil, err
	}
	return nt, nil
}

// startError is memberlist's failure to start (nil for none); a port
// in use is ErrPortInUse. memberlist formats a bind error into its own
// text, which names the address, rather than wrapping it, hence the
// match on that text.
func startError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use"):
		return fmt.Errorf("%w: %w", ErrPortInUse, err)
	default:
		return fmt.Errorf("cluster: start gossip: %w", err)
	}
}
