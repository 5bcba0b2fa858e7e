package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrKeeperClosed is returned by a Keeper's Start and Wait once Close was
// called.
var ErrKeeperClosed = errors.New("lock: keeper closed")

// DefaultSessionTTL is the session TTL of DefaultKeeperConfig.
//
// A dead node's actors are free to move after its session TTL, so the TTL
// bounds recovery time (the design's target is under 10 s including failure
// detection). Shorter TTLs recover faster but lapse on shorter stalls (GC,
// a paused VM, a slow coordinator).
const DefaultSessionTTL = 5 * time.Second

// KeeperConfig configures a Keeper. Build one with DefaultKeeperConfig or
// KeeperConfigForTTL and adjust fields; Validate reports every problem and
// fills in nothing.
type KeeperConfig struct {
	// TTL is the session time-to-live asked of the coordinator.
	// Default: DefaultSessionTTL (5s).
	TTL time.Duration

	// RenewInterval is the time between renewals, counted from the send
	// of one renewal to the send of the next. It must be below TTL/2 and
	// leave room for two renewals inside the lease (2*RenewInterval <
	// TTL-SafetyMargin), so one lost renewal does not lapse the session.
	// Default: TTL/3, as etcd's and Consul's clients do.
	RenewInterval time.Duration

	// SafetyMargin is subtracted from TTL to get the node's own lease (see
	// Lease): it covers a coordinator clock running faster than the node's.
	// Default: DefaultSafetyMargin(TTL), TTL/10 capped at 1s.
	SafetyMargin time.Duration

	// RequestTimeout bounds each CreateSession, Renew and DestroySession the
	// keeper's goroutine sends; a timed-out request counts as failed.
	// Default: RenewInterval.
	RequestTimeout time.Duration

	// RetryMin and RetryMax bound the wait between failed attempts, which
	// doubles from RetryMin up to RetryMax. A failed renewal is retried
	// after the backoff or at the next RenewInterval, whichever is first.
	// Default: RetryMin = TTL/50 capped at 100ms, RetryMax = RenewInterval.
	RetryMin time.Duration
	RetryMax time.Duration

	// Now reads the clock. nil means time.Now. Tests inject a fake clock
	// (see locktest.FakeClock); Now and AfterFunc must read the same clock,
	// so set both or neither.
	Now func() time.Time

	// AfterFunc calls f in its own goroutine (or, for a fake clock, from the
	// goroutine that advances it) once d has passed on the clock of Now, and
	// returns a function that cancels the call if it has not started; that
	// function reports whether it did cancel. nil means time.AfterFunc.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// DefaultKeeperConfig is KeeperConfigForTTL(DefaultSessionTTL): a 5s TTL,
// renewal every 1.67s, a 500ms safety margin, 1.67s request timeout and
// retries from 100ms up to 1.67s.
func DefaultKeeperConfig() KeeperConfig { return KeeperConfigForTTL(DefaultSessionTTL) }

// KeeperConfigForTTL derives every duration from ttl as documented on the
// fields of KeeperConfig, with the real clock.
func KeeperConfigForTTL(ttl time.Duration) KeeperConfig {
	interval := ttl / 3
	return KeeperConfig{
		TTL:            ttl,
		RenewInterval:  interval,
		SafetyMargin:   DefaultSafetyMargin(ttl),
		RequestTimeout: interval,
		RetryMin:       min(ttl/50, 100*time.Millisecond),
		RetryMax:       interval,
	}
}

// Validate reports every problem with c, each wrapping ErrInvalid, joined
// with errors.Join; nil if there is none.
func (c KeeperConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("lock: KeeperConfig."+format+": %w", append(args, ErrInvalid)...))
	}
	if c.TTL <= 0 {
		bad("TTL must be positive, got %v", c.TTL)
	}
	if c.RenewInterval <= 0 {
		bad("RenewInterval must be positive, got %v", c.RenewInterval)
	} else if c.TTL > 0 && c.RenewInterval >= c.TTL/2 {
		bad("RenewInterval must be less than TTL/2 (%v), got %v", c.TTL/2, c.RenewInterval)
	}
	if c.SafetyMargin < 0 {
		bad("SafetyMargin must not be negative, got %v", c.SafetyMargin)
	} else if c.TTL > 0 && c.SafetyMargin >= c.TTL/2 {
		bad("SafetyMargin must be less than TTL/2 (%v), got %v", c.TTL/2, c.SafetyMargin)
	}
	if c.TTL > 0 && c.RenewInterval > 0 && c.RenewInterval < c.TTL/2 &&
		c.SafetyMargin >= 0 && c.SafetyMargin < c.TTL/2 && 2*c.RenewInterval >= c.TTL-c.SafetyMargin {
		bad("RenewInterval (%v) leaves no room for two renewals in the lease of TTL-SafetyMargin (%v)",
			c.RenewInterval, c.TTL-c.SafetyMargin)
	}
	if c.RequestTimeout <= 0 {
		bad("RequestTimeout must be positive, got %v", c.RequestTimeout)
	}
	if c.RetryMin <= 0 {
		bad("RetryMin must be positive, got %v", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		bad("RetryMax (%v) must not be less than RetryMin (%v)", c.RetryMax, c.RetryMin)
	}
	if (c.Now == nil) != (c.AfterFunc == nil) {
		bad("Now and AfterFunc must both be set (one injected clock) or both be nil (the real clock)")
	}
	return errors.Join(errs...)
}

