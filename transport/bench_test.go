package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// Benchmarks, over real TCP on 127.0.0.1:
//
//	go test -run '^$' -bench Echo -benchtime 2s -count 3 ./transport
//	LOOM_BENCH_PROCS=2 go test -run '^$' -bench Echo -benchtime 2s -count 3 ./transport
//
// The second runs the servers in a child process (the test binary again),
// as the targets are stated between two processes.
// LOOM_BENCH_STREAMS=N sets PoolOptions.StreamsPerAddr for loom-stream.
//
//   - bare-unary: a gRPC unary echo, nothing of Loom on either side.
//   - bare-stream: a gRPC bidirectional-stream echo, one message per call;
//     each caller has its own stream (the simplest way to share the
//     connection between concurrent callers without a multiplexer).
//   - loom-unary: Pool.InvokeUnary against a Server with an echo handler.
//   - loom-stream: Pool.Invoke: calls multiplexed on the batching streams.
//
// Each reports calls/s and the p50 and p99 latency of one call.

// bareEcho is the baseline server: generated code and nothing else.
type bareEcho struct {
	loompb.UnimplementedActorsServer
}

func (bareEcho) Invoke(_ context.Context, req *loompb.InvokeRequest) (*loompb.InvokeResponse, error) {
	return &loompb.InvokeResponse{Payload: req.Payload}, nil
}

func (bareEcho) Stream(stream loompb.Actors_StreamServer) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return nil
		}
		out := &loompb.ResultBatch{Results: make([]*loompb.InvokeResponse, len(b.Calls))}
		for i, c := range b.Calls {
			out.Results[i] = &loompb.InvokeResponse{CallId: c.CallId, Payload: c.Payload}
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

type fastEcho struct{}

func (fastEcho) HandleInvoke(_ context.Context, c transport.Call) ([]byte, error) {
	return c.Payload, nil
}

// startBenchServers starts the bare and the Loom echo servers and returns
// their addresses and a stop function.
func startBenchServers() (bare, loom string, stop func(), err error) {
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	lln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bln.Close()
		return "", "", nil, err
	}
	bs := grpc.NewServer()
	loompb.RegisterActorsServer(bs, bareEcho{})
	ls := transport.NewServer(transport.ServerOptions{Actors: fastEcho{}})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = bs.Serve(bln) }()
	go func() { defer wg.Done(); _ = ls.Serve(lln) }()
	stop = func() {
		bs.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ls.Stop(ctx)
		cancel()
		wg.Wait()
	}
	return bln.Addr().String(), lln.Addr().String(), stop, nil
}

// TestBenchServerProcess is the benchmarks' child process with
// LOOM_BENCH_PROCS=2; skipped otherwise.
func TestBenchServerProcess(t *testing.T) {
	if os.Getenv("LOOM_BENCH_SERVE") != "1" {
		t.Skip("the benchmarks' server process (LOOM_BENCH_PROCS=2)")
	}
	bare, loom, stop, err := startBenchServers()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDRS %s %s\n", bare, loom)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	stop()
}

func benchServers(b *testing.B) (bare, loom string) {
	if os.Getenv("LOOM_BENCH_PROCS") != "2" {
		bare, loom, stop, err := startBenchServers()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(stop)
		return bare, loom
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LOOM_BENCH_SERVE=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ADDRS" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return f[1], f[2]
		}
	}
	b.Fatalf("server process: %v", sc.Err())
	return "", ""
}

// runCallers runs b.N calls from callers goroutines; newCaller makes each
// goroutine's call function (before the timer starts).
func runCallers(b *testing.B, callers int, newCaller func() (call func() error, done func())) {
	calls := make([]func() error, callers)
	for g := range calls {
		call, done := newCaller()
		calls[g] = call
		if done != nil {
			defer done()
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := calls[g](); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

func BenchmarkEcho(b *testing.B) {
	bareAddr, loomAddr := benchServers(b)
	payload := []byte(`{"delta":1}`)
	req := func() *loompb.InvokeRequest {
		return &loompb.InvokeRequest{ActorType: "counter", ActorId: "c1", Method: "add", Payload: payload}
	}
	call := transport.Call{ActorType: "counter", ActorID: "c1", Method: "add", Payload: payload}
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("bare-unary/callers=%d", callers), func(b *testing.B) {
			conn := dial(b, bareAddr)
			c := loompb.NewActorsClient(conn)
			runCallers(b, callers, func() (func() error, func()) {
				return func() error {
					_, err := c.Invoke(context.Background(), req())
					return err
				}, nil
			})
		})
		b.Run(fmt.Sprintf("bare-stream/callers=%d", callers), func(b *testing.B) {
			conn := dial(b, bareAddr)
			c := loompb.NewActorsClient(conn)
			runCallers(b, callers, func() (func() error, func()) {
				ctx, cancel := context.WithCancel(context.Background())
				s, err := c.Stream(ctx)
				if err != nil {
					b.Fatal(err)
				}
				return func() error {
					if err := s.Send(&loompb.InvokeBatch{Calls: []*loompb.InvokeRequest{req()}}); err != nil {
						return err
					}
					_, err := s.Recv()
					return err
				}, cancel
			})
		})
		for _, unary := range []bool{true, false} {
			name := "loom-stream"
			if unary {
				name = "loom-unary"
			}
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) {
				streams, _ := strconv.Atoi(os.Getenv("LOOM_BENCH_STREAMS"))
				p := transport.NewPool(transport.PoolOptions{Unary: unary, StreamsPerAddr: streams})
				defer p.Close()
				if _, err := p.Invoke(context.Background(), loomAddr, call); err != nil { // connect
					b.Fatal(err)
				}
				runCallers(b, callers, func() (func() error, func()) {
					return func() error {
						_, err := p.Invoke(context.Background(), loomAddr, call)
						return err
					}, nil
				})
			})
		}
	}
}

func dial(b *testing.B, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}
