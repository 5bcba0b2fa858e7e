package runtime

import (
	"golang.org/x/time/rate"

	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

const shardCount = 32

var shardSeed = maphash.MakeSeed()

// pool holds the live activations of one actor type.
//
// Locking: a shard's mutex guards its map; evictMu serialises the creation
// of activations while the pool enforces MaxSize, so the cap is exact. An
// activation's own fields are guarded by its mailbox (see activation).
type pool struct {
	shards  [shardCount]shard // first: a pool's allocation is 64-byte aligned (size class), and so is each shard
	r       *Runtime
	td      *typeDef
	cfg     PoolConfig
	count   atomic.Int64 // activations in the maps
	waiting atomic.Int64 // callers blocked on the mailboxes of its activations
	evictMu sync.Mutex
	// activating holds a token per activation in progress
	// (PoolConfig.MaxActivating); nil without a bound.
	activating chan struct{}
	// limiter is PoolConfig.RateLimit's token bucket; nil without one.
	limiter *rate.Limiter
	// reentrant: calls from a running turn's own chain interleave with it
	// (Type.Reentrant or PoolConfig.Reentrant; see reentrant.go).
	reentrant bool
	// kept holds the locks of evicted actors (kept.go).
	kept  keptLocks
	_     [cacheLine]byte // clock, written by every turn, on a cache line of its own
	clock atomic.Uint64   // logical clock for LRU order
	_     [cacheLine - 8]byte
}

// A shard fills a cache line, so that read-locking one from
// one core does not evict its neighbour from the other's cache.
type shard struct {
	mu sync.RWMutex
	m  map[string]*activation
	_  [cacheLine - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[string]*activation(nil))]byte
}

const cacheLine = 64

func newPool(r *Runtime, td *typeDef, cfg PoolConfig) *pool {
	p := &pool{r: r, td: td, cfg: cfg}
	if cfg.MaxActivating > 0 {
		p.activating = make(chan struct{}, cfg.MaxActivating)
	}
	if cfg.RateLimit > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	for i := range p.shards {
		p.shards[i].m = make(map[string]*activation)
	}
	return p
}

func (p *pool) shard(id string) *shard {
	return &p.shards[maphash.String(shardSeed, id)%shardCount]
}

