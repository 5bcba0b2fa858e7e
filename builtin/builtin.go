// Package builtin holds the actor types every loom-node registers: counter,
// register and kv. The demo, the README and the chaos suite use them. All
// their state lives in the State facade, so it survives restarts, and each
// method that changes state commits exactly one journal entry.
package builtin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/runtime"
)

// Types returns the built-in actor types, for Runtime.Register.
func Types() []runtime.Definition {
	return []runtime.Definition{Counter, Register, KV}
}

// ---- counter ----

type counter struct{}

// Counter is the "counter" actor type: an int64 that only goes up or down
// by the deltas it is given.
var Counter = runtime.NewType("counter", func(string) *counter { return &counter{} })

// CounterDelta is the argument of counter.add.
type CounterDelta struct {
	Delta int64 `json:"delta"`
	// Fail, when set, makes add fail with this message and change
	// nothing: a handler that fails on purpose, to try retries and dead
	// letters with.
	Fail string `json:"fail,omitempty"`
}

// CounterValue is the result of counter.add and counter.get.
type CounterValue struct {
	Value int64 `json:"value"`
}

// CounterAdd adds delta and returns the new total.
var CounterAdd = runtime.AddMethod(Counter, "add", func(ctx runtime.Context, _ *counter, in CounterDelta) (CounterValue, error) {
	if in.Fail != "" {
		return CounterValue{}, errors.New(in.Fail)
	}
	v, _, err := runtime.GetState[int64](ctx.State(), "value")
	if err != nil {
		return CounterValue{}, err
	}
	v += in.Delta
	if err := runtime.SetState(ctx.State(), "value", v); err != nil {
		return CounterValue{}, err
	}
	return CounterValue{Value: v}, nil
})

// CounterGet returns the total.
var CounterGet = runtime.AddMethod0(Counter, "get", func(ctx runtime.Context, _ *counter) (CounterValue, error) {
	v, _, err := runtime.GetState[int64](ctx.State(), "value")
	return CounterValue{Value: v}, err
})

// CounterReminder is the argument of counter.remind.
type CounterReminder struct {
	Name  string `json:"name"`
	Delta int64  `json:"delta"`
	// Every is the period, a Go duration ("2s"); "" or "0s": once.
	Every string `json:"every,omitempty"`
	// After is the wait before the first firing; "": Every (or at once).
	After string `json:"after,omitempty"`
}

// CounterRemind registers the durable reminder name, which adds delta
// after After, then every Every: it survives restarts and failover.
var CounterRemind = runtime.AddMethod(Counter, "remind", func(ctx runtime.Context, _ *counter, in CounterReminder) (struct{}, error) {
	every, err := parseDuration("every", in.Every)
	if err != nil {
		return struct{}{}, err
	}
	after := every
	if in.After != "" {
		if after, err = parseDuration("after", in.After); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, CounterAdd.Remind(ctx, in.Name, CounterDelta{Delta: in.Delta}, after, every)
})

// CounterForget removes the reminder name.
var CounterForget = runtime.AddMethod(Counter, "forget", func(ctx runtime.Context, _ *counter, in CounterReminder) (struct{}, error) {
	return struct{}{}, ctx.Reminders().Delete(in.Name)
})

func parseDuration(key, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s: %q is not a duration >= 0", runtime.ErrInvalidArgument, key, v)
	}
	return d, nil
}

// ---- register ----

type register struct{}

// Register is the "register" actor type: one JSON value with read, write
// and compare-and-set, the model the chaos suite checks for linearizability.
var Register = runtime.NewType("register", func(string) *register { return &register{} })

// RegisterValue is the result of register.read (Value is JSON null when the
// register was never written) and the argument of register.write.
type RegisterValue struct {
	Value json.RawMessage `json:"value"`
}

// RegisterCAS is the argument of register.cas.
type RegisterCAS struct {
	Expect json.RawMessage `json:"expect"`
	Value  json.RawMessage `json:"value"`
}

// RegisterCASResult is the result of register.cas.
type RegisterCASResult struct {
	OK bool `json:"ok"`
}

var jsonNull = json.RawMessage("null")

func readRegister(st *runtime.State) json.RawMessage {
	b, ok := st.Get("value")
	if !ok {
		return jsonNull
	}
	return json.RawMessage(b)
}

