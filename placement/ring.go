package placement

import (
	"fmt"
	"math"
	"slices"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Ring is an immutable placement of keys on a set of members. Build it with
// NewRing or get the current one from a Table. The zero Ring is not valid.
type Ring struct {
	cfg        Config
	members    []string // sorted, unique, non-empty ids
	owners     []string // owners[p] is the member owning partition p; nil when empty
	partitions uint64   // effective partition count (len(owners) when not empty)
	maxLoad    int
	version    uint64
}

// hasher is consistent.Hasher over xxhash64.
type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// member is a ring member. Its String (what the library hashes, followed by
// the virtual node number) ends with a NUL byte so that "n1"+"10" and
// "n11"+"0" are different virtual nodes.
type member string

func (m member) String() string { return string(m) + "\x00" }

// NewRing builds the ring for members under cfg. The order of members and
// any duplicates do not matter; empty ids are ignored. A ring with no members
// is valid and places nothing.
//
// cfg must be valid (see Config.Validate); NewRing panics otherwise, as an
// invalid Config is a programming error. (Table validates once, in NewTable.)
//
// Two adjustments keep the library's bounded-load rule from running out of
// room, both pure functions of the member count and cfg, so every node makes
// the same ones: if ceil(floor(P/n)*Load)*n < P the load factor is raised to
// the smallest value with room for every partition, and if there are more
// members n than partitions P the partition count is raised to n (which
// moves nearly every key; configure PartitionCount well above the cluster
// size).
func NewRing(members []string, cfg Config) *Ring {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("placement.NewRing: %v", err))
	}
	ids := normalize(members)
	r := &Ring{cfg: cfg, members: ids}
	if len(ids) == 0 {
		return r
	}
	n := len(ids)
	parts := cfg.PartitionCount
	if n > parts {
		parts = n
	}
	load := effectiveLoad(parts, n, cfg.Load)

	ms := make([]consistent.Member, n)
	for i, id := range ids {
		ms[i] = member(id)
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    parts,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              load,
	})
	r.partitions = uint64(parts)
	r.maxLoad = int(c.AverageLoad())
	r.owners = make([]string, parts)
	for p := range parts {
		r.owners[p] = string(c.GetPartitionOwner(p).(member))
	}
	return r
}

// normalize sorts ids, drops duplicates and empty strings, and never keeps the
// caller's slice.
func normalize(members []string) []string {
	ids := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			ids = append(ids, m)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// effectiveLoad returns the smallest load >= want for which the library's
// bound ceil(floor(parts/n)*load) leaves room for every partition, given
// n <= parts.
func effectiveLoad(parts, n int, want float64) float64 {
	base := parts / n // >= 1 because n <= parts
	if int(math.Ceil(float64(base)*want))*n >= parts {
		return want
	}
	need := (parts + n - 1) / n // ceil(parts/n) partitions per member
	return float64(need) / float64(base)
}

// Locate returns the member that key is placed on, and false if the ring is
// empty. It does not allocate and takes no lock.
func (r *Ring) Locate(key string) (nodeID string, ok bool) {
	if len(r.owners) == 0 {
		return "", false
	}
	return r.owners[xxhash.Sum64String(key)%r.partitions], true
}

// Partition returns the partition key hashes to, or -1 for an empty ring.
func (r *Ring) Partition(key string) int {
	if len(r.owners) == 0 {
		return -1
	}
	return int(xxhash.Sum64String(key) % r.partitions)
}

// Owner returns the member owning partition p, and false if the ring is
// empty or p is out of range.
func (r *Ring) Owner(p int) (nodeID string, ok bool) {
	if p < 0 || p >= len(r.owners) {
		return "", false
	}
	return r.owners[p], true
}

// Members returns the ring's member ids, sorted. The slice is a copy.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Has reports whether id is a member of the ring.
func (r *Ring) Has(id string) bool {
	_, found := slices.BinarySearch(r.members, id)
	return found
}

// PartitionCount returns the effective number of partitions: cfg's, or the
// member count if that is larger; 0 for an empty ring.
func (r *Ring) PartitionCount() int { return len(r.owners) }

// MaxLoad returns the bounded-load cap: no member owns more partitions than
// this. 0 for an empty ring.
func (r *Ring) MaxLoad() int { return r.maxLoad }

// Loads returns how many partitions each member owns. Every member appears,
// with 0 if it owns none.
func (r *Ring) Loads() map[string]int {
	loads := make(map[string]int, len(r.members))
	for _, m := range r.members {
		loads[m] = 0
	}
	for _, o := range r.owners {
		loads[o]++
	}
	return loads
}

// Config returns the configuration the ring was built with.
func (r *Ring) Config() Config { return r.cfg }

// Version returns the Table version this ring was published as, or 0 for a
// ring built directly with NewRing.
func (r *Ring) Version() uint64 { return r.version }

// sameMembers reports whether the ring's members are exactly ids (sorted and
// unique).
func (r *Ring) sameMembers(ids []string) bool { return slices.Equal(r.members, ids) }
