package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loom-mesh/loom/transport/faultnet"
)

// Kernel partitions: the same partitions the chaos hook injects, cut by the
// kernel instead. A root run puts a whole scenario (the nodes and the
// workload's clients) in a network namespace of its own, whose loopback
// nobody else uses, and drops packets between two nodes' 127.A.B.x
// addresses with tc on that loopback: a clsact qdisc on lo, one u32 filter
// per dropped (source, destination) pair, whose action redirects the packet
// to an ifb device that is kept down, where it is dropped (this kernel has
// no gact "drop" action, but has mirred and ifb). A one-way fault is the
// filters of one direction; a heal deletes every filter. Nothing outside
// the namespace is touched, and the namespace is deleted at the end.
//
// The nodes still run with the chaos hook (for clock and disk faults, and
// because its dialers dial from the node's own address, which is what the
// filters match); only its network rules go unused.

// Environment of the run inside the namespace.
const (
	// envNetns names the namespace the inner run must be in: set, the
	// test is the inner run and cuts its partitions with tc.
	envNetns = "LOOM_CHAOS_NETNS"
	// envBin is the loom-node binary the outer run built, so that the
	// inner run does not build it again.
	envBin = "LOOM_CHAOS_BIN"
)

const (
	netnsPrefix = "loomchaos-"
	dropDev     = "loomdrop" // the ifb device, down: what is redirected to it is dropped
	tcPrio      = "10"
)

// kernelUnavailable says why kernel partitions cannot run here, or "".
func kernelUnavailable() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("kernel partitions need root (network namespaces and tc); running as uid %d", os.Geteuid())
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("kernel partitions need iproute2's %s on PATH: %v", tool, err)
		}
	}
	return ""
}

// run runs a command and returns its error with its output.
func runCmd(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// createNetns makes a fresh namespace named loomchaos-<pid>-<n>, brings its
// lo up and prepares tc there (clsact on lo, the ifb drop device). On any
// error it deletes what it made and says which step failed.
func createNetns(ctx context.Context, tag int64) (string, error) {
	name := fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), tag)
	if err := runCmd(ctx, "ip", "netns", "add", name); err != nil {
		return "", fmt.Errorf("creating a network namespace: %w", err)
	}
	steps := [][]string{
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", name, "link", "add", dropDev, "type", "ifb"},
		{"ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "clsact"},
	}
	for _, s := range steps {
		if err := runCmd(ctx, s[0], s[1:]...); err != nil {
			_ = deleteNetns(name)
			return "", fmt.Errorf("preparing network namespace %s: %w", name, err)
		}
	}
	return name, nil
}

// deleteNetns deletes a namespace (its processes must be gone).
func deleteNetns(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return runCmd(ctx, "ip", "netns", "delete", name)
}

// sweepNetns deletes the loomchaos-<pid>-* namespaces that an earlier run
// left behind (killed before its cleanup): those whose pid is not alive.
// A concurrent run's namespaces are left alone.
func sweepNetns(logf func(string, ...any)) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, ok := netnsOwner(e.Name())
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := deleteNetns(e.Name()); err != nil {
			logf("chaos: sweeping a stale namespace: %v", err)
		} else {
			logf("chaos: deleted network namespace %s, left by an earlier run (pid %d)", e.Name(), pid)
		}
	}
}

// netnsOwner parses loomchaos-<pid>-<n>.
func netnsOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, netnsPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// checkInNetns refuses to cut anything unless this process is in the
// namespace name (a fresh one that the outer run made), so that the
// filters it puts on "lo" never land on the host's loopback.
func checkInNetns(name string) error {
	if name == "" {
		return fmt.Errorf("chaos: a kernel run must be inside a network namespace named by %s", envNetns)
	}
	var want, got syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", name), &want); err != nil {
		return fmt.Errorf("chaos: network namespace %s: %w", name, err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &got); err != nil {
		return err
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		return fmt.Errorf("chaos: this process is not in network namespace %s; refusing to touch lo", name)
	}
	return nil
}

// kernelNet cuts partitions with tc filters on the namespace's lo.
type kernelNet struct {
	cluster *Cluster
	// installed counts the filters in place (0: healed).
	installed int
}

// pair is one dropped direction: packets from src to dst.
type pair struct{ src, dst string }

// dropPairs turns hook rules (node id → its rules) into the directions to
// drop between node IPs. A rule of node x for peer y drops y→x (in), x→y
// (out) or both; peer "*" is every other node. Rules limited to some
// channels cannot be cut by address alone and are refused.
func dropPairs(rules map[string][]faultnet.Rule, ips map[string]string) ([]pair, error) {
	seen := map[pair]bool{}
	var out []pair
	add := func(src, dst string) {
		p := pair{ips[src], ips[dst]}
		if p.src != "" && p.dst != "" && p.src != p.dst && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, x := range keys(rules) {
		for _, r := range rules[x] {
			if !r.Drop || len(r.Channels) > 0 || r.Loss > 0 || r.Delay > 0 {
				return nil, fmt.Errorf("chaos: kernel partitions drop whole links only, not %+v", r)
			}
			peers := []string{r.Peer}
			if r.Peer == "*" {
				peers = keys(ips)
			}
			for _, y := range peers {
				if y == x {
					continue
				}
				if r.Dir == "" || r.Dir == faultnet.Both || r.Dir == faultnet.Out {
					add(x, y)
				}
				if r.Dir == "" || r.Dir == faultnet.Both || r.Dir == faultnet.In {
					add(y, x)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b pair) int { return strings.Compare(a.src+">"+a.dst, b.src+">"+b.dst) })
	return out, nil
}

// apply installs the filters of rules, after healing what was there.
func (k *kernelNet) apply(ctx context.Context, rules map[string][]faultnet.Rule) (string, error) {
	ips := map[string]string{}
	for _, x := range k.cluster.Nodes {
		ips[x.ID] = x.IP
	}
	pairs, err := dropPairs(rules, ips)
	if err != nil {
		return "", err
	}
	if _, err := k.heal(ctx); err != nil {
		return "", err
	}
	var batch strings.Builder
	var desc []string
	for _, p := range pairs {
		fmt.Fprintf(&batch, "filter add dev lo egress protocol ip prio %s u32 match ip src %s/32 match ip dst %s/32 action mirred egress redirect dev %s\n",
			tcPrio, p.src, p.dst, dropDev)
		desc = append(desc, p.src+"→"+p.dst)
	}
	if len(pairs) > 0 {
		cmd := exec.CommandContext(ctx, "tc", "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("chaos: tc -batch: %w: %s", err, bytes.TrimSpace(out))
		}
	}
	k.installed = len(pairs)
	return fmt.Sprintf("tc drops %d directions: %s", len(pairs), strings.Join(desc, " ")), nil
}

var tcSent = regexp.MustCompile(`Sent \d+ bytes (\d+) pkt`)

// heal deletes every filter and returns how many packets they dropped.
func (k *kernelNet) heal(ctx context.Context) (dropped int, err error) {
	if k.installed == 0 {
		return 0, nil
	}
	out, err := exec.CommandContext(ctx, "tc", "-s", "filter", "show", "dev", "lo", "egress").CombinedOutput()
	if err == nil {
		for _, m := range tcSent.FindAllSubmatch(out, -1) {
			n, _ := strconv.Atoi(string(m[1]))
			dropped += n
		}
	}
	if err := runCmd(ctx, "tc", "filter", "del", "dev", "lo", "egress"); err != nil {
		return dropped, err
	}
	k.installed = 0
	return dropped, nil
}
