package runtime

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Invoker delivers an encoded call to an actor and returns the encoded
// result. A node, and later the cluster client, implement it; typed calls
// (Method.Call) go through it, so the same code works against both.
//
// Invoke is safe for concurrent use. Errors wrap the runtime's sentinels.
type Invoker interface {
	Invoke(ctx context.Context, actorType, id, method string, payload []byte) ([]byte, error)
}

// LocalInvoker is an optional capability of an Invoker that hosts actors in
// this process: it passes values without encoding them. Method.Call uses it
// when available. Values are not copied: a caller must not mutate an argument
// (or a result) that holds references after handing it over.
type LocalInvoker interface {
	InvokeLocal(ctx context.Context, actorType, id, method string, in any) (any, error)
}

// Definition is a registrable actor type, as produced by NewType. It is
// implemented only by *Type[T].
type Definition interface {
	// Name is the actor type's name.
	Name() string
	definition() *typeDef
}

// Type describes an actor type whose instances are *T. Build it with
// NewType, add methods with AddMethod, then Register it on a Runtime. A
// Type must not be changed after it has been registered.
type Type[T any] struct {
	def *typeDef
}

// typeDef is the type-erased form the runtime works with.
type typeDef struct {
	name      string
	factory   func(id string) any
	mu        sync.Mutex // guards methods and errs while the type is being built
	methods   map[string]*methodDef
	errs      []error   // definition mistakes, reported by Register
	contract  *Contract // the contract it implements (Implement), or nil
	reentrant bool      // Type.Reentrant
}

// methodDef is one method, type-erased. decode and encode run outside the
// actor's turn; call runs inside it.
type methodDef struct {
	name      string
	codecName string
	decode    func([]byte) (any, error) // the argument, from the wire
	encode    func(any) ([]byte, error) // the result, to the wire
	encodeIn  func(any) ([]byte, error) // the argument, to the wire (forwarding a local call)
	decodeOut func([]byte) (any, error) // the result, from the wire (forwarding a local call)
	call      func(ctx Context, inst any, in any) (any, error)
	checkIn   func(any) bool // reports whether a value has the input type
}

// Activator is implemented by actor structs that want a hook when they are
// activated (after their state has been replayed). An error fails the
// activation and is returned to the caller that triggered it.
type Activator interface {
	OnActivate(ctx Context) error
}

// Deactivator is implemented by actor structs that want a hook when they
// are deactivated (idle, evicted, handed off or shut down). The hook runs
// after the last turn, may read State but not change it, and its error is
// logged, not returned.
type Deactivator interface {
	OnDeactivate(ctx Context) error
}

// NewType defines an actor type. factory builds the in-memory instance for an
// id; it must not do I/O (use Activator for that) and the instance's fields
// are not persisted: durable state goes through Context.State.
func NewType[T any](name string, factory func(id string) *T) *Type[T] {
	if factory == nil {
		factory = func(string) *T { return new(T) }
	}
	return &Type[T]{def: &typeDef{
		name:    name,
		factory: func(id string) any { return factory(id) },
		methods: make(map[string]*methodDef),
	}}
}

// Name is the type's name.
func (t *Type[T]) Name() string { return t.def.name }

func (t *Type[T]) definition() *typeDef { return t.def }

// Methods lists the type's method names, sorted.
func (t *Type[T]) Methods() []string {
	t.def.mu.Lock()
	defer t.def.mu.Unlock()
	names := make([]string, 0, len(t.def.methods))
	for n := range t.def.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Method is a typed handle on an actor method, returned by AddMethod. Its
// zero value is not usable.
type Method[In, Out any] struct {
	actorType string
	name      string
	in        codec[In]
	out       codec[Out]
}

// Name is the method's name.
func (m Method[In, Out]) Name() string { return m.name }

// ActorType is the name of the method's actor type.
func (m Method[In, Out]) ActorType() string { return m.actorType }

// AddMethod adds a method to an actor type and returns a typed handle for
// calling it. Arguments and results are JSON unless the type is a protobuf
// message. A mistake (empty or duplicate name) does not panic: it is kept
// and reported by Runtime.Register. A Runtime copies the methods when the
// type is registered; methods added later are not seen by it.
func AddMethod[T, In, Out any](t *Type[T], name string, fn func(ctx Context, a *T, in In) (Out, error)) Method[In, Out] {
	inC, outC := codecFor[In](), codecFor[Out]()
	d := t.def
	d.mu.Lock()
	defer d.mu.Unlock()
	m := Method[In, Out]{actorType: d.name, name: name, in: inC, out: outC}
	if name == "" {
		d.errs = append(d.errs, fmt.Errorf("actor type %q: a method has an empty name", d.name))
		return m
	}
	if _, dup := d.methods[name]; dup {
		d.errs = append(d.errs, fmt.Errorf("actor type %q: method %q defined twice", d.name, name))
		return m
	}
	if fn == nil {
		d.errs = append(d.errs, fmt.Errorf("actor type %q: method %q has a nil function", d.name, name))
		return m
	}
	d.methods[name] = &methodDef{
		name:      name,
		codecName: inC.Name(),
		decode: func(b []byte) (any, error) {
			v, err := inC.decode(b)
			if err != nil {
				return nil, err
			}
			return v, nil
		},
		encode: func(v any) ([]byte, error) {
			out, _ := v.(Out)
			return outC.encode(out)
		},
		encodeIn: func(v any) ([]byte, error) {
			in, _ := v.(In)
			return inC.encode(in)
		},
		decodeOut: func(b []byte) (any, error) {
			v, err := outC.decode(b)
			if err != nil {
				return nil, err
			}
			return v, nil
		},
		call: func(ctx Context, inst any, in any) (any, error) {
			v, _ := in.(In)
			return fn(ctx, inst.(*T), v)
		},
		checkIn: func(v any) bool {
			if v == nil {
				return true // zero value of an interface or pointer type
			}
			_, ok := v.(In)
			return ok
		},
	}
	return m
}

// Call invokes the method on actor id through inv. With a LocalInvoker the
// value is handed over without encoding.
func (m Method[In, Out]) Call(ctx context.Context, inv Invoker, id string, in In) (Out, error) {
	return m.call(ctx, inv, id, in, false)
}

// call is Call; noInput sends an empty payload (Method0).
func (m Method[In, Out]) call(ctx context.Context, inv Invoker, id string, in In, noInput bool) (Out, error) {
	var zero Out
	if li, ok := inv.(LocalInvoker); ok {
		res, err := li.InvokeLocal(ctx, m.actorType, id, m.name, in)
		if err != nil {
			return zero, err
		}
		if res == nil {
			return zero, nil
		}
		out, ok := res.(Out)
		if !ok {
			return zero, fmt.Errorf("%w: result of %s.%s is %T, not the declared type", ErrBadPayload, m.actorType, m.name, res)
		}
		return out, nil
	}
	var payload []byte
	if !noInput {
		var err error
		if payload, err = m.in.encode(in); err != nil {
			return zero, fmt.Errorf("%w: encoding argument of %s.%s: %v", ErrBadPayload, m.actorType, m.name, err)
		}
	}
	res, err := inv.Invoke(ctx, m.actorType, id, m.name, payload)
	if err != nil {
		return zero, err
	}
	out, err := m.out.decode(res)
	if err != nil {
		return zero, fmt.Errorf("%w: decoding result of %s.%s: %v", ErrBadPayload, m.actorType, m.name, err)
	}
	return out, nil
}
