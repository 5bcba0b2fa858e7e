package placement

import "hash/fnv"

// GroupOf is the group, among k, of key: a jump consistent hash of its
// FNV-1a hash, so that every node and client agrees and a larger k would
// move few keys. raftlock keeps an actor's lock and journal in the Raft
// group GroupOf gives its key ("type/id"); the mapping is pinned by the
// tests, since journals stay where it put them.
func GroupOf(key string, k int) int {
	if k <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return jump(h.Sum64(), k)
}

// jump is Lamping and Veach's jump consistent hash of x into k buckets
// ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014).
func jump(x uint64, k int) int {
	var b, j int64 = -1, 0
	for j < int64(k) {
		b = j
		x = x*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((x>>33)+1)))
	}
	return int(b)
}
