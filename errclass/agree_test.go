package errclass_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/observability"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// failing answers every call, over gRPC and HTTP, with the error its
// table names for the call's actor id.
type failing struct {
	mu   sync.Mutex
	errs map[string]error
}

func (f *failing) err(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[id]
}

func (f *failing) HandleInvoke(_ context.Context, c transport.Call) ([]byte, error) {
	return nil, f.err(c.ActorID)
}

func (f *failing) Invoke(_ context.Context, _, id, _ string, _ []byte) ([]byte, error) {
	return nil, f.err(id)
}

// Every row of the table, and the errors that match several rows, come
// out the same through the three places that report them: a unary and a
// streamed gRPC call to a real server on loopback (code, gRPC status,
// "may have been applied"), the HTTP gateway (status and code) and the
// metrics (outcome).
func TestEveryPathAgreesWithTheTable(t *testing.T) {
	cases := map[string]error{}
	for _, r := range errclass.Rows {
		err := r.Err
		if err == errclass.ErrMethod {
			err = &runtime.MethodError{Actor: "t/a", Method: "m", Err: errors.New("the method said no")}
		}
		cases[r.Code] = fmt.Errorf("wrapped: %w", err)
	}
	cases["method wrapping fenced"] = &runtime.MethodError{Actor: "t/a", Method: "m", Err: fmt.Errorf("call: %w", journal.ErrFenced)}
	cases["method wrapping a deadline"] = &runtime.MethodError{Actor: "t/a", Method: "m", Err: fmt.Errorf("call: %w", context.DeadlineExceeded)}
	cases["method wrapping unavailable"] = &runtime.MethodError{Actor: "t/a", Method: "m", Err: fmt.Errorf("call: %w", runtime.ErrUnavailable)}
	cases["not owner with a hint"] = transport.NotOwner("n2", "moved")
	// The contracts' aliases, as the Redis adapters return them and the
	// runtime wraps them: an append whose answer was lost, a lock that
	// could not be asked for.
	cases["redis journal outcome unknown"] = fmt.Errorf("loom: committing t.m on t/a: %w",
		fmt.Errorf("%w: append %q at %s: %w", redisjournal.ErrUnknownOutcome, "t/a", "127.0.0.1:6379", io.ErrUnexpectedEOF))
	cases["redis lock unavailable"] = fmt.Errorf("loom: activating t/a: %w",
		fmt.Errorf("%w: acquire %q: redis at %s: %w", redislock.ErrUnavailable, "t/a", "127.0.0.1:6379",
			&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}))
	cases["redis journal unavailable"] = fmt.Errorf("%w: tail of %q", redisjournal.ErrUnavailable, "t/a")
	cases["redis lock outcome unknown"] = fmt.Errorf("%w: renew", redislock.ErrUnknownOutcome)
	cases["internal"] = errors.New("disk on fire")

	f := &failing{errs: map[string]error{}}
	for name, err := range cases {
		f.errs[strings.ReplaceAll(name, " ", "-")] = err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerOptions{Actors: f})
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Stop(ctx)
	}()
	pool := transport.NewPool(transport.PoolOptions{})
	defer pool.Close()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := loompb.NewActorsClient(conn)
	web := httptest.NewServer(gateway.New(gateway.Options{Invoker: f, Logger: slog.New(slog.DiscardHandler)}))
	defer web.Close()

	for name, err := range cases {
		id := strings.ReplaceAll(name, " ", "-")
		want := errclass.Of(err)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call := transport.Call{ActorType: "t", ActorID: id, Method: "m"}

			// gRPC, unary: the status code and the wire error.
			_, uerr := raw.Invoke(ctx, &loompb.InvokeRequest{ActorType: "t", ActorId: id, Method: "m"})
			st, _ := status.FromError(uerr)
			var wire *loompb.Error
			for _, d := range st.Details() {
				if pe, ok := d.(*loompb.Error); ok {
					wire = pe
				}
			}
			if st.Code() != want.GRPC || wire == nil || wire.Code != want.Code || wire.MaybeApplied != want.MaybeApplied {
				t.Errorf("gRPC unary: status %v, wire %v; table: %v %q maybeApplied=%v", st.Code(), wire, want.GRPC, want.Code, want.MaybeApplied)
			}
			// gRPC through the pool, both paths: the caller's error
			// classifies as the handler's did.
			for path, invoke := range map[string]func(context.Context, string, transport.Call) ([]byte, error){"stream": pool.Invoke, "unary": pool.InvokeUnary} {
				_, perr := invoke(ctx, ln.Addr().String(), call)
				if got := errclass.Of(perr); got.Code != want.Code || transport.MaybeApplied(perr) != want.MaybeApplied {
					t.Errorf("pool %s: %q maybeApplied=%v (%v); table: %q maybeApplied=%v", path, got.Code, transport.MaybeApplied(perr), perr, want.Code, want.MaybeApplied)
				}
			}
			// HTTP.
			resp, herr := http.Post(web.URL+"/v1/actors/t/"+id+"/m", "application/json", strings.NewReader("{}"))
			if herr != nil {
				t.Fatal(herr)
			}
			var body gateway.ErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != want.HTTP || body.Error.Code != want.Code {
				t.Errorf("HTTP: %d %q; table: %d %q", resp.StatusCode, body.Error.Code, want.HTTP, want.Code)
			}
			// Metrics.
			if got := observability.Outcome(err); got != want.Outcome {
				t.Errorf("metrics outcome %q; table %q", got, want.Outcome)
			}
		})
	}
}

