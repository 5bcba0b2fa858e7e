package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/buraksezer/consistent"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i+1)
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "counter/" + strconv.Itoa(i)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr int // number of problems reported
	}{
		{"default", func(*Config) {}, 0},
		{"load exactly 1", func(c *Config) { c.Load = 1 }, 0},
		{"zero partitions", func(c *Config) { c.PartitionCount = 0 }, 1},
		{"huge partitions", func(c *Config) { c.PartitionCount = maxPartitions + 1 }, 1},
		{"one virtual node", func(c *Config) { c.ReplicationFactor = 1 }, 1},
		{"load below 1", func(c *Config) { c.Load = 0.9 }, 1},
		{"load NaN", func(c *Config) { c.Load = nan() }, 1},
		{"everything wrong", func(c *Config) { *c = Config{} }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			if got := len(err.(interface{ Unwrap() []error }).Unwrap()); got != tt.wantErr {
				t.Fatalf("Validate() reported %d problems, want %d: %v", got, tt.wantErr, err)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestNewRingPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewRing with an invalid config did not panic")
		}
	}()
	NewRing([]string{"a"}, Config{})
}

func TestNewTableRejectsInvalidConfig(t *testing.T) {
	if _, err := NewTable(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewTable(Config{}) error = %v, want ErrInvalidConfig", err)
	}
}

func TestEmptyRing(t *testing.T) {
	for _, members := range [][]string{nil, {}, {""}, {"", ""}} {
		r := NewRing(members, DefaultConfig())
		if id, ok := r.Locate("anything"); ok || id != "" {
			t.Fatalf("empty ring %q: Locate = %q, %v; want \"\", false", members, id, ok)
		}
		if r.Len() != 0 || len(r.Members()) != 0 || r.PartitionCount() != 0 || r.Partition("x") != -1 {
			t.Fatalf("empty ring %q: Len %d Members %v PartitionCount %d", members, r.Len(), r.Members(), r.PartitionCount())
		}
		if _, ok := r.Owner(0); ok {
			t.Fatalf("empty ring: Owner(0) ok")
		}
	}
}

// TestDeterminism: order and duplicates of the member list never change
// placement, and Locate agrees with the library's own LocateKey.
func TestDeterminism(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ks := keys(2000)
	// ids chosen so that "n1"+"10" and "n11"+"0" would collide without the
	// NUL terminator.
	confusable := []string{"n1", "n11", "n110", "n2", "n21"}
	for _, base := range [][]string{ids(1), ids(3), ids(5), ids(12), confusable} {
		t.Run(strconv.Itoa(len(base)), func(t *testing.T) {
			want := NewRing(base, DefaultConfig())
			if !slices.Equal(want.Members(), normalize(base)) {
				t.Fatalf("Members() = %v", want.Members())
			}
			for range 20 {
				shuffled := slices.Clone(base)
				// add duplicates, then shuffle
				for range rng.IntN(4) {
					shuffled = append(shuffled, base[rng.IntN(len(base))])
				}
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := NewRing(shuffled, DefaultConfig())
				if !slices.Equal(got.owners, want.owners) {
					t.Fatalf("placement differs for member order %v", shuffled)
				}
			}
			// Agreement with consistent's LocateKey on the same member set.
			ms := make([]consistent.Member, 0, len(base))
			for _, id := range normalize(base) {
				ms = append(ms, member(id))
			}
			lib := consistent.New(ms, consistent.Config{Hasher: hasher{}, PartitionCount: 271, ReplicationFactor: 20, Load: 1.25})
			for _, k := range ks {
				got, _ := want.Locate(k)
				if libGot := string(lib.LocateKey([]byte(k)).(member)); got != libGot {
					t.Fatalf("Locate(%q) = %q, library says %q", k, got, libGot)
				}
			}
		})
	}
}

// TestDistribution: 10,000 keys over 3 and 5 nodes spread roughly evenly and
// no member exceeds the load bound.
func TestDistribution(t *testing.T) {
	ks := keys(10000)
	for _, n := range []int{1, 3, 5, 7} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			r := NewRing(ids(n), DefaultConfig())
			cfg := r.Config()
			bound := int(float64(cfg.PartitionCount/n)*cfg.Load + 0.999999)
			if r.MaxLoad() != bound {
				t.Fatalf("MaxLoad() = %d, want %d", r.MaxLoad(), bound)
			}
			total := 0
			for id, l := range r.Loads() {
				if l > r.MaxLoad() {
					t.Errorf("%s owns %d partitions, bound %d", id, l, r.MaxLoad())
				}
				total += l
			}
			if total != cfg.PartitionCount {
				t.Fatalf("partitions owned = %d, want %d", total, cfg.PartitionCount)
			}
			count := map[string]int{}
			for _, k := range ks {
				id, ok := r.Locate(k)
				if !ok {
					t.Fatal("Locate on a non-empty ring returned !ok")
				}
				count[id]++
			}
			mean := float64(len(ks)) / float64(n)
			var lo, hi float64 = 1e9, 0
			for _, id := range ids(n) {
				share := float64(count[id]) / mean
				lo, hi = min(lo, share), max(hi, share)
			}
			t.Logf("%d nodes: keys per node %v; min/max share of the mean %.2f / %.2f; partition loads %v (cap %d)",
				n, count, lo, hi, r.Loads(), r.MaxLoad())
			// Keys follow partitions, so the cap on partitions caps keys
			// (with some hash noise on top); nobody is starved either.
			if hi > cfg.Load+0.1 {
				t.Errorf("most loaded node has %.2f x the mean, want <= %.2f", hi, cfg.Load+0.1)
			}
			if n > 1 && lo < 0.6 {
				t.Errorf("least loaded node has %.2f x the mean, want >= 0.6", lo)
			}
		})
	}
}

