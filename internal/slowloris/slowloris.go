// Package slowloris is the client side of the tests that check a
// server's accept timeouts and input bounds on loopback: it connects,
// sends a prefix (nothing, half a request, half a handshake) and then
// nothing more, and waits for the server to hang up.
package slowloris

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Conn is a client connection that stopped sending.
type Conn struct {
	net.Conn
	dialed time.Time // when the dial began: the server accepted after it
}

// Dial connects to addr over TCP and writes prefix (nothing when empty).
func Dial(t testing.TB, addr string, prefix []byte) *Conn {
	t.Helper()
	began := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sc := &Conn{Conn: c, dialed: began}
	if len(prefix) > 0 {
		if _, err := c.Write(prefix); err != nil {
			t.Fatalf("writing %d bytes to %s: %v", len(prefix), addr, err)
		}
	}
	return sc
}

// AwaitClose reads until the server ends the connection (EOF or a reset)
// and returns how long after the dial began that was (so never less than
// a timeout the server started on accepting) and what the server sent
// before. It fails t if the connection is still open bound after the
// dial began: bound is an upper limit, not the time expected.
func (c *Conn) AwaitClose(t testing.TB, bound time.Duration) (time.Duration, []byte) {
	t.Helper()
	if err := c.SetReadDeadline(c.dialed.Add(bound)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c.Conn)
	took := time.Since(c.dialed)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server still holds the connection %v after the dial (it sent %d bytes)", took.Round(time.Millisecond), len(got))
	}
	return took, got
}