// Keeper owns one coordinator session for a node and keeps it alive.
//
// Start opens the session and starts one goroutine that renews it every
// RenewInterval. Before each Renew the goroutine reads the clock; when Renew
// succeeds, the session's Lease moves forward to that send time. The session
// lapses, as far as this node is concerned, when
//
//   - its Lease runs out (TTL - SafetyMargin after the send of the last
//     successful renewal), even while a Renew is still blocked; or
//   - Renew returns ErrSessionExpired.
//
// On a lapse the keeper first ends the session's Epoch (Valid turns false and
// the Epoch's Lapsed channel is closed), then destroys the old session (best
// effort, so its locks are freed at once if it was alive after all), then
// creates a new session, retrying with backoff, and carries on with it in a
// new Epoch. A late successful reply never revives a lapsed Epoch.
//
// Lapse notification: each session lives in one Epoch. Epoch().Lapsed()
// returns a channel that is closed exactly once, when that session lapses
// or the keeper is closed. A component that attaches locks to the session
// (the runtime, on activation) takes e := k.Epoch() (or Wait), acquires with
// e.Session(), and stops using those locks when e.Valid() turns false or
// e.Lapsed() is closed. Keeper.Valid only tells about the current session:
// after a lapse it turns true again for the new session, whose locks are not
// the old ones.
//
// Concurrency: Valid, Session, Lease, Epoch and Wait are safe to call from
// any goroutine. Valid is one atomic pointer load, one atomic load and one
// monotonic clock read. The session state is owned by the keeper's mutex;
// the renewal goroutine is the only one that sends Renew and CreateSession.
type Keeper struct {
	c     Coordinator
	owner string
	cfg   KeeperConfig
	log   *slog.Logger

	now       func() time.Time // never nil
	realClock bool             // now is time.Now: Valid can use time.Since
	afterFunc func(time.Duration, func()) func() bool
	base      time.Time // origin of Epoch deadlines (with a monotonic reading on the real clock)

	ctx  context.Context // cancelled by Close; parent of every request the goroutine sends
	stop context.CancelFunc

	cur atomic.Pointer[Epoch] // never nil

	mu        sync.Mutex
	installed chan struct{} // closed and replaced when an epoch is installed; closed for good by Close or a fatal error
	starting  bool
	started   bool
	closed    bool
	destroyed bool          // the session was destroyed by Close
	fatal     error         // the coordinator refused for good (ErrClosed, ErrInvalid); the goroutine stopped
	running   chan struct{} // closed when the goroutine exits; nil before it starts
}

