package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/queue"
)

// Session is the node's coordinator session as the runtime sees it. The
// lock package's Keeper implements it. Valid is called before every turn
// and must be cheap.
type Session interface {
	// Session is the id under which the node takes actor locks.
	Session() lock.SessionID
	// Valid reports whether the session is certainly still alive, by the
	// node's own monotonic clock.
	Valid() bool
}

// Eviction policies for PoolConfig.EvictionPolicy.
const (
	// EvictLRU deactivates the least recently used actor of the type to make
	// room for a new activation at capacity (a pool of 64 or more: the
	// least recently used MaxSize/32, at most 512, at once).
	EvictLRU = "lru"
	// EvictReject fails a new activation at capacity with ErrPoolFull.
	EvictReject = "reject"
)

// PoolConfig bounds the live activations of one actor type.
type PoolConfig struct {
	// MaxSize is the most activations kept in memory; 0 means no limit.
	MaxSize int
	// IdleTimeout deactivates an actor not called for this long; 0 never.
	IdleTimeout time.Duration
	// EvictionPolicy applies at MaxSize: EvictLRU (default) or EvictReject.
	EvictionPolicy string
	// IdempotencyKeys is how many idempotency keys each actor remembers
	// (the newest); 0 means DefaultIdempotencyKeys.
	IdempotencyKeys int
	// IdempotencyRetention is how long a key is remembered at least,
	// unless the count evicts it first; 0 means
	// DefaultIdempotencyRetention.
	IdempotencyRetention time.Duration
	// MaxQueue is how many calls may wait for one actor's turn; one more
	// fails at once with ErrOverloaded. 0 means DefaultMaxQueue.
	MaxQueue int
	// MaxActivating bounds the activations of the type in progress at once
	// on this node (lock, snapshot and journal replay, OnActivate): a call
	// that would start one more waits for a slot, until its context ends.
	// 0: no bound.
	MaxActivating int
	// RateLimit bounds the calls this node serves to the type's actors,
	// per second (a token bucket of RateBurst tokens, default the rate
	// rounded up); a call beyond it fails at once with ErrOverloaded, not
	// applied. 0: no limit.
	RateLimit float64
	RateBurst int
	// Reentrant lets calls from a running turn's own call chain interleave
	// with it (see Type.Reentrant), for a type whose code does not say so.
	Reentrant bool
}

// DefaultMaxQueue is PoolConfig.MaxQueue's default.
const DefaultMaxQueue = 1000

// DefaultPoolConfig is 10,000 activations per type, a 5 minute idle timeout
// (as Orleans' default collection age is in the same range) and LRU eviction.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{MaxSize: 10000, IdleTimeout: 5 * time.Minute, EvictionPolicy: EvictLRU}
}

