package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DefaultMaxCallDepth is the longest call chain (actors waiting on each
// other's calls, the caller included) when Options.MaxCallDepth is 0.
const DefaultMaxCallDepth = 32

var (
	// ErrCallCycle: the call would enter an actor that is already waiting,
	// further up the same call chain, for this call to end (A → B → A).
	// One turn at a time per actor means it could only wait until its
	// deadline; it fails at once instead, naming the cycle. Not applied.
	ErrCallCycle = errors.New("loom: call cycle")
	// ErrCallChainTooDeep: the call chain is longer than the runtime's
	// MaxCallDepth. Not applied.
	ErrCallChainTooDeep = errors.New("loom: call chain too deep")
)

// chainLink is one actor of a call chain: the actor whose turn made the
// call, linked to the chain its own turn was called with. A turn's link
// lives in its turnCtx, so entering a turn allocates nothing more.
type chainLink struct {
	typ, id string
	parent  *chainLink
	depth   int // links from the root, this one included
}

type chainKeyType struct{}

var chainKey chainKeyType

// chainOf is the call chain ctx carries: nil outside any actor's turn.
func chainOf(ctx context.Context) *chainLink {
	l, _ := ctx.Value(chainKey).(*chainLink)
	return l
}

// CallChain lists, outermost first, the actors ("type/id") whose turns are
// waiting on the call ctx belongs to: empty for a call from outside any
// actor. Every call an actor makes carries its turn's chain, to any node.
func CallChain(ctx context.Context) []string {
	l := chainOf(ctx)
	if l == nil {
		return nil
	}
	out := make([]string, l.depth)
	for i := l.depth - 1; l != nil; i, l = i-1, l.parent {
		out[i] = l.typ + "/" + l.id
	}
	return out
}

// WithCallChain returns ctx carrying a call chain received from another
// process (actors as "type/id", outermost first, as CallChain lists them).
// Transports use it; actors' calls carry their chain by themselves.
func WithCallChain(ctx context.Context, chain []string) (context.Context, error) {
	var l *chainLink
	for _, s := range chain {
		typ, id, ok := strings.Cut(s, "/")
		if !ok || typ == "" || id == "" {
			return ctx, fmt.Errorf("%w: call chain entry %q is not type/id", ErrBadPayload, s)
		}
		d := 1
		if l != nil {
			d = l.depth + 1
		}
		l = &chainLink{typ: typ, id: id, parent: l, depth: d}
	}
	if l == nil {
		return ctx, nil
	}
	return context.WithValue(ctx, chainKey, l), nil
}

// checkChain refuses a call to (typ, id) that closes a cycle in ctx's call
// chain (unless the type is reentrant), or that would make it longer than
// max.
func checkChain(ctx context.Context, typ, id string, max int, reentrant bool) error {
	l := chainOf(ctx)
	if l == nil {
		return nil
	}
	if l.depth >= max {
		chain := CallChain(ctx)
		return fmt.Errorf("%w: %s/%s would be actor %d of a chain limited to %d (%s → ...)", ErrCallChainTooDeep, typ, id, l.depth+1, max, strings.Join(chain[:min(3, len(chain))], " → "))
	}
	if reentrant {
		return nil
	}
	for c := l; c != nil; c = c.parent {
		if c.id == id && c.typ == typ {
			chain := CallChain(ctx)
			return fmt.Errorf("%w: %s → %s/%s", ErrCallCycle, strings.Join(chain[c.depth-1:], " → "), typ, id)
		}
	}
	return nil
}