// Epoch is one session of a Keeper: from its creation to its lapse. Its
// methods are safe for concurrent use.
type Epoch struct {
	k        *Keeper
	session  SessionID
	deadline atomic.Int64 // lease end in ns since k.base; math.MinInt64 once lapsed
	lapsed   chan struct{}
	ctx      context.Context // cancelled at lapse: cancels the in-flight request
	cancel   context.CancelCauseFunc

	// guarded by k.mu
	lease     Lease
	ended     bool
	stopWatch func() bool // the watchdog that lapses the epoch when the lease runs out
}

// Session is the epoch's session id ("" for the epoch a keeper has before
// its first session).
func (e *Epoch) Session() SessionID { return e.session }

// Valid reports whether the session is certainly still alive: the epoch has
// not lapsed and its lease has not run out on the node's monotonic clock.
func (e *Epoch) Valid() bool {
	return e.k.elapsed() < e.deadline.Load()
}

// Lapsed returns a channel that is closed when the epoch ends: its session
// lapsed (or may have) or the keeper was closed. It is closed at most once
// and is the same channel on every call.
func (e *Epoch) Lapsed() <-chan struct{} { return e.lapsed }

// Lease is a snapshot of the epoch's lease.
func (e *Epoch) Lease() Lease {
	e.k.mu.Lock()
	defer e.k.mu.Unlock()
	return e.lease
}

// NewKeeper returns a keeper for owner (the node id) that will open its
// session on c. It does nothing until Start. A nil logger discards logs.
// The configuration is checked by Start.
func NewKeeper(c Coordinator, owner string, cfg KeeperConfig, logger *slog.Logger) *Keeper {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{
		c:         c,
		owner:     owner,
		cfg:       cfg,
		log:       logger.With("component", "lock.keeper", "owner", owner),
		installed: make(chan struct{}),
	}
	if cfg.Now == nil || cfg.AfterFunc == nil {
		k.now, k.realClock = time.Now, true
		k.afterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	} else {
		k.now, k.afterFunc = cfg.Now, cfg.AfterFunc
	}
	k.base = k.now()
	k.ctx, k.stop = context.WithCancel(context.Background())
	k.cur.Store(k.endedEpoch())
	return k
}

// endedEpoch is the placeholder epoch of a keeper without a session.
func (k *Keeper) endedEpoch() *Epoch {
	e := &Epoch{k: k, lapsed: make(chan struct{}), ended: true}
	e.deadline.Store(math.MinInt64)
	close(e.lapsed)
	e.ctx, e.cancel = context.WithCancelCause(k.ctx)
	e.cancel(errKeeperClosing)
	return e
}

// elapsed is the clock reading, in ns since k.base.
func (k *Keeper) elapsed() int64 {
	if k.realClock {
		return int64(time.Since(k.base)) // monotonic only, no wall-clock read
	}
	return int64(k.now().Sub(k.base))
}

// Start validates the configuration, creates the session (retrying with
// backoff until ctx is done) and starts the renewal goroutine. It returns
// ErrKeeperClosed after Close, and an error wrapping ErrInvalid for a bad
// configuration or a second Start. A Start that failed may be tried again.
func (k *Keeper) Start(ctx context.Context) error {
	var errs []error
	if k.c == nil {
		errs = append(errs, fmt.Errorf("lock: keeper: nil Coordinator: %w", ErrInvalid))
	}
	if k.owner == "" {
		errs = append(errs, fmt.Errorf("lock: keeper: empty owner: %w", ErrInvalid))
	}
	if err := k.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	k.mu.Lock()
	switch {
	case k.closed:
		k.mu.Unlock()
		return ErrKeeperClosed
	case k.started || k.starting:
		k.mu.Unlock()
		return fmt.Errorf("lock: keeper for %q already started: %w", k.owner, ErrInvalid)
	}
	k.starting = true
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.starting = false
		k.mu.Unlock()
	}()

	// Stop trying when the caller gives up or the keeper is closed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(k.ctx, cancel)()

	e, err := k.create(ctx)
	if err != nil {
		if k.ctx.Err() != nil {
			return ErrKeeperClosed
		}
		return err
	}
	k.mu.Lock()
	if k.closed { // Close ran after e was installed; it ended and destroys e
		k.mu.Unlock()
		return ErrKeeperClosed
	}
	k.started = true
	k.running = make(chan struct{})
	go k.run(e, k.running)
	k.mu.Unlock()
	return nil
}

