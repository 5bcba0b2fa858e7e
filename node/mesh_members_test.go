package node

import (
	"fmt"
	"slices"
	"testing"
)

// TestGroupMembersOf checks the groups' placement over the nodes: every
// group gets min(voters, nodes) distinct alive nodes, every node is in
// at most its share of the groups (ceil(groups*voters/nodes)), the
// choice does not depend on the order of the alive list, and a node's
// departure changes only some of the groups.
func TestGroupMembersOf(t *testing.T) {
	for _, tc := range []struct{ nodes, groups, voters int }{
		{3, 9, 3}, {4, 2, 3}, {4, 4, 3}, {5, 5, 3}, {9, 9, 3}, {9, 64, 5}, {2, 3, 3}, {60, 64, 3},
	} {
		t.Run(fmt.Sprintf("%d nodes %d groups %d voters", tc.nodes, tc.groups, tc.voters), func(t *testing.T) {
			alive := make([]string, tc.nodes)
			for i := range alive {
				alive[i] = fmt.Sprintf("node-%d", i+1)
			}
			want := min(tc.voters, tc.nodes)
			share := (tc.groups*want + tc.nodes - 1) / tc.nodes
			load := map[string]int{}
			before := make([][]string, tc.groups)
			reversed := slices.Clone(alive)
			slices.Reverse(reversed)
			for g := range tc.groups {
				m := groupMembersOf(g, tc.groups, alive, tc.voters)
				before[g] = m
				if len(m) != want || len(slices.Compact(slices.Sorted(slices.Values(m)))) != want {
					t.Fatalf("group %d: members %v, want %d distinct", g, m, want)
				}
				for _, id := range m {
					if !slices.Contains(alive, id) {
						t.Fatalf("group %d: member %s is not alive", g, id)
					}
					load[id]++
				}
				if r := groupMembersOf(g, tc.groups, reversed, tc.voters); !slices.Equal(slices.Sorted(slices.Values(r)), slices.Sorted(slices.Values(m))) {
					t.Fatalf("group %d: %v from the alive list reversed, %v from it in order", g, r, m)
				}
			}
			for id, n := range load {
				if n > share+1 {
					t.Errorf("%s is in %d groups; share %d", id, n, share)
				}
			}
			if tc.nodes <= tc.voters {
				return
			}
			gone := alive[len(alive)/2]
			rest := slices.DeleteFunc(slices.Clone(alive), func(id string) bool { return id == gone })
			moved := 0
			for g := range tc.groups {
				if !slices.Equal(groupMembersOf(g, tc.groups, rest, tc.voters), before[g]) {
					moved++
				}
			}
			if moved == tc.groups && tc.groups > 2 {
				t.Errorf("%s leaving changed all %d groups' members", gone, tc.groups)
			}
		})
	}
}