// Options configure a Runtime. Journal, Coordinator and Session are required.
type Options struct {
	// NodeID names this node in logs and lock ownership.
	NodeID string
	// Journal stores every actor's log. The runtime does not close it.
	Journal journal.Journal
	// Coordinator grants actor locks and fencing tokens. Not closed by the runtime.
	Coordinator lock.Coordinator
	// Session is the node's coordinator session.
	Session Session
	// Pool returns the pool settings of an actor type; nil gives
	// DefaultPoolConfig to every type.
	Pool func(actorType string) PoolConfig
	// SnapshotEvery writes a snapshot, and truncates the journal behind it,
	// once an actor has this many entries since its last snapshot. 0 never.
	SnapshotEvery int
	// MaxPayloadBytes rejects encoded arguments above this size with
	// ErrPayloadTooLarge; 0 means no limit.
	MaxPayloadBytes int
	// Router connects the runtime to the cluster; nil: a single node, where
	// every actor is local.
	Router Router
	// Logger receives the runtime's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for idle timeouts; nil uses time.Now.
	Now func() time.Time
	// IdleCheckInterval is how often idle actors are looked for; 0 means
	// every second, so an idle actor goes at most a second after its timeout.
	IdleCheckInterval time.Duration
	// Observer is told about calls, turns, activations and deactivations
	// (metrics, traces); nil: nobody.
	Observer Observer
	// MaxCallDepth bounds a call chain (see CallChain): a call that would
	// make it longer fails with ErrCallChainTooDeep. 0 means
	// DefaultMaxCallDepth.
	MaxCallDepth int
	// Messages is the durable message store Send enqueues into; it must
	// be the Journal itself (one backend value), so that a turn's
	// acknowledgement and outbox commit with its append. nil: Send fails
	// with ErrMessagingDisabled.
	Messages queue.Store
	// DirectMessages lets Send apply a message on acceptance when this
	// node hosts (or owns) its actor: the message is run as a turn at once
	// and accepted by that turn's own journal entry (a
	// journal.KindMessageDirect entry in place of the invocation), one
	// write instead of an enqueue and a delivery. The journal refuses it
	// when the actor has an ordered message pending or the id is known,
	// and Send then enqueues it as usual. Set it only when Messages is the
	// Journal.
	DirectMessages bool
	// Publish, when set, takes the messages Send accepts from outside any
	// actor in place of Messages.Enqueue: a broker that keeps them outside
	// the journal (RabbitMQ) and answers once it holds them durably. Its
	// deliveries must come back through WithExternalDelivery, whose turns
	// record each id in the journal. Messages sent from inside a turn
	// (Context.Messages) and reminders still ride in the journal's append
	// and live in Messages. nil: Send enqueues into Messages.
	Publish func(ctx context.Context, msg queue.Message) (queue.Accepted, error)
	// MessageOrdered says whether an actor type's messages are ordered
	// (fifo) or not (standard); nil: all ordered.
	MessageOrdered func(actorType string) bool
	// MaxDelay is the furthest ahead a message's delivery time may be;
	// 0: no limit.
	MaxDelay time.Duration
	// TraceParent returns the W3C traceparent of ctx's span, recorded in
	// the messages sent under ctx; nil: none.
	TraceParent func(ctx context.Context) string
}

// Runtime hosts actors on one node: it activates them from their journal,
// runs one turn at a time per actor, commits each turn's state changes to
// the journal before answering, and deactivates idle or evicted actors.
//
// All exported methods are safe for concurrent use.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	journal journal.Journal
	coord   lock.Coordinator
	session Session
	now     func() time.Time
	base    time.Time // origin of the monotonic lastUsed readings
	// realClock: Options.Now is time.Now, so base carries a monotonic
	// reading that other time.Now readings can be compared with.
	realClock bool

	typesMu sync.Mutex
	types   atomic.Pointer[map[string]*registered] // copy-on-write

	closing   atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// registered is an actor type as a runtime hosts it.
type registered struct {
	def     *typeDef
	methods map[string]*methodDef // copied at Register
	pool    *pool
}

