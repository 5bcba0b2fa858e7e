package runtime

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Contract declares an actor type's name and methods (names, argument and
// result types) apart from any implementation, so that a client package
// can import the contract alone and call the type on a running node:
//
//	// package stockapi, imported by clients and by the server
//	var Stock = runtime.NewContract("stock")
//	var Reserve = runtime.Declare[ReserveReq, ReserveResp](Stock, "reserve")
//	var Level = runtime.Declare0[int](Stock, "level")
//
//	// the server
//	var stock = runtime.Implement(stockapi.Stock, newStock)
//	var _ = runtime.Bind(stock, stockapi.Reserve, (*Stock).reserve)
//	var _ = runtime.Bind0(stock, stockapi.Level, (*Stock).level)
//
// A type implementing a contract must bind every method it declares, with
// the declared types (the compiler checks the function's; Register checks
// that nothing is missing and that each bound method is the contract's),
// or Register fails naming what is wrong. A Contract must be fully
// declared before a type implementing it is registered.
type Contract struct {
	name    string
	mu      sync.Mutex
	methods map[string]declared
	errs    []error
}

// declared is a contract's method: its argument and result types.
type declared struct {
	in, out reflect.Type
}

// NewContract starts the contract of the actor type called name.
func NewContract(name string) *Contract {
	return &Contract{name: name, methods: make(map[string]declared)}
}

// Name is the actor type's name.
func (c *Contract) Name() string { return c.name }

// Ref is a reference to the actor of this type with the given id.
func (c *Contract) Ref(id string) Ref { return Ref{Type: c.name, ID: id} }

// Methods lists the declared method names, sorted.
func (c *Contract) Methods() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.methods))
	for n := range c.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Contract) declare(name string, in, out reflect.Type) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch _, dup := c.methods[name]; {
	case name == "":
		c.errs = append(c.errs, fmt.Errorf("contract %q: a method has an empty name", c.name))
	case dup:
		c.errs = append(c.errs, fmt.Errorf("contract %q: method %q declared twice", c.name, name))
	default:
		c.methods[name] = declared{in: in, out: out}
	}
}

// Declare declares a method taking In and returning Out, and returns the
// typed handle callers use with any Invoker (a node, the cluster client,
// an actor's Context.Actors).
func Declare[In, Out any](c *Contract, name string) Method[In, Out] {
	c.declare(name, reflect.TypeFor[In](), reflect.TypeFor[Out]())
	return Method[In, Out]{actorType: c.name, name: name, in: codecFor[In](), out: codecFor[Out]()}
}

// Declare0 declares a method that takes no argument and returns Out.
func Declare0[Out any](c *Contract, name string) Method0[Out] {
	return Method0[Out]{Declare[none, Out](c, name)}
}

// none is the argument of a method that takes none. It encodes as an empty
// payload and decodes from an empty payload, "{}" or "null".
type none = struct{}

// Method0 is a typed handle on a method that takes no argument, returned
// by Declare0 and AddMethod0.
type Method0[Out any] struct {
	m Method[none, Out]
}

// Name is the method's name.
func (m Method0[Out]) Name() string { return m.m.name }

// ActorType is the name of the method's actor type.
func (m Method0[Out]) ActorType() string { return m.m.actorType }

// Call invokes the method on actor id through inv.
func (m Method0[Out]) Call(ctx context.Context, inv Invoker, id string) (Out, error) {
	return m.m.call(ctx, inv, id, none{}, true)
}

// AddMethod0 is AddMethod for a method that takes no argument.
func AddMethod0[T, Out any](t *Type[T], name string, fn func(ctx Context, a *T) (Out, error)) Method0[Out] {
	var body func(Context, *T, none) (Out, error)
	if fn != nil {
		body = func(ctx Context, a *T, _ none) (Out, error) { return fn(ctx, a) }
	}
	return Method0[Out]{AddMethod(t, name, body)}
}

// Implement defines the actor type of contract c, whose instances are *T;
// bind its methods with Bind and Bind0, then Register it.
func Implement[T any](c *Contract, factory func(id string) *T) *Type[T] {
	t := NewType(c.name, factory)
	t.def.contract = c
	return t
}

// Bind implements the contract method m on t with fn. It returns m.
// Binding a method of another contract, or one declared with other types,
// is reported by Register.
func Bind[T, In, Out any](t *Type[T], m Method[In, Out], fn func(ctx Context, a *T, in In) (Out, error)) Method[In, Out] {
	t.def.checkBound(m.actorType, m.name, reflect.TypeFor[In](), reflect.TypeFor[Out]())
	AddMethod(t, m.name, fn)
	return m
}

// Bind0 implements the argument-less contract method m on t with fn.
func Bind0[T, Out any](t *Type[T], m Method0[Out], fn func(ctx Context, a *T) (Out, error)) Method0[Out] {
	t.def.checkBound(m.m.actorType, m.m.name, reflect.TypeFor[none](), reflect.TypeFor[Out]())
	AddMethod0(t, m.m.name, fn)
	return m
}

// checkBound records a mistake if the method (of type actorType, with in
// and out) is not one of d's contract's.
func (d *typeDef) checkBound(actorType, name string, in, out reflect.Type) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.contract
	switch {
	case c == nil:
		d.errs = append(d.errs, fmt.Errorf("actor type %q: Bind of method %q on a type with no contract (use Implement, or AddMethod)", d.name, name))
	case actorType != c.name:
		d.errs = append(d.errs, fmt.Errorf("actor type %q: method %q belongs to contract %q", d.name, name, actorType))
	default:
		c.mu.Lock()
		decl, ok := c.methods[name]
		c.mu.Unlock()
		switch {
		case !ok:
			d.errs = append(d.errs, fmt.Errorf("actor type %q: method %q is not declared by its contract", d.name, name))
		case decl.in != in || decl.out != out:
			d.errs = append(d.errs, fmt.Errorf("actor type %q: method %q is declared (%s) %s but bound as (%s) %s", d.name, name, decl.in, decl.out, in, out))
		}
	}
}

// contractErrors reports what d's contract declares that d does not
// implement, and the contract's own mistakes. d.mu is held.
func (d *typeDef) contractErrors() []error {
	c := d.contract
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := append([]error(nil), c.errs...)
	var missing []string
	for name := range c.methods {
		if _, ok := d.methods[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		errs = append(errs, fmt.Errorf("actor type %q does not implement its contract: method %s not bound", d.name, strings.Join(missing, ", ")))
	}
	return errs
}

// Ref names one actor: its type and id. It can be stored in state, passed
// in messages and arguments, and serialized: as JSON it is
// {"type":"stock","id":"7"}, as text "stock/7".
type Ref struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// String is "type/id".
func (r Ref) String() string { return r.Type + "/" + r.ID }

// ParseRef parses "type/id" (the id may contain slashes).
func ParseRef(s string) (Ref, error) {
	typ, id, ok := strings.Cut(s, "/")
	if !ok || typ == "" || id == "" {
		return Ref{}, fmt.Errorf("%w: actor reference %q is not type/id", ErrInvalidArgument, s)
	}
	return Ref{Type: typ, ID: id}, nil
}

// CallRef invokes m on the actor ref names; ref's type must be m's.
func (m Method[In, Out]) CallRef(ctx context.Context, inv Invoker, ref Ref, in In) (Out, error) {
	if ref.Type != m.actorType {
		var zero Out
		return zero, fmt.Errorf("%w: %s.%s called on a reference to a %q", ErrInvalidArgument, m.actorType, m.name, ref.Type)
	}
	return m.Call(ctx, inv, ref.ID, in)
}
