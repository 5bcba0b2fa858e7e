package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
)

// reply is an error reply as go-redis reports it (a goredis.Error).
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

var _ goredis.Error = reply("")

func TestNotApplied(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"dial refused, wrapped", fmt.Errorf("x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"pool timeout", goredis.ErrPoolTimeout, true},
		{"pool exhausted", goredis.ErrPoolExhausted, true},
		{"client closed", goredis.ErrClosed, true},
		{"loading", reply("LOADING Redis is loading the dataset in memory"), true},
		{"busy", reply("BUSY Redis is busy running a script."), true},
		{"oom", reply("OOM command not allowed when used memory > 'maxmemory'."), true},
		{"readonly", reply("READONLY You can't write against a read only replica."), true},
		{"noscript", goredis.ErrNoScript, true},
		{"wrong password", reply("WRONGPASS invalid username-password pair"), true},
		{"bare code", reply("MISCONF"), true},
		{"a code's prefix is not the code", reply("LOADINGX what"), false},
		{"script error", reply("ERR user_script:1: Script attempted to access nonexistent global variable"), false},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}, false},
		{"connection lost", io.EOF, false},
		{"context ended", context.DeadlineExceeded, false},
	} {
		if got := redis.NotApplied(c.err); got != c.want {
			t.Errorf("%s: NotApplied(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
