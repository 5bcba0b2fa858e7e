package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// convergedViews builds the views of a converged cluster of n nodes
// (node-1 .. node-n): all running and healthy, every member alive, every
// ring every node, the first voters nodes Raft voters and the rest
// nonvoters, node-1 the leader, named by all. Each node's info is decoded
// from the JSON GET /v1/cluster answers, so every case starts from fresh
// structs it may change.
func convergedViews(t *testing.T, n, voters int, names []string) ([]string, []nodeView) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i+1)
	}
	if names != nil {
		ids = names // in the order the suite started them
	}
	members := make([]map[string]string, n)
	for i, id := range ids {
		members[i] = map[string]string{"id": id, "state": "alive"}
	}
	views := make([]nodeView, n)
	for i, id := range ids {
		state := "Follower"
		if i == 0 {
			state = "Leader"
		}
		raw, err := json.Marshal(map[string]any{
			"node":    id,
			"mode":    "cluster",
			"leader":  ids[0],
			"raft":    map[string]any{"state": state, "voters": ids[:voters], "nonvoters": ids[voters:]},
			"members": members,
			"ring":    map[string]any{"members": ids},
		})
		if err != nil {
			t.Fatal(err)
		}
		views[i] = nodeView{ID: id, State: Running, Healthy: true}
		if err := json.Unmarshal(raw, &views[i].Info); err != nil {
			t.Fatal(err)
		}
	}
	return ids, views
}

// TestConvergenceChecker feeds the convergence rules a converged cluster,
// which must pass, and the same cluster with one thing broken, which must
// be flagged: each case names every problem it expects (substrings), and
// nothing else may be flagged.
func TestConvergenceChecker(t *testing.T) {
	cases := []struct {
		name          string
		nodes, voters int
		names         []string // node ids, if not node-1 .. node-n
		breakIt       func(v []nodeView)
		want          []string
		// redis: the nodes coordinate on Redis (no Raft state, no
		// leader), and the rules leave Raft out.
		redis bool
	}{
		{name: "converged 3", nodes: 3, voters: 3},
		{name: "converged 5 with 2 nonvoters", nodes: 5, voters: 3},
		// A churned-in node-10 sorts before node-2: the suite's order of
		// nodes is not the sorted order members, ring and servers are
		// compared in.
		{name: "converged with node-10", nodes: 3, voters: 3, names: []string{"node-2", "node-3", "node-10"}},
		{name: "node down", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].State = Down },
			want:    []string{"node-2 is down"}},
		{name: "node paused", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[2].State = Paused },
			want:    []string{"node-3 is paused"}},
		{name: "unhealthy", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Healthy = false },
			want:    []string{"node-2 is not healthy"}},
		{name: "info error", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Err = errors.New("connection refused") },
			want:    []string{"node-2: connection refused"}},
		{name: "member dead", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[0].Info.Members[2].State = "dead" },
			want:    []string{"node-1 sees alive members [node-1 node-2], want [node-1 node-2 node-3]"}},
		{name: "member suspect", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[2].Info.Members[0].State = "suspect" },
			want:    []string{"node-3 sees alive members [node-2 node-3], want [node-1 node-2 node-3]"}},
		{name: "member missing", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Info.Members = v[1].Info.Members[:2] },
			want:    []string{"node-2 sees alive members [node-1 node-2], want"}},
		{name: "ring missing a node", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[2].Info.Ring.Members = []string{"node-1", "node-3"} },
			want:    []string{"node-3: ring is not every node"}},
		{name: "no ring", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[0].Info.Ring = nil },
			want:    []string{"node-1: ring is not every node"}},
		{name: "too few voters", nodes: 3, voters: 2,
			want: []string{
				"node-1: Raft voters [node-1 node-2] nonvoters [node-3], want at least 3 voters",
				"node-2: Raft voters [node-1 node-2] nonvoters [node-3], want at least 3 voters",
				"node-3: Raft voters [node-1 node-2] nonvoters [node-3], want at least 3 voters",
			}},
		{name: "node not a Raft server", nodes: 5, voters: 3,
			breakIt: func(v []nodeView) {
				for i := range v {
					v[i].Info.Raft.Nonvoters = []string{"node-4"}
				}
			},
			want: []string{
				"node-1: Raft voters [node-1 node-2 node-3] nonvoters [node-4], want at least 3 voters and every node a server",
				"node-2: Raft voters", "node-3: Raft voters", "node-4: Raft voters", "node-5: Raft voters",
			}},
		{name: "no Raft state", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Info.Raft = nil },
			want:    []string{"node-2 reports no Raft state"}},
		{name: "voters differ", nodes: 5, voters: 3,
			breakIt: func(v []nodeView) {
				v[4].Info.Raft.Voters = []string{"node-1", "node-2", "node-4"}
				v[4].Info.Raft.Nonvoters = []string{"node-3", "node-5"}
			},
			want: []string{"node-5: Raft voters [node-1 node-2 node-4] differ from [node-1 node-2 node-3]"}},
		{name: "two leaders named", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[2].Info.Leader = "node-2" },
			want:    []string{"nodes name different leaders: [node-1 node-2]"}},
		{name: "one node names no leader", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Info.Leader = "" },
			want:    []string{"nodes name different leaders: [ node-1]"}},
		{name: "no leader named", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) {
				for i := range v {
					v[i].Info.Leader = ""
				}
			},
			want: []string{"nodes name different leaders: []"}},
		{name: "no node in the Leader state", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[0].Info.Raft.State = "Follower" },
			want:    []string{"0 nodes are in the Leader state"}},
		{name: "two nodes in the Leader state", nodes: 3, voters: 3,
			breakIt: func(v []nodeView) { v[1].Info.Raft.State = "Leader" },
			want:    []string{"2 nodes are in the Leader state"}},
		{name: "redis converged", nodes: 3, redis: true},
		{name: "redis node down", nodes: 3, redis: true,
			breakIt: func(v []nodeView) { v[2].State = Down },
			want:    []string{"node-3 is down"}},
		{name: "redis member dead", nodes: 3, redis: true,
			breakIt: func(v []nodeView) { v[0].Info.Members[1].State = "dead" },
			want:    []string{"node-1 sees alive members [node-1 node-3]"}},
		{name: "redis ring short", nodes: 3, redis: true,
			breakIt: func(v []nodeView) { v[1].Info.Ring.Members = v[1].Info.Ring.Members[:2] },
			want:    []string{"node-2: ring is not every node"}},
		{name: "redis node with Raft state", nodes: 3, redis: true,
			breakIt: func(v []nodeView) {
				v[1].Info.Raft = &raftInfo{State: "Leader"}
			},
			want: []string{"node-2 reports Raft state"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids, views := convergedViews(t, tc.nodes, tc.voters, tc.names)
			if tc.redis {
				for i := range views {
					views[i].Info.Raft, views[i].Info.Leader = nil, ""
				}
			}
			if tc.breakIt != nil {
				tc.breakIt(views)
			}
			problems := convergenceProblems(ids, views, !tc.redis, false)
			found := make([]bool, len(tc.want))
			for _, p := range problems {
				matched := false
				for i, w := range tc.want {
					if !found[i] && strings.Contains(p, w) {
						found[i], matched = true, true
						break
					}
				}
				if !matched {
					t.Errorf("unexpected problem %q", p)
				}
			}
			for i, w := range tc.want {
				if !found[i] {
					t.Errorf("no problem contains %q; got %q", w, problems)
				}
			}
		})
	}
}

