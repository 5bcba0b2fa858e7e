// Package ports says where the kernel draws the source ports of outgoing
// connections, for the test kits (loomtest, test/chaos) that pick ports a
// restarted node must get back: a port below that range is never taken
// by another test's outbound connection while the node is down.
package ports

import (
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