// get returns the live activation for id, or creates one. A created
// activation is returned with its mailbox held by the caller, who must
// activate it.
func (p *pool) get(ctx context.Context, id string) (a *activation, created bool, err error) {
	sh := p.shard(id)
	sh.mu.RLock()
	a = sh.m[id]
	sh.mu.RUnlock()
	if a != nil {
		return a, false, nil
	}
	if p.cfg.MaxSize > 0 {
		p.evictMu.Lock()
		defer p.evictMu.Unlock()
		if err := p.makeRoom(ctx, id); err != nil {
			return nil, false, err
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if p.r.closing.Load() {
		return nil, false, fmt.Errorf("%w: not activating %s/%s", ErrShuttingDown, p.td.name, id)
	}
	if a = sh.m[id]; a != nil {
		return a, false, nil
	}
	a = newActivation(p, id)
	a.touch(p.r.monoNow())
	sh.m[id] = a
	p.count.Add(1)
	return a, true, nil
}

// makeRoom deactivates least recently used actors until a new activation
// fits, or fails with ErrPoolFull under the reject policy. evictMu is held.
//
// A pool evicts in batches (evictBatch): one scan finds the batch's
// victims, and their deactivations run side by side, so that their lock
// releases share Raft entries (group commit) and the activations waiting
// for room wait for one round trip per batch rather than one per victim.
func (p *pool) makeRoom(ctx context.Context, id string) error {
	for p.count.Load() >= int64(p.cfg.MaxSize) {
		sh := p.shard(id)
		sh.mu.RLock()
		_, exists := sh.m[id]
		sh.mu.RUnlock()
		if exists {
			return nil // someone activated it meanwhile; no room needed
		}
		if p.cfg.EvictionPolicy == EvictReject {
			return fmt.Errorf("%w: %s has %d activations (maxSize %d)", ErrPoolFull, p.td.name, p.count.Load(), p.cfg.MaxSize)
		}
		victims := p.leastRecentlyUsed(evictBatch(p.cfg.MaxSize))
		if len(victims) == 0 {
			return nil
		}
		errs := make([]error, len(victims))
		var wg sync.WaitGroup
		for i, v := range victims {
			wg.Go(func() { errs[i] = p.evict(ctx, v) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	p.trimKept()
	return nil
}

// evictBatch is how many activations a pool of maxSize evicts at once
// when full: 1 up to 63, then one in 32, at most 512 (10,000: 312). Each
// batch costs a scan of the whole pool.
func evictBatch(maxSize int) int {
	return min(max(maxSize/32, 1), 512)
}

// evict deactivates victim once its running turn, if any, has ended.
func (p *pool) evict(ctx context.Context, victim *activation) error {
	if err := victim.acquire(ctx); err != nil {
		return err
	}
	if victim.dead {
		victim.release()
		return nil
	}
	p.r.deactivateHeld(victim, reasonEvicted, true)
	return nil
}

// leastRecentlyUsed scans the pool for the n activations used longest
// ago, oldest first.
func (p *pool) leastRecentlyUsed(n int) []*activation {
	type use struct {
		a *activation
		u uint64
	}
	best := make([]use, 0, n) // ascending by u
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.RLock()
		for _, a := range sh.m {
			u := a.lastUse.Load()
			if len(best) == n && u >= best[n-1].u {
				continue
			}
			if len(best) < n {
				best = append(best, use{})
			}
			j := len(best) - 1
			for ; j > 0 && best[j-1].u > u; j-- {
				best[j] = best[j-1]
			}
			best[j] = use{a, u}
		}
		sh.mu.RUnlock()
	}
	out := make([]*activation, len(best))
	for i, b := range best {
		out[i] = b.a
	}
	return out
}

// remove takes a out of the pool if it is still there.
func (p *pool) remove(a *activation) {
	sh := p.shard(a.id)
	sh.mu.Lock()
	if sh.m[a.id] == a {
		delete(sh.m, a.id)
		p.count.Add(-1)
	}
	sh.mu.Unlock()
}

// list returns the pool's activations.
func (p *pool) list() []*activation {
	var out []*activation
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.RLock()
		for _, a := range sh.m {
			out = append(out, a)
		}
		sh.mu.RUnlock()
	}
	return out
}

// deactivateAll waits for each activation's running turn and deactivates
// it cleanly.
func (p *pool) deactivateAll(ctx context.Context, reason string) error {
	for _, a := range p.list() {
		if err := a.acquire(ctx); err != nil {
			return fmt.Errorf("loom: deactivating %s: %w", a.key, err)
		}
		if a.dead {
			a.release()
			continue
		}
		p.r.deactivateHeld(a, reason, true)
	}
	return nil
}

// dropAll forgets every activation at once (see Runtime.DropAll).
func (p *pool) dropAll(reason string) {
	p.kept.clear()
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for id, a := range sh.m {
			a.dropped.Store(true)
			delete(sh.m, id)
			p.count.Add(-1)
			if o := p.r.opts.Observer; o != nil {
				o.Deactivated(p.td.name, id, DeactivationDropped)
			}
		}
		sh.mu.Unlock()
	}
	p.r.log.Warn("dropped all activations", "type", p.td.name, "reason", reason)
}

// sweepIdle deactivates actors idle for longer than the idle timeout. An
// actor with a turn running or waiting is skipped this time.
func (p *pool) sweepIdle(now int64) {
	if p.cfg.IdleTimeout <= 0 {
		return
	}
	limit := int64(p.cfg.IdleTimeout)
	for _, a := range p.list() {
		if now-a.lastUsed.Load() < limit {
			continue
		}
		if !a.tryAcquire() && !a.acquireIdle() {
			continue
		}
		if a.dead || now-a.lastUsed.Load() < limit {
			a.release()
			continue
		}
		p.r.deactivateHeld(a, "idle", true)
	}
}

// acquireIdle waits a little for the mailbox of an actor that looks idle
// but is in a turn: a timer's (timer turns do not count as use, so an
// actor whose timer fires often would otherwise be found busy at every
// sweep and never leave), or a call running longer than the idle timeout.
func (a *activation) acquireIdle() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return a.acquire(ctx) == nil
}

func (r *Runtime) sweepLoop() {
	defer r.wg.Done()
	interval := r.opts.IdleCheckInterval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.SweepIdle()
		}
	}
}

// SweepIdle deactivates every actor idle past its type's idle timeout now,
// instead of waiting for the periodic check. Tests with an injected clock
// use it; it is safe to call at any time.
func (r *Runtime) SweepIdle() {
	now := r.monoNow()
	for _, reg := range *r.types.Load() {
		reg.pool.sweepIdle(now)
	}
}