// New builds a Runtime and starts its idle sweeper. Call Close to stop it.
func New(opts Options) (*Runtime, error) {
	var errs []error
	if opts.Journal == nil {
		errs = append(errs, errors.New("runtime: Options.Journal is required"))
	}
	if opts.Coordinator == nil {
		errs = append(errs, errors.New("runtime: Options.Coordinator is required"))
	}
	if opts.Session == nil {
		errs = append(errs, errors.New("runtime: Options.Session is required"))
	}
	if opts.SnapshotEvery < 0 {
		errs = append(errs, errors.New("runtime: Options.SnapshotEvery must be >= 0"))
	}
	if opts.MaxPayloadBytes < 0 {
		errs = append(errs, errors.New("runtime: Options.MaxPayloadBytes must be >= 0"))
	}
	if opts.MaxCallDepth < 0 {
		errs = append(errs, errors.New("runtime: Options.MaxCallDepth must be >= 0"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.Pool == nil {
		opts.Pool = func(string) PoolConfig { return DefaultPoolConfig() }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	realClock := opts.Now == nil
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxCallDepth == 0 {
		opts.MaxCallDepth = DefaultMaxCallDepth
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Logger,
		journal:   opts.Journal,
		coord:     opts.Coordinator,
		session:   opts.Session,
		now:       opts.Now,
		base:      opts.Now(),
		realClock: realClock,
		stop:      make(chan struct{}),
	}
	empty := map[string]*registered{}
	r.types.Store(&empty)
	r.wg.Add(1)
	go r.sweepLoop()
	return r, nil
}

// Register adds actor types. It fails, registering none of them, if a name
// is empty or already registered or a type has definition mistakes.
func (r *Runtime) Register(defs ...Definition) error {
	r.typesMu.Lock()
	defer r.typesMu.Unlock()
	old := *r.types.Load()
	next := make(map[string]*registered, len(old)+len(defs))
	for k, v := range old {
		next[k] = v
	}
	var errs []error
	for _, d := range defs {
		td := d.definition()
		td.mu.Lock()
		errs = append(errs, td.errs...)
		errs = append(errs, td.contractErrors()...)
		methods := make(map[string]*methodDef, len(td.methods))
		for k, v := range td.methods {
			methods[k] = v
		}
		td.mu.Unlock()
		if td.name == "" {
			errs = append(errs, errors.New("runtime: actor type with an empty name"))
			continue
		}
		if _, dup := next[td.name]; dup {
			errs = append(errs, fmt.Errorf("runtime: actor type %q registered twice", td.name))
			continue
		}
		cfg := r.opts.Pool(td.name)
		if cfg.EvictionPolicy == "" {
			cfg.EvictionPolicy = EvictLRU
		}
		if cfg.MaxQueue < 0 || cfg.MaxActivating < 0 || cfg.RateLimit < 0 || cfg.RateBurst < 0 {
			errs = append(errs, fmt.Errorf("runtime: actor type %q: negative MaxQueue %d, MaxActivating %d, RateLimit %v or RateBurst %d", td.name, cfg.MaxQueue, cfg.MaxActivating, cfg.RateLimit, cfg.RateBurst))
			continue
		}
		if cfg.RateLimit > 0 && cfg.RateBurst == 0 {
			cfg.RateBurst = int(math.Ceil(cfg.RateLimit))
		}
		if cfg.MaxQueue == 0 {
			cfg.MaxQueue = DefaultMaxQueue
		}
		if cfg.IdempotencyKeys < 0 || cfg.IdempotencyRetention < 0 {
			errs = append(errs, fmt.Errorf("runtime: actor type %q: negative idempotency window (%d keys, %v)", td.name, cfg.IdempotencyKeys, cfg.IdempotencyRetention))
			continue
		}
		if cfg.IdempotencyKeys == 0 {
			cfg.IdempotencyKeys = DefaultIdempotencyKeys
		}
		if cfg.IdempotencyRetention == 0 {
			cfg.IdempotencyRetention = DefaultIdempotencyRetention
		}
		if cfg.EvictionPolicy != EvictLRU && cfg.EvictionPolicy != EvictReject {
			errs = append(errs, fmt.Errorf("runtime: actor type %q: unknown eviction policy %q", td.name, cfg.EvictionPolicy))
			continue
		}
		reg := &registered{def: td, methods: methods}
		reg.pool = newPool(r, td, cfg)
		reg.pool.reentrant = td.reentrant || cfg.Reentrant
		next[td.name] = reg
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.types.Store(&next)
	return nil
}

// Types lists the registered actor type names with their methods.
func (r *Runtime) Types() map[string][]string {
	out := make(map[string][]string)
	for name, reg := range *r.types.Load() {
		ms := make([]string, 0, len(reg.methods))
		for m := range reg.methods {
			ms = append(ms, m)
		}
		out[name] = ms
	}
	return out
}

// Active reports how many activations of actorType are in memory.
func (r *Runtime) Active(actorType string) int {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return 0
	}
	return int(reg.pool.count.Load())
}

// MailboxDepth reports how many calls are waiting for the actor's current
// turn to finish (0 when it is not active).
func (r *Runtime) MailboxDepth(actorType, id string) int {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return 0
	}
	sh := reg.pool.shard(id)
	sh.mu.RLock()
	a := sh.m[id]
	sh.mu.RUnlock()
	if a == nil {
		return 0
	}
	return int(a.waiting.Load())
}

func (r *Runtime) lookup(actorType, method string) (*registered, *methodDef, error) {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownType, actorType)
	}
	md, ok := reg.methods[method]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q has no method %q", ErrUnknownMethod, actorType, method)
	}
	return reg, md, nil
}

