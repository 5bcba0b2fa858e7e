package replica

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/internal/slowloris"
)

// TestAcceptTimeout: Open's own TCP transport closes a connection that
// sends nothing within AcceptTimeout, and keeps a connection that has
// sent a request, idle in a peer's pool for longer than that, serving.
func TestAcceptTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	cfg := counterConfig(t, "solo", newCounter(), nil)
	cfg.AcceptTimeout = timeout
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	addr := string(g.ownTrans.LocalAddr())

	t.Run("silent", func(t *testing.T) {
		took, _ := slowloris.Dial(t, addr, nil).AwaitClose(t, 10*time.Second)
		if took < timeout {
			t.Errorf("closed after %v, before the %v timeout", took, timeout)
		}
	})

	t.Run("pooled connection idle past the timeout", func(t *testing.T) {
		client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		vote := func() error {
			var resp raft.RequestVoteResponse
			return client.RequestVote("solo", raft.ServerAddress(addr), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("client"), Addr: []byte(client.LocalAddr())},
			}, &resp)
		}
		if err := vote(); err != nil {
			t.Fatal(err)
		}
		// The connection waits in the client's pool. Letting time pass
		// is what this checks, so it sleeps: three timeouts later the
		// server must still serve it (Raft does not retry an RPC whose
		// pooled connection the server closed: it would fail).
		time.Sleep(3 * timeout)
		if err := vote(); err != nil {
			t.Fatalf("a request on a pooled connection idle for %v: %v", 3*timeout, err)
		}
	})
}