// TestMovement: adding or removing a node moves a small fraction of keys,
// and only to or from the node that changed... approximately: the load
// bound can cascade a few partitions between other members too.
func TestMovement(t *testing.T) {
	ks := keys(10000)
	tests := []struct {
		from, to int
	}{{3, 4}, {4, 5}, {5, 6}, {4, 3}, {9, 10}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d to %d", tt.from, tt.to), func(t *testing.T) {
			a, b := NewRing(ids(tt.from), DefaultConfig()), NewRing(ids(tt.to), DefaultConfig())
			moved, movedAmongOld := 0, 0
			changed := fmt.Sprintf("node-%d", max(tt.from, tt.to))
			for _, k := range ks {
				x, _ := a.Locate(k)
				y, _ := b.Locate(k)
				if x != y {
					moved++
					if x != changed && y != changed {
						movedAmongOld++
					}
				}
			}
			frac := float64(moved) / float64(len(ks))
			ideal := 1 / float64(max(tt.from, tt.to))
			t.Logf("%d -> %d nodes: %.1f%% of keys moved (ideal %.1f%%), %.1f%% between unchanged nodes",
				tt.from, tt.to, 100*frac, 100*ideal, 100*float64(movedAmongOld)/float64(len(ks)))
			if frac >= 0.5 {
				t.Fatalf("moved %.2f of keys, want well below 1/2", frac)
			}
			if frac > 2.5*ideal {
				t.Fatalf("moved %.2f of keys, more than 2.5x the ideal %.2f", frac, ideal)
			}
		})
	}
}

// TestLoadAdjustments: configurations the library could not place without
// help (tight load, more members than partitions) still give a full table.
func TestLoadAdjustments(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		members int
	}{
		{"load 1.0 uneven split", Config{PartitionCount: 271, ReplicationFactor: 20, Load: 1}, 7},
		{"load 1.0 even split", Config{PartitionCount: 270, ReplicationFactor: 20, Load: 1}, 3},
		{"more members than partitions", Config{PartitionCount: 7, ReplicationFactor: 2, Load: 1.25}, 10},
		{"one partition", Config{PartitionCount: 1, ReplicationFactor: 2, Load: 1}, 3},
		{"one member", Config{PartitionCount: 271, ReplicationFactor: 2, Load: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing(ids(tt.members), tt.cfg)
			owned := 0
			for _, l := range r.Loads() {
				if l > r.MaxLoad() {
					t.Fatalf("load %d above cap %d", l, r.MaxLoad())
				}
				owned += l
			}
			if owned != r.PartitionCount() || r.PartitionCount() != max(tt.cfg.PartitionCount, tt.members) {
				t.Fatalf("owned %d of %d partitions", owned, r.PartitionCount())
			}
			if _, ok := r.Locate("k"); !ok {
				t.Fatal("Locate failed")
			}
		})
	}
}

func TestTable(t *testing.T) {
	tab, err := NewTable(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if tab.Version() != 0 || tab.Ring().Len() != 0 {
		t.Fatalf("new table: version %d, %d members", tab.Version(), tab.Ring().Len())
	}
	if _, ok := tab.Locate("x"); ok {
		t.Fatal("Locate on an empty table returned ok")
	}
	steps := []struct {
		members     []string
		wantChanged bool
		wantVersion uint64
	}{
		{nil, false, 0},
		{[]string{"b", "a"}, true, 1},
		{[]string{"a", "b", "a"}, false, 1},
		{[]string{"a", "b", "c"}, true, 2},
		{[]string{"c", "b", "a", ""}, false, 2},
		{[]string{"a"}, true, 3},
		{nil, true, 4},
		{[]string{""}, false, 4},
	}
	for i, s := range steps {
		if got := tab.Update(s.members); got != s.wantChanged {
			t.Fatalf("step %d: Update(%v) = %v, want %v", i, s.members, got, s.wantChanged)
		}
		if tab.Version() != s.wantVersion || tab.Ring().Version() != s.wantVersion {
			t.Fatalf("step %d: version %d, want %d", i, tab.Version(), s.wantVersion)
		}
		if want := normalize(s.members); s.wantChanged && !slices.Equal(tab.Ring().Members(), want) {
			t.Fatalf("step %d: members %v, want %v", i, tab.Ring().Members(), want)
		}
	}
}

// TestTableConcurrent runs readers against writers under the race detector:
// every Locate answers from one consistent ring.
func TestTableConcurrent(t *testing.T) {
	tab, _ := NewTable(DefaultConfig())
	sets := [][]string{ids(3), ids(4), ids(5)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := tab.Ring()
				id, ok := r.Locate("k")
				if r.Len() > 0 && (!ok || !r.Has(id)) {
					t.Errorf("ring v%d placed k on %q, not a member of %v", r.Version(), id, r.Members())
					return
				}
			}
		})
	}
	for i := range 300 {
		tab.Update(sets[i%len(sets)])
	}
	close(stop)
	wg.Wait()
	if tab.Version() != 300 {
		t.Fatalf("version %d after 300 changing updates", tab.Version())
	}
}

func BenchmarkLocate(b *testing.B) {
	for _, n := range []int{3, 5, 50} {
		b.Run(fmt.Sprintf("%d nodes", n), func(b *testing.B) {
			tab, _ := NewTable(DefaultConfig())
			tab.Update(ids(n))
			ks := keys(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, ok := tab.Locate(ks[i&1023]); !ok {
					b.Fatal("not located")
				}
			}
		})
	}
}

func BenchmarkNewRing(b *testing.B) {
	members := ids(5)
	for b.Loop() {
		NewRing(members, DefaultConfig())
	}
}
