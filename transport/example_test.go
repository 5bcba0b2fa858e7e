package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
)

// upper is an ActorHandler that answers every call with its payload in
// upper case.
type upper struct{}

func (upper) HandleInvoke(ctx context.Context, c transport.Call) ([]byte, error) {
	if c.Method != "shout" {
		return nil, fmt.Errorf("%w: %s", runtime.ErrUnknownMethod, c.Method)
	}
	return []byte(strings.ToUpper(string(c.Payload))), nil
}

func Example() {
	// A node: a Server with its handlers, on a listener of its own.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := transport.NewServer(transport.ServerOptions{Actors: upper{}})
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Stop(ctx)
	}()

	// A caller: one Pool for every address it talks to.
	pool := transport.NewPool(transport.PoolOptions{})
	defer pool.Close()
	ctx := runtime.WithCorrelationID(context.Background(), "req-1")
	out, err := pool.Invoke(ctx, ln.Addr().String(), transport.Call{ActorType: "echo", ActorID: "e1", Method: "shout", Payload: []byte("hello")})
	fmt.Println(string(out), err)

	_, err = pool.Invoke(ctx, ln.Addr().String(), transport.Call{ActorType: "echo", ActorID: "e1", Method: "whisper"})
	fmt.Println(errors.Is(err, runtime.ErrUnknownMethod), transport.MaybeApplied(err))
	// Output:
	// HELLO <nil>
	// true false
}
