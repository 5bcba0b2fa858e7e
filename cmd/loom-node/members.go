package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/loom-mesh/loom/node"
)

// cmdMembers prints the cluster as one node sees it: members with their
// state and addresses, Raft roles and the leader.
func cmdMembers(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-node members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr(), "HTTP address of any node (default: $LOOM_ADDR, else node 1 of a local cluster)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	body, err := httpCall(http.MethodGet, base, "/v1/cluster", nil, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node members: %v\n", err)
		return 1
	}
	var ci node.ClusterInfo
	if err := json.Unmarshal(body, &ci); err != nil {
		fmt.Fprintf(stderr, "loom-node members: bad reply from %s: %v\n", base, err)
		return 1
	}
	role := func(id string) string {
		switch {
		case ci.Raft == nil:
			return "-"
		case id == ci.Leader:
			return "leader"
		case slices.Contains(ci.Raft.Voters, id):
			return "voter"
		case slices.Contains(ci.Raft.Nonvoters, id):
			return "non-voter"
		}
		return "-"
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tRAFT\tHTTP\tGRPC")
	for _, m := range ci.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, role(m.ID), m.HTTP, m.GRPC)
	}
	_ = tw.Flush()
	switch {
	case ci.Mode == "cluster" && ci.Raft == nil:
		fmt.Fprintf(stdout, "cluster without Raft (coordination elsewhere), as seen by %s\n", ci.Node)
	case ci.Mode == "cluster" && len(ci.Raft.Groups) > 1:
		fmt.Fprintf(stdout, "raft groups (as seen by %s):\n", ci.Node)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tLEADER\tVOTERS\tNON-VOTERS\tAPPLIED")
		for _, g := range ci.Raft.Groups {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\n", g.Group, orDash(g.Leader), strings.Join(g.Voters, ","), orDash(strings.Join(g.Nonvoters, ",")), g.AppliedIndex)
		}
		_ = tw.Flush()
	case ci.Mode == "cluster":
		fmt.Fprintf(stdout, "leader: %s (as seen by %s, raft %s, applied index %d)\n", ci.Leader, ci.Node, ci.Raft.State, ci.Raft.AppliedIndex)
	default:
		fmt.Fprintf(stdout, "single node %s\n", ci.Node)
	}
	return 0
}

// orDash is s, or "-" if it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
