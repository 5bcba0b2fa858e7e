package loomtest

import (
	"fmt"
	"slices"
	"testing"
)

// The groups the cut links leave connected, among the running nodes.
func TestGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		down []int
		cuts [][2]int
		want [][]int
	}{
		{"whole", 3, nil, nil, [][]int{{0, 1, 2}}},
		{"isolated", 3, nil, [][2]int{{0, 1}, {0, 2}}, [][]int{{0}, {1, 2}}},
		{"bridge", 3, nil, [][2]int{{0, 1}}, [][]int{{0, 2, 1}}},
		{"killed", 3, []int{1}, nil, [][]int{{0, 2}}},
		{"killed and cut", 3, []int{1}, [][2]int{{0, 2}}, [][]int{{0}, {2}}},
		{"two and two", 4, nil, [][2]int{{0, 2}, {0, 3}, {1, 2}, {1, 3}}, [][]int{{0, 1}, {2, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{cuts: map[[2]int]bool{}}
			for i := range tc.n {
				c.members = append(c.members, &member{id: fmt.Sprintf("n%d", i+1), down: slices.Contains(tc.down, i)})
			}
			for _, l := range tc.cuts {
				c.cuts[link(l[1], l[0])] = true
			}
			got := c.groupsLocked()
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Fatalf("groups %v, want %v", got, tc.want)
			}
		})
	}
}
