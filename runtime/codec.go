package runtime

import (
	"fmt"
	json "github.com/segmentio/encoding/json"
	"reflect"

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
	if err := json.Unmarshal(b, &v); err != nil {
		return v, err
	}
	return v, nil
}

func decodeErr(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrBadPayload, what, err)
}
