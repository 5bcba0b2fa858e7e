package runtime

import (
	"slices"
	"time"
)

// IsActive reports whether the actor (actorType, id) is active on this
// runtime right now (loaded in memory, whether or not a turn runs). An
// unknown type is never active.
func (r *Runtime) IsActive(actorType, id string) bool {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return false
	}
	return r.active(reg, id) != nil
}

// KeepsLock reports whether this runtime keeps the lock of the actor,
// evicted from its pool (see PoolConfig.MaxSize): a later activation here
// takes no new grant, and calls routed to the lock's holder come here.
func (r *Runtime) KeepsLock(actorType, id string) bool {
	reg, ok := (*r.types.Load())[actorType]
	return ok && reg.pool.kept.has(actorType+"/"+id)
}

// ActivationInfo is what a runtime tells of one of its active actors.
type ActivationInfo struct {
	// ActivatedAt is when its activation (lock, snapshot and journal
	// replay, OnActivate) completed; LastUsed when its latest turn
	// started. Both are on the runtime's clock (Options.Now).
	ActivatedAt time.Time
	LastUsed    time.Time
	// Waiting is the callers waiting for its running turn.
	Waiting int
}

// Activation reports on the actor (actorType, id) if it is active on this
// runtime and done activating; false otherwise. It takes no lock an actor
// holds: safe to call while the actor runs a turn.
func (r *Runtime) Activation(actorType, id string) (ActivationInfo, bool) {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return ActivationInfo{}, false
	}
	a := r.active(reg, id)
	if a == nil {
		return ActivationInfo{}, false
	}
	at := a.activated.Load()
	if at == 0 {
		return ActivationInfo{}, false
	}
	return ActivationInfo{
		ActivatedAt: r.base.Add(time.Duration(at - 1)),
		LastUsed:    r.base.Add(time.Duration(a.lastUsed.Load())),
		Waiting:     int(a.waiting.Load()),
	}, true
}

// ActiveIDs lists the ids of the actors of actorType in memory on this
// runtime right now (being activated included), sorted. An unknown type
// has none.
func (r *Runtime) ActiveIDs(actorType string) []string {
	reg, ok := (*r.types.Load())[actorType]
	if !ok {
		return nil
	}
	var ids []string
	for i := range reg.pool.shards {
		sh := &reg.pool.shards[i]
		sh.mu.RLock()
		for id := range sh.m {
			ids = append(ids, id)
		}
		sh.mu.RUnlock()
	}
	slices.Sort(ids)
	return ids
}