// Session is the id of the current session: the one of Epoch(). It may have
// lapsed; check Valid, or better, hold on to an Epoch.
func (k *Keeper) Session() SessionID { return k.cur.Load().session }

// Valid reports whether the current session is certainly alive (see
// Epoch.Valid). It is false before Start, after Close and between a lapse
// and the creation of the next session. It is cheap enough to call on every
// actor turn.
func (k *Keeper) Valid() bool { return k.cur.Load().Valid() }

// Lease is a snapshot of the current session's lease.
func (k *Keeper) Lease() Lease { return k.cur.Load().Lease() }

// Epoch returns the current epoch: the live session, or, before Start, after
// Close and between a lapse and the next session, an epoch that has ended
// (its Lapsed channel is closed). Never nil.
func (k *Keeper) Epoch() *Epoch { return k.cur.Load() }

// Wait returns the current epoch once it is valid, waiting for the keeper to
// create a session if there is none. It returns ErrKeeperClosed after
// Close, the error that stopped the keeper if the coordinator refused for
// good, or ctx's error.
func (k *Keeper) Wait(ctx context.Context) (*Epoch, error) {
	for {
		k.mu.Lock()
		e, installed, closed, fatal := k.cur.Load(), k.installed, k.closed, k.fatal
		k.mu.Unlock()
		switch {
		case closed:
			return nil, ErrKeeperClosed
		case fatal != nil:
			return nil, fatal
		case e.Valid():
			return e, nil
		}
		// e is not valid: wait for the next epoch, or for e to be marked as
		// lapsed if its lease ran out a moment ago (then loop to take the
		// installed channel that goes with the lapsed epoch).
		lapsed := e.lapsed
		select {
		case <-lapsed:
			lapsed = nil // already ended: a nil channel never fires
		default:
		}
		select {
		case <-installed:
		case <-lapsed:
		case <-ctx.Done():
			return nil, fmt.Errorf("lock: waiting for a session of %q: %w", k.owner, ctx.Err())
		}
	}
}

// Close ends the current epoch (Valid turns false, Lapsed is closed), stops
// the renewal goroutine and waits for it, then destroys the session, best
// effort, bounded by ctx. It may be called more than once; later calls wait
// for the goroutine too and return nil. If ctx ends before the goroutine
// stops, Close returns ctx's error without destroying the session, which
// then lapses by TTL; a later Close can finish the job.
func (k *Keeper) Close(ctx context.Context) error {
	k.mu.Lock()
	if !k.closed {
		k.closed = true
		k.stop()
		k.endLocked(k.cur.Load(), "keeper closed")
		close(k.installed)
	}
	running := k.running
	k.mu.Unlock()

	if running != nil {
		select {
		case <-running:
		case <-ctx.Done():
			return fmt.Errorf("lock: closing keeper of %q: renewal goroutine still running: %w", k.owner, ctx.Err())
		}
	}

	k.mu.Lock()
	e := k.cur.Load()
	first := !k.destroyed
	k.destroyed = true
	k.mu.Unlock()
	if !first || e.session == "" {
		return nil
	}
	if err := k.c.DestroySession(ctx, e.session); err != nil {
		return fmt.Errorf("lock: closing keeper of %q: destroy session %s: %w", k.owner, e.session, err)
	}
	k.log.Info("session destroyed", "session", e.session)
	return nil
}

// run is the renewal goroutine: it keeps e alive, and after a lapse opens a
// new session, until the keeper is closed or the coordinator refuses for
// good.
func (k *Keeper) run(e *Epoch, running chan struct{}) {
	defer close(running)
	for {
		k.keep(e)
		if k.ctx.Err() != nil || k.isFatal() {
			return
		}
		// e has ended. Free its locks now in case the coordinator still has
		// it (we stopped believing in it early, or it answered late).
		if errors.Is(context.Cause(e.ctx), errLocalLapse) {
			k.destroyQuietly(e.session)
		}
		ne, err := k.create(k.ctx)
		if err != nil {
			if k.ctx.Err() == nil {
				k.setFatal(err)
			}
			return
		}
		e = ne
	}
}

