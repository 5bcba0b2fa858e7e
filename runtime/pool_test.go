package runtime

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// leastRecentlyUsed returns the n oldest activations, oldest first, for
// any order of use and any n.
func TestLeastRecentlyUsed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 5, 100, 1000} {
		p := newPool(nil, &typeDef{name: "t"}, PoolConfig{})
		uses := rng.Perm(size)
		for i, u := range uses {
			a := &activation{id: fmt.Sprint(i)}
			a.lastUse.Store(uint64(u) + 1)
			p.shard(a.id).m[a.id] = a
		}
		for _, n := range []int{1, 2, 31, 312} {
			got := p.leastRecentlyUsed(n)
			if want := min(n, size); len(got) != want {
				t.Fatalf("size %d, n %d: %d victims, want %d", size, n, len(got), want)
			}
			for i, a := range got {
				if u := a.lastUse.Load(); u != uint64(i)+1 {
					t.Fatalf("size %d, n %d: victim %d last used at %d, want %d", size, n, i, u, i+1)
				}
			}
			if !slices.IsSortedFunc(got, func(a, b *activation) int { return int(a.lastUse.Load()) - int(b.lastUse.Load()) }) {
				t.Fatalf("size %d, n %d: not oldest first", size, n)
			}
		}
	}
}

func BenchmarkLeastRecentlyUsed(b *testing.B) {
	p := newPool(nil, &typeDef{name: "t"}, PoolConfig{})
	rng := rand.New(rand.NewPCG(1, 2))
	for i, u := range rng.Perm(10000) {
		a := &activation{id: fmt.Sprint(i)}
		a.lastUse.Store(uint64(u) + 1)
		p.shard(a.id).m[a.id] = a
	}
	n := evictBatch(10000)
	for b.Loop() {
		p.leastRecentlyUsed(n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/victim")
}
