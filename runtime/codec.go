package runtime

import (
	stdjson "encoding/json"
	"fmt"
	"reflect"

	json "github.com/segmentio/encoding/json"
	"google.golang.org/protobuf/proto"
)

// codec encodes and decodes values of one Go type. JSON is the default; a
// type whose pointer form is a protobuf message uses protobuf binary.
type codec[V any] struct {
	isProto bool
}

func codecFor[V any]() codec[V] {
	var zero V
	_, isProto := any(zero).(proto.Message)
	return codec[V]{isProto: isProto}
}

// Name is "json" or "protobuf".
func (c codec[V]) Name() string {
	if c.isProto {
		return "protobuf"
	}
	return "json"
}

func (c codec[V]) encode(v V) ([]byte, error) {
	if c.isProto {
		m := any(v).(proto.Message)
		if reflect.ValueOf(m).IsNil() {
			return nil, nil
		}
		return proto.Marshal(m)
	}
	return json.Marshal(v)
}

func (c codec[V]) decode(b []byte) (V, error) {
	var v V
	if c.isProto {
		// V is a pointer to a generated message; allocate a fresh one.
		m := any(v).(proto.Message).ProtoReflect().Type().New().Interface()
		if err := proto.Unmarshal(b, m); err != nil {
			return v, err
		}
		return m.(V), nil
	}
	if len(b) == 0 {
		// An absent body decodes as the zero value, like "{}" would for a
		// struct; it keeps argument-less methods easy to call.
		return v, nil
	}
	if err := unmarshalJSON(b, &v); err != nil {
		return v, err
	}
	return v, nil
}

// unmarshalJSON decodes with segmentio/encoding (several times faster than
// encoding/json, with the same rules). When that fails it decodes again
// with encoding/json and returns its outcome: its errors name the JSON type
// that did not fit ("cannot unmarshal string into Go struct field
// CounterDelta.delta of type int64") where segmentio's quote the rest of the
// input, and a caller who sent bad input deserves the clearer message. Only
// failures pay for the second decode.
func unmarshalJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err == nil {
		return nil
	}
	return stdjson.Unmarshal(b, v)
}

func decodeErr(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrBadPayload, what, err)
}