var (
	errLocalLapse    = errors.New("lock: lease ran out on the node's clock")
	errRemoteLapse   = errors.New("lock: coordinator reports the session expired")
	errKeeperClosing = errors.New("lock: keeper closed")
)

// keep renews e every RenewInterval until it ends or the keeper is closed.
func (k *Keeper) keep(e *Epoch) {
	wake := make(chan struct{}, 1)
	fire := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var stopTimer func() bool
	schedule := func(d time.Duration) {
		if stopTimer != nil {
			stopTimer()
		}
		stopTimer = k.afterFunc(max(d, 0), fire)
	}
	defer func() { stopTimer() }()

	lease := e.Lease()
	sent, _ := lease.SentAt()
	schedule(sent.Add(k.cfg.RenewInterval).Sub(k.now()))
	backoff := k.cfg.RetryMin
	for {
		if e.ctx.Err() != nil {
			return // ended (or the keeper closed); takes precedence over a pending wake
		}
		select {
		case <-e.lapsed:
			return
		case <-k.ctx.Done():
			return
		case <-wake:
		}
		if e.ctx.Err() != nil {
			return
		}
		sentAt := k.now()
		schedule(k.cfg.RenewInterval) // like a ticker: the next renewal is due an interval after this send
		ctx, done := k.requestCtx(e.ctx)
		err := k.c.Renew(ctx, e.session)
		cause := context.Cause(ctx)
		done()
		switch {
		case err == nil:
			backoff = k.cfg.RetryMin
			k.renewed(e, sentAt)
		case errors.Is(err, ErrSessionExpired):
			k.end(e, errRemoteLapse)
			return
		case errors.Is(err, ErrClosed):
			k.end(e, err)
			k.setFatal(fmt.Errorf("lock: renewing session %s of %q: %w", e.session, k.owner, err))
			return
		case e.ctx.Err() != nil:
			return // the epoch ended (or the keeper closed) while Renew was in flight
		default:
			k.log.Warn("session renewal failed", "session", e.session, "err", err, "cause", cause,
				"retry_in", min(backoff, k.cfg.RenewInterval), "lease_remaining", e.Lease().Remaining(k.now()))
			schedule(min(backoff, k.cfg.RenewInterval))
			backoff = min(2*backoff, k.cfg.RetryMax)
		}
	}
}

// requestCtx derives the context of one request: cancelled by parent and
// after RequestTimeout on the keeper's clock.
func (k *Keeper) requestCtx(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	timeout := k.cfg.RequestTimeout
	stop := k.afterFunc(timeout, func() {
		cancel(fmt.Errorf("lock: keeper request timeout %v: %w", timeout, context.DeadlineExceeded))
	})
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// create opens a session, retrying transient failures with backoff until
// ctx is done, and installs it as the current epoch. ErrClosed and
// ErrInvalid from the coordinator are final. If the keeper was closed
// meanwhile, it destroys the new session and returns ErrKeeperClosed.
func (k *Keeper) create(ctx context.Context) (*Epoch, error) {
	backoff := k.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		sentAt := k.now()
		rctx, done := k.requestCtx(ctx)
		s, err := k.c.CreateSession(rctx, k.owner, k.cfg.TTL)
		done()
		if err == nil {
			e, ok := k.install(s, sentAt)
			if !ok {
				k.destroyQuietly(s)
				return nil, ErrKeeperClosed
			}
			k.log.Info("session created", "session", s, "ttl", k.cfg.TTL, "attempts", attempt)
			return e, nil
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalid) {
			return nil, fmt.Errorf("lock: creating session for %q: %w", k.owner, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lock: creating session for %q: %w (last error: %w)", k.owner, ctx.Err(), err)
		}
		k.log.Warn("session creation failed", "err", err, "attempt", attempt, "retry_in", backoff)
		if serr := k.sleep(ctx, backoff); serr != nil {
			return nil, fmt.Errorf("lock: creating session for %q: %w (last error: %w)", k.owner, serr, err)
		}
		backoff = min(2*backoff, k.cfg.RetryMax)
	}
}

// sleep waits d on the keeper's clock, or until ctx is done.
func (k *Keeper) sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	stop := k.afterFunc(d, func() { close(ch) })
	defer stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// install makes session s, created by a request sent at sentAt, the current
// epoch, and arms its watchdog. After Close it installs nothing and
// returns false.
func (k *Keeper) install(s SessionID, sentAt time.Time) (*Epoch, bool) {
	e := &Epoch{k: k, session: s, lapsed: make(chan struct{}), lease: NewLease(k.cfg.TTL, k.cfg.SafetyMargin)}
	e.ctx, e.cancel = context.WithCancelCause(k.ctx)
	e.lease.Renewed(sentAt)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		e.cancel(errKeeperClosing)
		return nil, false
	}
	k.setDeadlineLocked(e)
	k.cur.Store(e)
	close(k.installed)
	k.installed = make(chan struct{})
	return e, true
}