// Invoke runs method on the actor (actorType, id) with an encoded argument
// and returns the encoded result. It implements Invoker. In a cluster the
// call is forwarded to the node that owns the actor (see Router).
func (r *Runtime) Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error) {
	return r.invoke(ctx, actorType, id, method, payload, 0)
}

func (r *Runtime) invoke(ctx context.Context, actorType, id, method string, payload []byte, hops int) (_ []byte, err error) {
	reg, md, err := r.lookup(actorType, method)
	if err != nil {
		return nil, err
	}
	ctx, done := r.observeCall(ctx, actorType, id, method, hops)
	defer func() { done(err) }()
	if max := r.opts.MaxPayloadBytes; max > 0 && len(payload) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(payload), max)
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if err := checkChain(ctx, actorType, id, r.opts.MaxCallDepth, reg.pool.reentrant); err != nil {
		return nil, err
	}
	if err := checkIdempotencyKey(ctx); err != nil {
		return nil, err
	}
	call := Call{ActorType: actorType, ActorID: id, Method: method, Payload: payload, Hops: hops}
	local, node, a := r.placeFor(reg, id, hops)
	if !local {
		return r.forward(ctx, node, call)
	}
	in, err := md.decode(payload)
	if err != nil {
		return nil, decodeErr(fmt.Sprintf("argument of %s.%s (%s)", actorType, method, md.codecName), err)
	}
	out, err := r.run(ctx, reg, a, id, method, hops, md.encode, func(tc *turnCtx) (any, error) {
		return md.call(tc, tc.act.inst, in)
	})
	if holder, ok := r.heldElsewhere(err); ok {
		return r.forward(ctx, holder, call)
	}
	if err != nil {
		return nil, err
	}
	if rec, ok := out.(recorded); ok {
		return rec.b, nil
	}
	b, err := md.encode(out)
	if err != nil {
		// The turn is committed; only the reply could not be encoded.
		return nil, fmt.Errorf("loom: encoding result of %s.%s: %w", actorType, method, err)
	}
	return b, nil
}

