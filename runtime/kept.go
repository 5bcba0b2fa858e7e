package runtime

import (
	"container/list"
	"context"
	"sync"

	"github.com/loom-mesh/loom/lock"
)

// keptLocks are the locks of actors a pool evicted (EvictLRU) that the
// node keeps instead of releasing them: an actor evicted for room is
// likely to be called again soon, on this node, and then it activates
// under the lock it still holds, without a grant through the coordinator;
// the eviction did not release it either. A cold call costs its replay,
// not two coordinator writes.
//
// Keeping a lock is safe because the lock is still held, by the same
// session: nobody else can take the actor, and if the session ends every
// kept lock goes with it (the entries of another session are never used).
// Keeping it is not a liveness problem either: a node whose activation
// meets the kept lock forwards the call here (the lock holder is the
// truth about where an actor lives), and Rebalance releases the kept
// locks of actors the ring places elsewhere. The pool keeps at most
// keptPerSlot × MaxSize of them and releases the oldest beyond that, a
// batch at a time, side by side, so that the releases share round trips.
//
// A lock being released is kept in the map, marked, until its release
// returned: an activation of its actor waits for that, and then takes the
// lock anew. Were it to take it while the release is on its way (a
// session re-acquiring its own lock gets it at once), the release would
// then free the new activation's lock.
type keptLocks struct {
	mu    sync.Mutex
	m     map[string]*keptLock // by actor key
	order list.List            // of *keptLock not being released, oldest first
}

type keptLock struct {
	key     string
	session lock.SessionID
	token   uint64
	el      *list.Element // in order; nil while being released
	done    chan struct{} // closed when a release has returned
}

// keptPerSlot is how many kept locks a pool holds per MaxSize: 10, so a
// working set ten times the pool's size is served without lock writes.
const keptPerSlot = 10

func (k *keptLocks) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.order.Len()
}

// has reports whether key's lock is kept (or being released).
func (k *keptLocks) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[key] != nil
}

// put keeps key's lock, held by session with token.
func (k *keptLocks) put(key string, session lock.SessionID, token uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[string]*keptLock)
	}
	if old := k.m[key]; old != nil {
		if old.el == nil {
			return // being released: let that finish (not reached: the actor was active)
		}
		k.order.Remove(old.el)
	}
	e := &keptLock{key: key, session: session, token: token}
	e.el = k.order.PushBack(e)
	k.m[key] = e
}

// take removes key's kept lock and returns its token if it was kept by
// session. If it is being released, take waits for the release first
// (and returns ok false). Entries of another session are dropped.
func (k *keptLocks) take(ctx context.Context, key string, session lock.SessionID) (token uint64, ok bool, err error) {
	k.mu.Lock()
	e := k.m[key]
	if e == nil {
		k.mu.Unlock()
		return 0, false, nil
	}
	if e.el == nil {
		k.mu.Unlock()
		select {
		case <-e.done:
			return 0, false, nil
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	k.order.Remove(e.el)
	delete(k.m, key)
	k.mu.Unlock()
	if e.session != session {
		return 0, false, nil
	}
	return e.token, true, nil
}

// clear forgets every kept lock that is not being released, without
// releasing it: the session they were kept under may have lapsed.
func (k *keptLocks) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for el := k.order.Front(); el != nil; el = el.Next() {
		delete(k.m, el.Value.(*keptLock).key)
	}
	k.order.Init()
}

// claim marks for release the oldest n kept locks and those release
// selects (nil: none), and returns them.
func (k *keptLocks) claim(n int, release func(key string) bool) []*keptLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*keptLock
	for el := k.order.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*keptLock)
		if len(out) < n || (release != nil && release(e.key)) {
			k.order.Remove(el)
			e.el, e.done = nil, make(chan struct{})
			out = append(out, e)
		} else if release == nil {
			break
		}
		el = next
	}
	return out
}

// releaseParallel bounds the releases of kept locks in flight at once: a
// change of membership may move tens of thousands of them.
const releaseParallel = 512

// release releases the claimed locks side by side, releaseParallel at a
// time, and forgets them.
func (k *keptLocks) release(r *Runtime, claimed []*keptLock) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, releaseParallel)
	for _, e := range claimed {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			r.releaseKey(e.session, e.key)
			k.mu.Lock()
			delete(k.m, e.key)
			k.mu.Unlock()
			close(e.done)
		})
	}
	wg.Wait()
}

// trimKept releases the oldest kept locks beyond the pool's bound, a batch at
// a time.
func (p *pool) trimKept() {
	limit := keptPerSlot * p.cfg.MaxSize
	if over := p.kept.len() - limit; over > 0 {
		p.kept.release(p.r, p.kept.claim(max(over, evictBatch(p.cfg.MaxSize)), nil))
	}
}