// TestPartialGroupConvergence: with each Raft group on some of the nodes,
// a cluster of five in which every group's leader has three voters and
// is named by all has converged; a group still on four voters, or whose
// leader one node does not know, has not.
func TestPartialGroupConvergence(t *testing.T) {
	views := func() ([]string, []nodeView) {
		ids, vs := convergedViews(t, 5, 3, nil)
		for i := range vs {
			r := vs[i].Info.Raft
			raw, err := json.Marshal([]map[string]any{
				{"group": 0, "leader": "node-1", "state": map[bool]string{true: "Leader", false: "Follower"}[i == 0],
					"voters": []string{"node-1", "node-2", "node-3"}},
				{"group": 1, "leader": "node-4", "state": map[bool]string{true: "Leader", false: "Follower"}[i == 3],
					"voters": []string{"node-3", "node-4", "node-5"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &r.Groups); err != nil {
				t.Fatal(err)
			}
			r.Voters, r.Nonvoters = []string{"node-1"}, nil // a node outside group 0 knows little of it
		}
		return ids, vs
	}
	ids, v := views()
	if p := convergenceProblems(ids, v, true, true); len(p) != 0 {
		t.Fatalf("converged cluster flagged: %v", p)
	}
	ids, v = views()
	v[3].Info.Raft.Groups[1].Voters = append(v[3].Info.Raft.Groups[1].Voters, "node-1")
	if p := convergenceProblems(ids, v, true, true); len(p) != 1 || !strings.Contains(p[0], "group 1 on node-4: Raft voters [node-1 node-3 node-4 node-5]") {
		t.Fatalf("a group on four voters: problems %v", p)
	}
	ids, v = views()
	v[2].Info.Raft.Groups[1].Leader = ""
	if p := convergenceProblems(ids, v, true, true); len(p) != 1 || !strings.Contains(p[0], "group 1: nodes name different leaders") {
		t.Fatalf("a leader one node does not know: problems %v", p)
	}
}
