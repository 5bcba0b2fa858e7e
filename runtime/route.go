package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/loom-mesh/loom/lock"
)

// Router connects a Runtime to the other nodes of a cluster. A nil Router
// makes every actor local (a single node).
//
// The lock holder is the truth about where an actor lives; the ring is only
// a hint. A call is served where the actor is active; otherwise a call that
// arrives from a caller (hops 0) goes to the ring's owner, and a forwarded
// call (hops > 0) is served here if this node can take the actor's lock, or
// forwarded once more to the lock's holder. MaxHops bounds the chain, so a
// call never loops.
type Router interface {
	// NodeID is this node's id (the owner name of its coordinator session).
	NodeID() string
	// Owner returns the node the ring places the actor on, and whether that
	// is this node. ok is false when no node is known.
	Owner(actorType, id string) (node string, local bool, ok bool)
	// Forward sends the call to node and returns its encoded result. An
	// error wraps the runtime's sentinels as the remote node returned them.
	Forward(ctx context.Context, node string, c Call) ([]byte, error)
}

// Call is an encoded call as it travels between nodes.
type Call struct {
	ActorType, ActorID, Method string
	Payload                    []byte
	// Hops counts the forwards the call has been through so far.
	Hops int
}

// MaxHops is the most times a call is forwarded between nodes.
const MaxHops = 3

// ErrTooManyHops wraps ErrUnavailable: the call was forwarded MaxHops times
// without reaching the actor's owner (membership is changing). Not applied.
var ErrTooManyHops = fmt.Errorf("%w: too many forwarding hops", ErrUnavailable)

// InvokeForwarded serves a call another node forwarded here (the transport
// calls it). It is Invoke with the hop count of the call.
func (r *Runtime) InvokeForwarded(ctx context.Context, c Call) ([]byte, error) {
	return r.invoke(ctx, c.ActorType, c.ActorID, c.Method, c.Payload, c.Hops)
}

// placeFor decides where a call is served: local true, or the node to
// forward to. When the actor is active here it also returns its
// activation, which serve then takes without looking it up again.
func (r *Runtime) placeFor(reg *registered, id string, hops int) (local bool, node string, a *activation) {
	rt := r.opts.Router
	if rt == nil {
		return true, "", nil
	}
	if a = r.active(reg, id); a != nil {
		return true, "", a
	}
	owner, isLocal, ok := rt.Owner(reg.def.name, id)
	if !ok || isLocal || hops > 0 {
		// This node is the owner, or the call was already forwarded: take
		// the lock here if it is free (invoke and InvokeLocal forward to
		// the holder if not, see heldElsewhere).
		return true, "", nil
	}
	return false, owner, nil
}

// active returns id's activation in reg's pool, or nil.
func (r *Runtime) active(reg *registered, id string) *activation {
	sh := reg.pool.shard(id)
	sh.mu.RLock()
	a := sh.m[id]
	sh.mu.RUnlock()
	return a
}

// forward sends a call to node, counting the hop.
func (r *Runtime) forward(ctx context.Context, node string, c Call) ([]byte, error) {
	if c.Hops >= MaxHops {
		return nil, fmt.Errorf("%w: %s/%s after %d hops", ErrTooManyHops, c.ActorType, c.ActorID, c.Hops)
	}
	c.Hops++
	return r.opts.Router.Forward(ctx, node, c)
}

// heldElsewhere reports the node holding the actor's lock when activation
// failed because another node holds it.
func (r *Runtime) heldElsewhere(err error) (string, bool) {
	if err == nil || r.opts.Router == nil {
		return "", false
	}
	var he *lock.HeldError
	if errors.As(err, &he) && he.Holder != "" && he.Holder != r.opts.Router.NodeID() {
		return he.Holder, true
	}
	return "", false
}

// Rebalance deactivates, cleanly, every local actor the ring now places on
// another node, so that the next call activates it on its new owner, and
// releases the locks it kept of such actors when they were evicted. The
// node calls it when membership changes. It returns how many active
// actors it handed off.
func (r *Runtime) Rebalance(ctx context.Context) (int, error) {
	rt := r.opts.Router
	if rt == nil {
		return 0, nil
	}
	n := 0
	for _, reg := range *r.types.Load() {
		for _, a := range reg.pool.list() {
			_, local, ok := rt.Owner(reg.def.name, a.id)
			if !ok || local {
				continue
			}
			if err := a.acquire(ctx); err != nil {
				return n, fmt.Errorf("loom: handing off %s: %w", a.key, err)
			}
			if a.dead {
				a.release()
				continue
			}
			r.deactivateHeld(a, "handed off", true)
			n++
		}
		reg.pool.kept.release(r, reg.pool.kept.claim(0, func(key string) bool {
			_, local, ok := rt.Owner(reg.def.name, strings.TrimPrefix(key, reg.def.name+"/"))
			return ok && !local
		}))
	}
	return n, nil
}

// Hosts reports whether the actor is active on this node.
func (r *Runtime) Hosts(actorType, id string) bool {
	reg, ok := (*r.types.Load())[actorType]
	return ok && r.active(reg, id) != nil
}
