package transport_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/loom-mesh/loom/transport"
)

// PoolOptions.Dialer opens the pool's connections (the chaos hook's
// dialer plugs in here).
func TestPoolDialer(t *testing.T) {
	e := newEcho()
	s := serve(t, e)
	var dials atomic.Int32
	p := newPool(t, transport.PoolOptions{Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}})
	for _, invoke := range paths(p) {
		out, err := invoke(context.Background(), s.addr, transport.Call{Method: "echo", Payload: []byte("x")})
		if err != nil || string(out) != "x" {
			t.Fatalf("call: %q, %v", out, err)
		}
	}
	if dials.Load() == 0 {
		t.Fatal("the pool did not dial through Options.Dialer")
	}
}
