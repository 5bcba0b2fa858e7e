package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/node"
)

// cmdKeygen prints a new gossip key (cluster.gossipKey).
func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: loom-node keygen")
		return 2
	}
	fmt.Fprintln(stdout, cluster.EncodeKey(cluster.NewKey()))
	return 0
}

// cmdKeyring lists or changes the gossip keyring of every member of the
// cluster that the node at --addr sees, one member after the other; it
// fails if any member fails, naming them.
func cmdKeyring(args []string, stdout, stderr io.Writer) int {
	const use = `usage: loom-node keyring list [--addr URL]
       loom-node keyring install|use|remove [--addr URL] [--key KEY]
  KEY is base64 (loom-node keygen); without --key it is read from $LOOM_GOSSIP_KEY.
  Rotating a key: install the new one, then use it, then remove the old one;
  each step runs on every member before it returns.`
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return 2
	}
	op := args[0]
	if !slices.Contains([]string{"list", node.KeyringInstall, node.KeyringUse, node.KeyringRemove}, op) {
		fmt.Fprintf(stderr, "loom-node keyring: unknown operation %q\n%s\n", op, use)
		return 2
	}
	fs := flag.NewFlagSet("loom-node keyring "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr(), "HTTP address of any node (default: $LOOM_ADDR, else node 1 of a local cluster)")
	keyFlag := fs.String("key", "", "the key, base64 (default $LOOM_GOSSIP_KEY)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var key []byte
	if op != "list" {
		s := *keyFlag
		if s == "" {
			s = os.Getenv("LOOM_GOSSIP_KEY")
		}
		k, err := cluster.ParseKey(s)
		if err != nil {
			fmt.Fprintf(stderr, "loom-node keyring %s: --key: %v\n", op, err)
			return 2
		}
		key = k
	}
	hc := httpClient(10 * time.Second) // HTTPS with $LOOM_TLS_CA (tls.go)
	base := httpBase(*addr)
	scheme := "http://" // the members are reached as the node at --addr is
	if strings.HasPrefix(base, "https://") {
		scheme = "https://"
	}
	var ci node.ClusterInfo
	if err := getJSON(hc, base+"/v1/cluster", &ci); err != nil {
		fmt.Fprintf(stderr, "loom-node keyring: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPRIMARY\tKEYS")
	var failed []string
	for _, m := range ci.Members {
		if m.State != "alive" || m.HTTP == "" {
			failed = append(failed, fmt.Sprintf("%s (%s)", m.ID, m.State))
			continue
		}
		kr, err := keyringOn(hc, httpBase(scheme+m.HTTP), op, key)
		if err != nil {
			fmt.Fprintf(stderr, "loom-node keyring %s: %s: %v\n", op, m.ID, err)
			failed = append(failed, m.ID)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", kr.Node, kr.Primary, strings.Join(kr.Keys, ","))
	}
	_ = tw.Flush()
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "loom-node keyring %s: not done on %d of %d members: %s; run it again once they are back\n", op, len(failed), len(ci.Members), strings.Join(failed, ", "))
		return 1
	}
	if op != "list" {
		fmt.Fprintf(stdout, "%s %s: done on all %d members\n", op, cluster.KeyID(key), len(ci.Members))
	}
	return 0
}

// keyringOn runs op on one node's keyring (GET for list).
func keyringOn(hc *http.Client, base, op string, key []byte) (node.GossipKeyring, error) {
	var kr node.GossipKeyring
	if op == "list" {
		return kr, getJSON(hc, base+"/v1/admin/keyring", &kr)
	}
	b, _ := json.Marshal(node.KeyringRequest{Op: op, Key: cluster.EncodeKey(key)})
	resp, err := hc.Post(base+"/v1/admin/keyring", "application/json", bytes.NewReader(b))
	if err != nil {
		return kr, err
	}
	defer resp.Body.Close()
	return kr, decodeReply(resp, &kr)
}

func getJSON(hc *http.Client, url string, v any) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, v)
}

// decodeReply decodes a 200 answer into v, or returns the error the body
// states.
func decodeReply(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// httpBase is addr as a URL without a trailing slash.
func httpBase(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/")
}