// The table's order: a method error keeps the sentinels above its row and
// hides those below (see the package doc).
func TestOrder(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{&runtime.MethodError{Err: journal.ErrFenced}, "fenced"},
		{&runtime.MethodError{Err: runtime.ErrBadPayload}, "bad_payload"},
		{&runtime.MethodError{Err: context.DeadlineExceeded}, "deadline_exceeded"},
		{&runtime.MethodError{Err: runtime.ErrUnavailable}, "method_error"},
		{fmt.Errorf("%w: %w", errclass.ErrUnknownOutcome, context.DeadlineExceeded), "unknown_outcome"},
		{transport.NotOwner("", ""), "not_owner"},
		// A delivery whose message is no longer pending: the store's refusal
		// matches queue.ErrNotFound too, but the caller learns it is settled.
		{fmt.Errorf("%w: %w", runtime.ErrMessageSettled, fmt.Errorf("%w: %w", journal.ErrAck, queue.ErrNotFound)), "message_settled"},
		// The contracts' aliases take their rows' places: an outcome
		// unknown above everything, an unavailable store at the end.
		{fmt.Errorf("x: %w", redisjournal.ErrUnknownOutcome), "unknown_outcome"},
		{fmt.Errorf("x: %w", redislock.ErrUnavailable), "unavailable"},
		{journal.ErrUnavailable, "unavailable"},
		{lock.ErrUnknownOutcome, "unknown_outcome"},
		{fmt.Errorf("%w: %w", runtime.ErrUnavailable, lock.ErrUnknownOutcome), "unknown_outcome"},
		{&runtime.MethodError{Err: journal.ErrUnknownOutcome}, "unknown_outcome"},
		{&runtime.MethodError{Err: redislock.ErrUnavailable}, "method_error"},
		{fmt.Errorf("%w: %w", redisjournal.ErrUnknownOutcome, context.DeadlineExceeded), "unknown_outcome"},
		{fmt.Errorf("%w: %w", redisjournal.ErrUnavailable, context.DeadlineExceeded), "deadline_exceeded"},
		{fmt.Errorf("%w: %w", journal.ErrUnavailable, journal.ErrFenced), "fenced"},
		{nil, ""},
	} {
		if got := errclass.Of(c.err).Code; got != c.code {
			t.Errorf("Of(%v) = %q, want %q", c.err, got, c.code)
		}
	}
}

// An alias matches exactly as its row does: same class, and a retry of an
// unavailable store is as safe as any other unavailable.
func TestAliases(t *testing.T) {
	for key, aliases := range errclass.Aliases {
		row := errclass.Of(key)
		if row.Err != key {
			t.Errorf("alias key %v is not a row's sentinel", key)
		}
		for _, a := range aliases {
			if got := errclass.Of(fmt.Errorf("wrapped: %w", a)); !reflect.DeepEqual(got, row) {
				t.Errorf("%v classifies as %+v, its row is %+v", a, got, row)
			}
		}
	}
	if c := errclass.Of(redislock.ErrUnavailable); c.HTTP != 503 || c.GRPC != codes.Unavailable || c.MaybeApplied {
		t.Errorf("redislock.ErrUnavailable: %+v", c)
	}
	if c := errclass.Of(redisjournal.ErrUnknownOutcome); c.HTTP != 502 || !c.MaybeApplied {
		t.Errorf("redisjournal.ErrUnknownOutcome: %+v", c)
	}
}
