package redis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/internal/redistest"
)

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		o    redis.Options
		addr string // "" means refused
	}{
		{"host and default port", redis.Options{Host: "redis.example.com"}, "redis.example.com:6379"},
		{"host and port", redis.Options{Host: "10.0.0.1", Port: 6380}, "10.0.0.1:6380"},
		{"addr", redis.Options{Addr: "127.0.0.1:7000"}, "127.0.0.1:7000"},
		{"url", redis.Options{URL: "redis://u:p@example.com:6390/2"}, "example.com:6390"},
		{"nothing", redis.Options{}, ""},
		{"addr and host", redis.Options{Addr: "a:1", Host: "b"}, ""},
		{"url and addr", redis.Options{URL: "redis://a:1", Addr: "a:1"}, ""},
		{"bad url", redis.Options{URL: "http://a"}, ""},
		{"addr without port", redis.Options{Addr: "a"}, ""},
		{"port out of range", redis.Options{Host: "a", Port: 70000}, ""},
		{"negative db", redis.Options{Host: "a", DB: -1}, ""},
		{"negative timeout", redis.Options{Host: "a", ReadTimeout: -time.Second}, ""},
		{"prefix with space", redis.Options{Host: "a", KeyPrefix: "a b"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			co, err := c.o.ClientOptions()
			if c.addr == "" {
				if !errors.Is(err, redis.ErrOptions) {
					t.Fatalf("ClientOptions = %v, %v; want ErrOptions", co, err)
				}
				return
			}
			if err != nil || co.Addr != c.addr {
				t.Fatalf("ClientOptions = %+v, %v; want addr %s", co, err, c.addr)
			}
		})
	}
	if p := (redis.Options{}).Prefix(); p != redis.DefaultKeyPrefix {
		t.Fatalf("default prefix %q", p)
	}
}

// TestNewClientReachesTheServer: a client made from Options talks to a
// real server and authenticates with the password given.
func TestNewClientReachesTheServer(t *testing.T) {
	s := redistest.Start(t, redistest.Options{Password: "pw"})
	c, err := redis.NewClient(redis.Options{Addr: s.Addr, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	bad, err := redis.NewClient(redis.Options{Addr: s.Addr, Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Get(t.Context(), "k").Err(); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}
