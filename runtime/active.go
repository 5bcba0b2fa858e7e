package runtime

import "slices"

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
