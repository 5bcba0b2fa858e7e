package redisjournal

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/loom-mesh/loom/internal/redistest"
)

// TestLuaLessThan checks the scripts' comparison of decimal uint64 strings
// against Go's, on the server's Lua: at the edges (lengths 10 and 11 meet
// at the split, 2^53 is where doubles stop being exact, 2^64-1) and on
// random pairs, many of which share their length and high digits.
func TestLuaLessThan(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	c := s.Client()
	edges := []uint64{0, 1, 9, 10, 999_999_999, 1_000_000_000, 9_999_999_999, 10_000_000_000, 10_000_000_001,
		1<<53 - 1, 1 << 53, 1<<53 + 1, 1<<63 - 1, 1 << 63, math.MaxUint64 - 1, math.MaxUint64}
	var pairs [][2]uint64
	for _, a := range edges {
		for _, b := range edges {
			pairs = append(pairs, [2]uint64{a, b})
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 4000 {
		a := r.Uint64() >> r.IntN(64)
		b := a
		switch r.IntN(3) {
		case 0:
			b = r.Uint64() >> r.IntN(64)
		case 1:
			b = a ^ uint64(r.IntN(1<<20)) // same high digits, mostly
		case 2:
			b = a + uint64(r.IntN(3)) - 1
		}
		pairs = append(pairs, [2]uint64{a, b})
	}
	args := make([]any, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, strconv.FormatUint(p[0], 10), strconv.FormatUint(p[1], 10))
	}
	src := scriptPrelude + `
local out = {}
for i = 1, #ARGV, 2 do
  if lt(ARGV[i], ARGV[i + 1]) then out[#out + 1] = 1 else out[#out + 1] = 0 end
end
return out
`
	got, err := c.Eval(t.Context(), src, []string{"lt-test-head"}, args...).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pairs) {
		t.Fatalf("%d answers for %d pairs", len(got), len(pairs))
	}
	for i, p := range pairs {
		if want := p[0] < p[1]; (got[i] == 1) != want {
			t.Errorf("lt(%d, %d) = %v, want %v", p[0], p[1], got[i] == 1, want)
		}
	}
}
