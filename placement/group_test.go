package placement

import (
	"fmt"
	"testing"
)

// An actor's group never changes: the mapping is pinned, since journals
// stay where it put them. It spreads keys evenly, and a larger k moves
// only the keys that go to the new group.
func TestGroupOf(t *testing.T) {
	for _, tc := range []struct {
		key  string
		k    int
		want int
	}{
		{"counter/a", 1, 0},
		{"counter/a", 3, 1},
		{"counter/b", 3, 0},
		{"counter/c", 3, 0},
		{"order/17", 8, 7},
		{"", 4, 1},
	} {
		if got := GroupOf(tc.key, tc.k); got != tc.want {
			t.Errorf("GroupOf(%q, %d) = %d, want %d", tc.key, tc.k, got, tc.want)
		}
	}
	// The paper's jump hash, by values other implementations publish.
	for _, tc := range []struct {
		x       uint64
		k, want int
	}{{1, 1, 0}, {42, 57, 43}, {0xDEAD10CC, 1, 0}, {0xDEAD10CC, 666, 361}, {256, 1024, 520}} {
		if got := jump(tc.x, tc.k); got != tc.want {
			t.Errorf("jump(%#x, %d) = %d, want %d", tc.x, tc.k, got, tc.want)
		}
	}
	const keys = 30000
	counts := make([]int, 3)
	moved := 0
	for i := range keys {
		key := fmt.Sprintf("counter/c%d", i)
		g3, g4 := GroupOf(key, 3), GroupOf(key, 4)
		counts[g3]++
		if g3 != g4 {
			moved++
			if g4 != 3 {
				t.Fatalf("%s moved from group %d to %d, not to the new group 3", key, g3, g4)
			}
		}
	}
	for g, n := range counts {
		if n < keys/3*9/10 || n > keys/3*11/10 {
			t.Errorf("group %d of 3 has %d keys of %d", g, n, keys)
		}
	}
	if moved < keys/4*9/10 || moved > keys/4*11/10 {
		t.Errorf("from 3 groups to 4, %d keys of %d moved, want about a quarter", moved, keys)
	}
}