// canonical re-encodes a JSON value so equal values compare equal as bytes
// (object keys sorted, insignificant space removed). Absent means null.
func canonical(v json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(v)) == 0 {
		return []byte("null"), nil
	}
	var x any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// RegisterRead returns the current value.
var RegisterRead = runtime.AddMethod0(Register, "read", func(ctx runtime.Context, _ *register) (RegisterValue, error) {
	return RegisterValue{Value: readRegister(ctx.State())}, nil
})

// RegisterWrite replaces the value.
var RegisterWrite = runtime.AddMethod(Register, "write", func(ctx runtime.Context, _ *register, in RegisterValue) (struct{}, error) {
	v, err := canonical(in.Value)
	if err != nil {
		return struct{}{}, fmt.Errorf("%w: value: %v", runtime.ErrInvalidArgument, err)
	}
	ctx.State().Set("value", v)
	return struct{}{}, nil
})

// RegisterCas sets the value to Value if it currently equals Expect.
var RegisterCas = runtime.AddMethod(Register, "cas", func(ctx runtime.Context, _ *register, in RegisterCAS) (RegisterCASResult, error) {
	want, err := canonical(in.Expect)
	if err != nil {
		return RegisterCASResult{}, fmt.Errorf("%w: expect: %v", runtime.ErrInvalidArgument, err)
	}
	next, err := canonical(in.Value)
	if err != nil {
		return RegisterCASResult{}, fmt.Errorf("%w: value: %v", runtime.ErrInvalidArgument, err)
	}
	cur, err := canonical(readRegister(ctx.State()))
	if err != nil {
		return RegisterCASResult{}, err
	}
	if !bytes.Equal(cur, want) {
		return RegisterCASResult{OK: false}, nil
	}
	ctx.State().Set("value", next)
	return RegisterCASResult{OK: true}, nil
})

// ---- kv ----

type kv struct{}

// KV is the "kv" actor type: a small JSON key-value map per actor.
var KV = runtime.NewType("kv", func(string) *kv { return &kv{} })

// KVPut is the argument of kv.put.
type KVPut struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// KVKey is the argument of kv.get and kv.delete.
type KVKey struct {
	Key string `json:"key"`
}

// KVGetResult is the result of kv.get.
type KVGetResult struct {
	Value json.RawMessage `json:"value"`
	Found bool            `json:"found"`
}

// KVDeleteResult is the result of kv.delete.
type KVDeleteResult struct {
	Deleted bool `json:"deleted"`
}

// KVList is the result of kv.list.
type KVList struct {
	Keys []string `json:"keys"`
}

func checkKey(k string) error {
	if k == "" {
		return fmt.Errorf("%w: key must not be empty", runtime.ErrInvalidArgument)
	}
	return nil
}

// KVPutMethod stores a value under a key.
var KVPutMethod = runtime.AddMethod(KV, "put", func(ctx runtime.Context, _ *kv, in KVPut) (struct{}, error) {
	if err := checkKey(in.Key); err != nil {
		return struct{}{}, err
	}
	v, err := canonical(in.Value)
	if err != nil {
		return struct{}{}, fmt.Errorf("%w: value: %v", runtime.ErrInvalidArgument, err)
	}
	ctx.State().Set(in.Key, v)
	return struct{}{}, nil
})

// KVGetMethod reads a key.
var KVGetMethod = runtime.AddMethod(KV, "get", func(ctx runtime.Context, _ *kv, in KVKey) (KVGetResult, error) {
	if err := checkKey(in.Key); err != nil {
		return KVGetResult{}, err
	}
	b, ok := ctx.State().Get(in.Key)
	if !ok {
		return KVGetResult{Value: jsonNull}, nil
	}
	return KVGetResult{Value: json.RawMessage(b), Found: true}, nil
})

// KVDeleteMethod removes a key.
var KVDeleteMethod = runtime.AddMethod(KV, "delete", func(ctx runtime.Context, _ *kv, in KVKey) (KVDeleteResult, error) {
	if err := checkKey(in.Key); err != nil {
		return KVDeleteResult{}, err
	}
	if _, ok := ctx.State().Get(in.Key); !ok {
		return KVDeleteResult{}, nil
	}
	ctx.State().Delete(in.Key)
	return KVDeleteResult{Deleted: true}, nil
})

// KVListMethod lists the keys, sorted.
var KVListMethod = runtime.AddMethod0(KV, "list", func(ctx runtime.Context, _ *kv) (KVList, error) {
	return KVList{Keys: ctx.State().Keys()}, nil
})
