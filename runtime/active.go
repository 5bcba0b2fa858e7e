package runtime

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