// InvokeLocal runs method with an unencoded argument. It implements
// LocalInvoker. An actor hosted on another node is called through the
// Router with the method's codec.
func (r *Runtime) InvokeLocal(ctx context.Context, actorType, id, method string, in any) (_ any, err error) {
	reg, md, err := r.lookup(actorType, method)
	if err != nil {
		return nil, err
	}
	ctx, done := r.observeCall(ctx, actorType, id, method, 0)
	defer func() { done(err) }()
	if !md.checkIn(in) {
		return nil, fmt.Errorf("%w: argument of %s.%s has type %T", ErrBadPayload, actorType, method, in)
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if err := checkChain(ctx, actorType, id, r.opts.MaxCallDepth, reg.pool.reentrant); err != nil {
		return nil, err
	}
	if err := checkIdempotencyKey(ctx); err != nil {
		return nil, err
	}
	remote := func(node string) (any, error) {
		payload, err := md.encodeIn(in)
		if err != nil {
			return nil, fmt.Errorf("%w: encoding argument of %s.%s: %v", ErrBadPayload, actorType, method, err)
		}
		res, err := r.forward(ctx, node, Call{ActorType: actorType, ActorID: id, Method: method, Payload: payload})
		if err != nil {
			return nil, err
		}
		out, err := md.decodeOut(res)
		if err != nil {
			return nil, fmt.Errorf("%w: decoding result of %s.%s: %v", ErrBadPayload, actorType, method, err)
		}
		return out, nil
	}
	local, node, a := r.placeFor(reg, id, 0)
	if !local {
		return remote(node)
	}
	out, err := r.run(ctx, reg, a, id, method, 0, md.encode, func(tc *turnCtx) (any, error) {
		return md.call(tc, tc.act.inst, in)
	})
	if holder, ok := r.heldElsewhere(err); ok {
		return remote(holder)
	}
	if rec, ok := out.(recorded); ok && err == nil {
		if rec.fresh {
			return rec.v, nil
		}
		v, err := md.decodeOut(rec.b)
		if err != nil {
			return nil, fmt.Errorf("%w: decoding the recorded result of %s.%s: %v", ErrBadPayload, actorType, method, err)
		}
		return v, nil
	}
	return out, err
}

// Execute runs fn as one turn of the local actor (t, id), the closure form
// of a method call: fn sees the actor's instance and State, its changes are
// committed like a method's, and it is serialised with the actor's other
// turns. It fails with ErrNotLocal if this node does not host the actor.
func Execute[T any](ctx context.Context, r *Runtime, t *Type[T], id string, fn func(ctx Context, a *T) error) error {
	reg, ok := (*r.types.Load())[t.def.name]
	if !ok || reg.def != t.def {
		return fmt.Errorf("%w: %q", ErrUnknownType, t.def.name)
	}
	local, node, a := r.placeFor(reg, id, 0)
	if !local {
		return fmt.Errorf("%w: %s/%s belongs to node %s", ErrNotLocal, t.def.name, id, node)
	}
	_, err := r.run(ctx, reg, a, id, "execute", 0, nil, func(tc *turnCtx) (any, error) {
		return nil, fn(tc, tc.act.inst.(*T))
	})
	if holder, ok := r.heldElsewhere(err); ok {
		return fmt.Errorf("%w: %s/%s is active on node %s", ErrNotLocal, t.def.name, id, holder)
	}
	return err
}

// Close stops accepting calls (they fail with ErrShuttingDown), lets each
// running turn finish, and deactivates every actor cleanly (OnDeactivate
// hook). It does not release the actors' locks one by one: the caller ends
// the coordinator session next, which frees them all at once. It returns ctx's error if that takes longer than ctx allows.
// Close may be called more than once. It does not close the journal or
// the coordinator.
func (r *Runtime) Close(ctx context.Context) error {
	r.closing.Store(true)
	r.closeOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
	var errs []error
	for _, reg := range *r.types.Load() {
		if err := reg.pool.deactivateAll(ctx, "shutdown"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Deactivate deactivates the actor (actorType, id) if it is active here:
// it waits for the running turn, runs the OnDeactivate hook and releases the
// actor's lock. The next call activates it again from its journal.
func (r *Runtime) Deactivate(ctx context.Context, actorType, id string) error {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownType, actorType)
	}
	sh := reg.pool.shard(id)
	sh.mu.RLock()
	a := sh.m[id]
	sh.mu.RUnlock()
	if a == nil {
		return nil
	}
	if err := a.acquire(ctx); err != nil {
		return fmt.Errorf("loom: deactivating %s: %w", a.key, err)
	}
	if a.dead {
		a.release()
		return nil
	}
	r.deactivateHeld(a, "requested", true)
	return nil
}

// DropAll discards every activation at once, without hooks or lock
// releases: what a node does when its session may have lapsed and another
// node may already own its actors. Running turns cannot commit afterwards
// (the journal fences them); their callers get an error.
func (r *Runtime) DropAll(reason string) {
	for _, reg := range *r.types.Load() {
		reg.pool.dropAll(reason)
	}
}

// monoNow is the runtime's clock as nanoseconds since it started.
func (r *Runtime) monoNow() int64 { return int64(r.now().Sub(r.base)) }

func validID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > 1024 {
		return fmt.Errorf("%w: %d bytes, limit 1024", ErrInvalidID, len(id))
	}
	return nil
}
