// Package client is the embeddable cluster client: it learns the cluster's
// topology from any node, follows it over a Topology stream, and sends each
// call straight to the actor's owner: the node the placement ring names,
// or, on a cluster with several Raft groups, the leader of the actor's
// group (one hop; the node forwards if the lock is held elsewhere). It
// implements runtime.Invoker, so the typed method calls (Method.Call) work
// unchanged against it, and runtime.Sender, so durable one-way messages do
// too (Method.Send; see Client.Send).
//
// Retries are only made when they are safe: when the call was never sent
// (no stream to that node could be opened: runtime.ErrUnavailable from the
// transport) or the node answered that it is unavailable or not the owner,
// the call is tried on the next alive node, within the caller's deadline.
// A call that was sent and whose outcome is unknown
// (transport.ErrUnknownOutcome, a deadline) is returned to the caller,
// unless Options.IdempotentRetries is set: then every call carries an
// idempotency key (the caller's, or one the client makes), and a call whose
// outcome is unknown because its connection or node failed is sent again
// with the same key, on the owner of the moment, until it gets an answer
// or the caller's context ends. The actor runs it once and answers the
// retry from its record (see package runtime). Not retried, even then: an
// error the actor or node answered (a method error, a refusal that is not
// "unavailable"), the caller's own deadline or cancellation.
//
// A durable message (Client.Send) is different: the client names it
// (runtime.NewMessageID, unless the caller did) and the node's store
// accepts an id once, so a send whose outcome is unknown is always sent
// again under the same id, up to Options.MaxRetries times, with or
// without IdempotentRetries; a resend answers the first acceptance
// (queue.Accepted.Duplicate). A send that failed unsent goes to the next
// alive node, as a call does; a refusal is returned, not resent.
//
// What a send guarantees: one that returns nil is durable, stored as a
// journal append is (with a replicated journal, a kill -9 of any
// minority of nodes does not lose it). The message then stays in its
// actor's queue, delivered again after a crash, a handoff or a failover,
// until a turn that processed it commits, which acknowledges it in the
// same journal append (applied once; see package runtime), or until it
// is dead-lettered (package messaging). However often one id was sent,
// the store accepted it once, for as long as it remembers ids
// (messaging.idRetention, an hour by default). A send that returns an
// error other than an unknown outcome was not accepted; after an unknown
// outcome, sending again under the returned Accepted's ID is safe.
//
// Backpressure: when a node answers that an actor's mailbox is full
// (runtime.ErrOverloaded), the client fails further calls to that actor at
// once, unsent, with the same error for Options.OverloadHoldOff (100 ms),
// so that many callers of one hot actor cost its node one refusal per
// hold-off rather than one per call.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Options configure a Client.
type Options struct {
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// Placement must match the nodes' (the default does).
	Placement placement.Config
	// MaxAttempts bounds the nodes one call is tried on. Default 3.
	MaxAttempts int
	// TracerProvider and Propagator, when set, give every call a client
	// span whose trace context travels with it (W3C: propagation.TraceContext{}),
	// and a correlation id when the context carries none. nil: no spans.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// IdempotentRetries gives every call an idempotency key and retries
	// calls whose outcome is unknown (see the package doc), with a backoff
	// of 10 ms doubling to 1 s, until the caller's context ends or
	// MaxRetries retries were made.
	IdempotentRetries bool
	// MaxRetries bounds the retries of one call under IdempotentRetries,
	// and of one message (Send, which always retries). Default 20.
	MaxRetries int
	// OverloadHoldOff: after a node answers that an actor is overloaded
	// (runtime.ErrOverloaded: its mailbox is full), the client fails the
	// calls to that actor at once, without sending them, for this long.
	// A flood of callers then costs the node one refusal per hold-off
	// instead of one per call. Default 100 ms; negative: never hold off.
	OverloadHoldOff time.Duration
	// TLS connects to the nodes with TLS, when the nodes serve it (their
	// tls section). Leave it zero for plaintext.
	TLS TLSOptions
	// Token is the bearer token every call presents, when the nodes
	// require tokens (their auth section); its scopes decide what the
	// client may call. It needs TLS: Dial refuses to send a token in the
	// clear. Default "": no token.
	Token string
}

