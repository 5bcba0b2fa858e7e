package transport_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loom-mesh/loom/internal/slowloris"
	"github.com/loom-mesh/loom/security/tlsconf"
	"github.com/loom-mesh/loom/security/tlsconf/tlstest"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// TestHandshakeTimeout: a connection that sends nothing, half the HTTP/2
// preface, or half a TLS handshake is closed by the server once the
// handshake timeout has passed (gRPC's own default would hold it for two
// minutes); a real client is served meanwhile.
func TestHandshakeTimeout(t *testing.T) {
	checkLeaks(t)
	const timeout = 200 * time.Millisecond
	pki := tlstest.New(t, "loom")
	nodeSrc := source(t, pki.NodeOptions("n1"))

	for _, tc := range []struct {
		name   string
		tls    bool
		prefix []byte
	}{
		{"plaintext/silent", false, nil},
		{"plaintext/half a preface", false, []byte("PRI * HTTP/2.0\r\n")},
		{"tls/silent", true, nil},
		// A TLS record header announcing a 512-byte ClientHello that never comes.
		{"tls/half a handshake", true, []byte{0x16, 0x03, 0x01, 0x02, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := transport.ServerOptions{Actors: newEcho()}
			po := transport.PoolOptions{}
			if tc.tls {
				opts.TLS = nodeSrc.ServerConfig("grpc", tlsconf.RoleNode, tlsconf.RoleClient)
				po.TLS = nodeSrc.ClientConfig()
			}
			transport.SetHandshakeTimeout(&opts, timeout)
			s := serveOn(t, "127.0.0.1:0", opts)

			c := slowloris.Dial(t, s.addr, tc.prefix)
			took, _ := c.AwaitClose(t, 10*time.Second)
			if took < timeout {
				t.Errorf("closed after %v, before the %v timeout", took, timeout)
			}
			t.Logf("closed after %v", took.Round(time.Millisecond))

			// Not a server that closes everything: a client that
			// completes its handshake is served, past the timeout.
			p := newPool(t, po)
			if out, err := p.Invoke(context.Background(), s.addr, transport.Call{Method: "echo", Payload: []byte("ok")}); err != nil || string(out) != "ok" {
				t.Fatalf("a real client: %q, %v", out, err)
			}
		})
	}
}

// grpcClient is a plain gRPC client, which shows the server's refusals
// as they are (the Pool refuses oversized calls itself).
func grpcClient(t *testing.T, addr string) loompb.ActorsClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return loompb.NewActorsClient(cc)
}

// TestOversizedMessageRefused: a request larger than MaxMessageBytes is
// refused with ResourceExhausted, naming the limit.
func TestOversizedMessageRefused(t *testing.T) {
	checkLeaks(t)
	const limit = 64 << 10
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho(), MaxMessageBytes: limit})
	cl := grpcClient(t, s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if out, err := cl.Invoke(ctx, &loompb.InvokeRequest{Method: "echo", Payload: make([]byte, limit/2)}); err != nil || len(out.GetPayload()) != limit/2 {
		t.Fatalf("a message under the limit: %v", err)
	}
	_, err := cl.Invoke(ctx, &loompb.InvokeRequest{Method: "echo", Payload: make([]byte, limit+1)})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), strconv.Itoa(limit)) {
		t.Fatalf("a message over the limit: %v; want ResourceExhausted naming %d", err, limit)
	}
	t.Logf("refused: %v", err)
}

// TestOversizedMetadataRefused: a call whose metadata is larger than
// MaxHeaderListBytes is refused, naming the limit (the server advertises
// it, and gRPC's client checks it before sending); metadata well under it
// passes.
func TestOversizedMetadataRefused(t *testing.T) {
	checkLeaks(t)
	s := serveOn(t, "127.0.0.1:0", transport.ServerOptions{Actors: newEcho()})
	cl := grpcClient(t, s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	call := func(valueBytes int) error {
		md := metadata.Pairs("x-filler", strings.Repeat("a", valueBytes))
		_, err := cl.Invoke(metadata.NewOutgoingContext(ctx, md), &loompb.InvokeRequest{Method: "echo", Payload: []byte("x")})
		return err
	}
	// The first call also brings the server's SETTINGS to the client.
	if err := call(4 << 10); err != nil {
		t.Fatalf("4 KiB of metadata: %v", err)
	}
	err := call(transport.MaxHeaderListBytes)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(transport.MaxHeaderListBytes)) {
		t.Fatalf("metadata over the limit: %v; want a refusal naming %d", err, transport.MaxHeaderListBytes)
	}
	t.Logf("refused: %v", err)
}
