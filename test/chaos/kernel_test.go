package chaos

import (
	"fmt"
	"testing"

	"github.com/loom-mesh/loom/transport/faultnet"
)

// The hook's rules become the directions the kernel drops.
func TestDropPairs(t *testing.T) {
	ips := map[string]string{"a": "127.1.1.11", "b": "127.1.1.12", "c": "127.1.1.13"}
	for _, c := range []struct {
		name  string
		rules map[string][]faultnet.Rule
		want  string
	}{
		{"partition", cut([]string{"a"}, []string{"b", "c"}, nil),
			"[{127.1.1.11 127.1.1.12} {127.1.1.11 127.1.1.13} {127.1.1.12 127.1.1.11} {127.1.1.13 127.1.1.11}]"},
		{"deaf", map[string][]faultnet.Rule{"b": {{Peer: "*", Dir: faultnet.In, Drop: true}}},
			"[{127.1.1.11 127.1.1.12} {127.1.1.13 127.1.1.12}]"},
		{"mute", map[string][]faultnet.Rule{"b": {{Peer: "c", Dir: faultnet.Out, Drop: true}}},
			"[{127.1.1.12 127.1.1.13}]"},
		{"healed", nil, "[]"},
	} {
		got, err := dropPairs(c.rules, ips)
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("%s: %v, %v; want %s", c.name, got, err, c.want)
		}
	}
	if _, err := dropPairs(cut([]string{"a"}, []string{"b"}, []faultnet.Channel{faultnet.Gossip}), ips); err == nil {
		t.Error("a gossip-only rule was accepted; tc cannot tell the channels apart")
	}
	if _, err := dropPairs(map[string][]faultnet.Rule{"a": {{Peer: "b", Delay: 1}}}, ips); err == nil {
		t.Error("a delay was accepted")
	}
}

func TestNetnsOwner(t *testing.T) {
	for name, want := range map[string]int{"loomchaos-123-456": 123, "loomchaos-x-1": 0, "other-1-2": 0, "loomchaos-7": 0} {
		if pid, ok := netnsOwner(name); pid != want || ok != (want != 0) {
			t.Errorf("netnsOwner(%q) = %d, %v", name, pid, ok)
		}
	}
}