// TLSOptions are a client's TLS files (PEM). The client polls them and
// reads them again when they change, as a node does: new connections use
// the new certificate.
type TLSOptions struct {
	// CA is the cluster's CA: the nodes' certificates must be node
	// certificates it signed. Setting it (or Cert) turns TLS on; with
	// Cert and no CA the nodes' certificates are not checked.
	CA string
	// Cert and Key are the client's certificate (`loom-node tls cert
	// create --client NAME`) and key; required when the nodes verify
	// incoming connections (tls.verifyIncoming).
	Cert, Key string
	// ServerName, when set, must also be a DNS name in the nodes'
	// certificates (the nodes' tls.serverName).
	ServerName string
	// MinVersion is "1.2" or "1.3" (default).
	MinVersion string
}

// Client calls actors on a Loom cluster. Safe for concurrent use.
type Client struct {
	opts  Options
	log   *slog.Logger
	pool  *transport.Pool
	table *placement.Table
	seeds []string

	mu      sync.RWMutex
	members map[string]*loompb.Member // alive members by node id
	// groupLeaders, with several Raft groups, is each group's leader by
	// group number (ClusterTopology.group_leaders): an actor lives on its
	// group's leader.
	groupLeaders []string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}
	once   sync.Once

	stats struct {
		retries atomic.Uint64
		held    atomic.Uint64
	}
	held sync.Map // "type/id" -> time.Time: calls to it fail at once until then (OverloadHoldOff)

	// lastWatchErr is why the last topology subscription failed, for
	// Dial's error. A pointer, not an atomic.Value: the errors are of
	// several types, which an atomic.Value refuses (it panics).
	lastWatchErr atomic.Pointer[error]
	refused      chan error // a node refused the client (its token): Dial stops waiting
}

var _ runtime.Invoker = (*Client)(nil)

// Dial connects to a cluster through any of addrs (gRPC addresses of nodes)
// and waits for its first topology, within ctx.
func Dial(ctx context.Context, addrs []string, opts Options) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: no node address given")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Placement == (placement.Config{}) {
		opts.Placement = placement.DefaultConfig()
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 20
	}
	if opts.OverloadHoldOff == 0 {
		opts.OverloadHoldOff = 100 * time.Millisecond
	}
	table, err := placement.NewTable(opts.Placement)
	if err != nil {
		return nil, err
	}
	if opts.Token != "" && opts.TLS.CA == "" && opts.TLS.Cert == "" {
		return nil, errors.New("client: a token needs TLS (Options.TLS: at least the cluster's CA): it would travel in the clear")
	}
	po := transport.PoolOptions{Logger: opts.Logger, TracerProvider: opts.TracerProvider, Propagator: opts.Propagator, Token: opts.Token}
	var tlsSrc *tlsconf.Source
	if t := opts.TLS; t.CA != "" || t.Cert != "" {
		tlsSrc, err = tlsconf.New(tlsconf.Options{CA: t.CA, Cert: t.Cert, Key: t.Key, VerifyOutgoing: t.CA != "",
			ServerName: t.ServerName, MinVersion: tlsconf.ParseVersion(t.MinVersion), Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		po.TLS, po.TLSLeaf = tlsSrc.ClientConfig(), tlsSrc.Leaf
	}
	bg, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: opts, log: opts.Logger,
		pool:  transport.NewPool(po),
		table: table, seeds: slices.Clone(addrs), members: map[string]*loompb.Member{},
		cancel: cancel, ready: make(chan struct{}), refused: make(chan error),
	}
	if tlsSrc != nil {
		c.wg.Go(func() { tlsSrc.Watch(bg, 3*time.Second, nil) })
	}
	c.wg.Add(1)
	go c.follow(bg)
	select {
	case <-c.ready:
		return c, nil
	case err := <-c.refused:
		_ = c.Close()
		return nil, fmt.Errorf("client: %w", err)
	case <-ctx.Done():
		_ = c.Close()
		last := ""
		if p := c.lastWatchErr.Load(); p != nil {
			last = "; last error: " + (*p).Error()
		}
		return nil, fmt.Errorf("%w: client: no topology from any of %v: %v%s", runtime.ErrUnavailable, addrs, ctx.Err(), last)
	}
}