// renewed records a successful renewal of e sent at sentAt. A renewal that
// returns after e ended changes nothing.
func (k *Keeper) renewed(e *Epoch, sentAt time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e.ended || !e.lease.Renewed(sentAt) {
		return
	}
	k.setDeadlineLocked(e)
}

// setDeadlineLocked publishes e's lease end for Valid and re-arms the
// watchdog that ends e when the lease runs out.
func (k *Keeper) setDeadlineLocked(e *Epoch) {
	until := e.lease.ValidUntil()
	e.deadline.Store(int64(until.Sub(k.base)))
	if e.stopWatch != nil {
		e.stopWatch()
	}
	e.stopWatch = k.afterFunc(max(until.Sub(k.now()), 0), func() { k.watch(e) })
}

// watch is the watchdog: it ends e if its lease has run out. A stale firing
// (the lease was renewed since it was armed) does nothing.
func (k *Keeper) watch(e *Epoch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e.ended || e.lease.Valid(k.now()) {
		return
	}
	k.endLockedCause(e, errLocalLapse)
}

// end ends e for cause, unless it has ended already.
func (k *Keeper) end(e *Epoch, cause error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.endLockedCause(e, cause)
}

func (k *Keeper) endLocked(e *Epoch, reason string) {
	k.endLockedCause(e, fmt.Errorf("%w: %s", errKeeperClosing, reason))
}

// endLockedCause ends e: Valid turns false, Lapsed is closed, and a request
// in flight for e is cancelled. The lease itself is kept for inspection.
func (k *Keeper) endLockedCause(e *Epoch, cause error) {
	if e.ended {
		return
	}
	e.ended = true
	e.deadline.Store(math.MinInt64)
	if e.stopWatch != nil {
		e.stopWatch()
	}
	close(e.lapsed)
	e.cancel(cause)
	if errors.Is(cause, errKeeperClosing) {
		k.log.Info("session epoch ended", "session", e.session, "reason", cause)
		return
	}
	k.log.Warn("session lapsed", "session", e.session, "reason", cause,
		"sent_at", e.lease.sentAt, "valid_until", e.lease.ValidUntil())
}

// destroyQuietly destroys s, best effort, bounded by RequestTimeout (not by
// the keeper's context: it also runs after Close).
func (k *Keeper) destroyQuietly(s SessionID) {
	ctx, done := k.requestCtx(context.Background())
	defer done()
	if err := k.c.DestroySession(ctx, s); err != nil {
		k.log.Warn("destroying lapsed session failed", "session", s, "err", err)
	}
}

func (k *Keeper) setFatal(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fatal != nil || k.closed {
		return
	}
	k.fatal = err
	close(k.installed)
	k.installed = make(chan struct{})
	k.log.Error("session keeper stopped: the coordinator refused for good", "err", err)
}

func (k *Keeper) isFatal() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fatal != nil
}
