// Package ports picks free loopback ports for the test kits and the
// throwaway servers of the tests (loomtest, test/chaos, nodetest, the
// Redis, PostgreSQL, RabbitMQ and Cosmos DB test servers), below the
// range the kernel draws the source ports of outgoing connections from: a
// port picked there is never taken by another test's outbound connection
// (or ":0" listener) between its pick and its use, nor while a killed
// node or server is down and must get it back.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultEphemeralLow is Linux's default start of the ephemeral range,
// assumed where /proc does not say.
const DefaultEphemeralLow = 32768

// EphemeralLow is the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), or DefaultEphemeralLow when it cannot
// be read.
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return DefaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return DefaultEphemeralLow
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return DefaultEphemeralLow
	}
	return lo
}

// Free reserves k distinct ports on ip that are free for TCP and UDP
// (gossip listens on both) and releases them together, so no two are
// equal. They are drawn at random between 10000 and EphemeralLow, or by
// the kernel when that range is under 1000 ports wide.
func Free(ip string, k int) ([]int, error) {
	var lns []net.Listener
	var pcs []net.PacketConn
	defer func() {
		for _, l := range lns {
			l.Close()
		}
		for _, p := range pcs {
			p.Close()
		}
	}()
	lo, hi := 10000, EphemeralLow()
	if hi-lo < 1000 {
		lo, hi = 0, 0 // no room below the ephemeral range: let the kernel pick
	}
	var out []int
	for tries := 0; len(out) < k; tries++ {
		if tries > 100*k {
			return nil, fmt.Errorf("ports: no %d free ports between %d and %d", k, lo, hi)
		}
		p := 0
		if hi > lo {
			p = lo + rand.IntN(hi-lo)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		p = ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			ln.Close()
			continue
		}
		lns, pcs = append(lns, ln), append(pcs, pc)
		out = append(out, p)
	}
	return out, nil
}

// FreeLoopback is one port of Free("127.0.0.1", 1).
func FreeLoopback() (int, error) {
	p, err := Free("127.0.0.1", 1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}