// follow keeps a Topology stream open to some node, switching to another
// known node (or a seed) when it breaks.
func (c *Client) follow(ctx context.Context) {
	defer c.wg.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		for _, addr := range c.candidates() {
			ch, err := c.pool.WatchTopology(ctx, addr)
			if err != nil {
				c.lastWatchErr.Store(&err)
				if errors.Is(err, transport.ErrUnauthenticated) || errors.Is(err, transport.ErrPermissionDenied) || errors.Is(err, transport.ErrTLSMismatch) {
					// Dial's answer, if it is still waiting: every node
					// would refuse the same (the token, or the TLS
					// settings).
					select {
					case c.refused <- err:
					default:
					}
				}
				continue
			}
			for t := range ch {
				c.apply(t)
				backoff = 50 * time.Millisecond
			}
			if ctx.Err() != nil {
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// candidates lists the addresses to watch the topology from: alive members
// first, then the seeds.
func (c *Client) candidates() []string {
	c.mu.RLock()
	var out []string
	for _, m := range c.members {
		out = append(out, m.GrpcAddr)
	}
	c.mu.RUnlock()
	slices.Sort(out)
	for _, s := range c.seeds {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *Client) apply(t *loompb.ClusterTopology) {
	alive := map[string]*loompb.Member{}
	var ids []string
	for _, m := range t.Members {
		if m.State == "alive" && m.GrpcAddr != "" {
			alive[m.NodeId] = m
			ids = append(ids, m.NodeId)
		}
	}
	c.mu.Lock()
	c.members = alive
	c.groupLeaders = slices.Clone(t.GroupLeaders)
	c.mu.Unlock()
	c.table.Update(ids)
	if len(ids) > 0 {
		c.once.Do(func() { close(c.ready) })
	}
}

// Owner is the node the actor lives on as the client sees it: the ring's
// member, or with several Raft groups the leader of the actor's group.
func (c *Client) Owner(actorType, id string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ownerLocked(actorType + "/" + id)
}

// ownerLocked is Owner of key, with c.mu held.
func (c *Client) ownerLocked(key string) (string, bool) {
	if k := len(c.groupLeaders); k > 1 {
		leader := c.groupLeaders[placement.GroupOf(key, k)]
		return leader, leader != ""
	}
	return c.table.Locate(key)
}

// Members lists the alive members' node ids, sorted.
func (c *Client) Members() []string {
	return c.table.Ring().Members()
}

// Invoke implements runtime.Invoker: the call goes to the actor's owner;
// on a safe-to-retry failure it goes to the next alive node.
func (c *Client) Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error) {
	call := transport.Call{ActorType: actorType, ActorID: id, Method: method, Payload: payload}
	if c.opts.TracerProvider != nil && runtime.CorrelationID(ctx) == "" {
		ctx = runtime.WithCorrelationID(ctx, runtime.NewCorrelationID())
	}
	if c.opts.IdempotentRetries {
		return c.invokeKeyed(ctx, call)
	}
	return c.invoke(ctx, call)
}

// invoke tries the call on up to MaxAttempts nodes while it fails without
// effect.
func (c *Client) invoke(ctx context.Context, call transport.Call) ([]byte, error) {
	actorType, id := call.ActorType, call.ActorID
	if c.opts.OverloadHoldOff > 0 {
		if err := c.holdingOff(actorType, id); err != nil {
			return nil, err
		}
	}
	var triedBuf [4]string
	tried := triedBuf[:0] // addresses tried, in order; no allocation for the usual one
	var lastErr error
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		addr, ok := c.target(actorType+"/"+id, tried)
		if !ok {
			break
		}
		tried = append(tried, addr)
		out, err := c.pool.Invoke(ctx, addr, call)
		if err != nil && c.opts.OverloadHoldOff > 0 && errors.Is(err, runtime.ErrOverloaded) {
			c.held.Store(actorType+"/"+id, time.Now().Add(c.opts.OverloadHoldOff))
		}
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return out, err
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: client: no alive node known", runtime.ErrUnavailable)
	}
	return nil, lastErr
}

// invokeKeyed is invoke under an idempotency key, sent again while its
// outcome is unknown or no node could take it.
func (c *Client) invokeKeyed(ctx context.Context, call transport.Call) ([]byte, error) {
	if runtime.IdempotencyKey(ctx) == "" {
		ctx = runtime.WithIdempotencyKey(ctx, "loom-client/"+runtime.NewCorrelationID())
	}
	backoff := 10 * time.Millisecond
	for retry := 0; ; retry++ {
		out, err := c.invoke(ctx, call)
		if err == nil || ctx.Err() != nil || retry >= c.opts.MaxRetries || !(retryable(err) || unknownOutcome(err)) {
			return out, err
		}
		c.stats.retries.Add(1)
		c.log.Debug("client: retrying with the same idempotency key", "actor", call.ActorType+"/"+call.ActorID, "method", call.Method, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// holdingOff fails a call to an actor a node recently said was
// overloaded (see Options.OverloadHoldOff).
func (c *Client) holdingOff(actorType, id string) error {
	key := actorType + "/" + id
	v, ok := c.held.Load(key)
	if !ok {
		return nil
	}
	until := v.(time.Time)
	if left := time.Until(until); left > 0 {
		c.stats.held.Add(1)
		return fmt.Errorf("%w: %s: its owner refused a call as overloaded; the client holds calls to it off for %v more (not sent)", runtime.ErrOverloaded, key, left.Round(time.Millisecond))
	}
	c.held.CompareAndDelete(key, v)
	return nil
}

// HeldOff is how many calls the client failed without sending them,
// holding off an overloaded actor (Options.OverloadHoldOff).
func (c *Client) HeldOff() uint64 { return c.stats.held.Load() }

// unknownOutcome: the call was sent and its connection or node failed
// before the answer came; not the caller's deadline (a deadline that ran
// out on the node or on the way is the caller's too).
func unknownOutcome(err error) bool {
	return errors.Is(err, transport.ErrUnknownOutcome) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// Retries is how many calls the client sent again under IdempotentRetries,
// and how many messages it sent again under their id (Send).
func (c *Client) Retries() uint64 { return c.stats.retries.Load() }

// target picks the owner's address, or any alive node not tried yet.
func (c *Client) target(key string, tried []string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if owner, ok := c.ownerLocked(key); ok {
		if m := c.members[owner]; m != nil && !slices.Contains(tried, m.GrpcAddr) {
			return m.GrpcAddr, true
		}
	}
	var addrs []string
	for _, m := range c.members {
		if !slices.Contains(tried, m.GrpcAddr) {
			addrs = append(addrs, m.GrpcAddr)
		}
	}
	if len(addrs) == 0 {
		return "", false
	}
	slices.Sort(addrs)
	return addrs[0], true
}

// retryable: the call did not take effect and another node may serve it.
func retryable(err error) bool {
	if errors.Is(err, transport.ErrUnknownOutcome) {
		return false
	}
	return errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrShuttingDown)
}

// Close stops following the topology and closes every connection.
func (c *Client) Close() error {
	c.cancel()
	err := c.pool.Close()
	c.wg.Wait()
	return err
}
