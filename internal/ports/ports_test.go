package ports

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeAvoidsTheEphemeralRange(t *testing.T) {
	got, err := Free("127.0.0.1", 12)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range got {
		if seen[p] || p >= EphemeralLow() || p <= 0 {
			t.Fatalf("ports %v (ephemeral range from %d)", got, EphemeralLow())
		}
		seen[p] = true
		// Released: the caller can listen on it, for TCP and UDP.
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			t.Fatalf("port %d (udp): %v", p, err)
		}
		ln.Close()
		pc.Close()
	}
}
